import { INestApplication, Type } from '@nestjs/common';
import { EventEmitterModule } from '@nestjs/event-emitter';
import { getConnectionToken, MongooseModule, Prop, Schema, SchemaFactory } from '@nestjs/mongoose';
import { ScheduleModule } from '@nestjs/schedule';
import { Test } from '@nestjs/testing';
import type { Db } from 'mongodb';
import mongoose, { type Connection } from 'mongoose';
import { SYNC_WALL_CLOCK } from '../../src/lib/bidirectional-sync.constants';
import { BidirectionalSyncModule } from '../../src/lib/bidirectional-sync.module';
import { BidirectionalSyncService } from '../../src/lib/bidirectional-sync.service';
import { syncCapturePlugin } from '../../src/lib/capture/sync-capture.plugin';
import type { BidirectionalSyncModuleOptions } from '../../src/lib/config/sync-options.interface';
import type { SyncConflictResolver } from '../../src/lib/conflict/conflict-resolver.interface';
import type { FleetModuleOptions } from '../../src/lib/fleet/fleet-options.interface';

/** A model with hooks and validation, as a host application would register. */
@Schema({ collection: 'menuitems' })
export class MenuItem {
  @Prop({ required: true, trim: true })
  name!: string;

  @Prop({ min: 0 })
  price?: number;

  @Prop()
  category?: string;

  @Prop()
  touchedByHook?: boolean;
}
export const MenuItemSchema = SchemaFactory.createForClass(MenuItem);
/** Counts document middleware runs on replicated data (business logic preservation). */
export const hookRuns = { save: 0 };
MenuItemSchema.pre('save', function () {
  hookRuns.save++;
});
/**
 * The same schema for devices whose connection applies syncCapturePlugin:
 * Mongoose applies a connection's plugins to a schema once, for the first
 * connection that compiles it, so those devices get their own copy.
 */
const MenuItemSchemaWithPlugin = MenuItemSchema.clone();

export interface DeviceOptions {
  localUri: string;
  localDbName: string;
  /** Absent: a device in fleet mode without any Atlas URI. */
  atlasUri?: string;
  atlasDbName: string;
  instanceId?: string;
  options?: Partial<BidirectionalSyncModuleOptions>;
  conflictResolver?: Type<SyncConflictResolver>;
  /** Simulates a device whose clock runs ahead (positive) or behind (negative). */
  clockOffsetMs?: number;
  /** Apply syncCapturePlugin to the local connection, as a host with a standalone server does. */
  capturePlugin?: boolean;
  /** Fleet mode (`transport: 'nats'`): the device syncs through JetStream and a relay. */
  fleet?: FleetModuleOptions;
}

/** One device: a Nest application with the module, its own local database and the shared Atlas. */
export class SyncDevice {
  private constructor(
    readonly app: INestApplication,
    readonly opts: DeviceOptions,
  ) {}

  static async start(opts: DeviceOptions): Promise<SyncDevice> {
    // A module that fails to build never runs its shutdown hooks: close the connections it opened.
    const before = new Set(mongoose.connections);
    try {
      return await SyncDevice.build(opts);
    } catch (err) {
      await Promise.all(
        mongoose.connections.filter((c) => !before.has(c)).map((c) => c.close(true)),
      );
      throw err;
    }
  }

  private static async build(opts: DeviceOptions): Promise<SyncDevice> {
    const moduleRef = await Test.createTestingModule({
      imports: [
        ScheduleModule.forRoot(),
        EventEmitterModule.forRoot(),
        MongooseModule.forRoot(opts.localUri, {
          dbName: opts.localDbName,
          ...(opts.capturePlugin
            ? { connectionFactory: (c: Connection) => c.plugin(syncCapturePlugin) }
            : {}),
        }),
        MongooseModule.forFeature([
          {
            name: MenuItem.name,
            schema: opts.capturePlugin ? MenuItemSchemaWithPlugin : MenuItemSchema,
          },
        ]),
        BidirectionalSyncModule.forRoot({
          atlasUri: opts.atlasUri,
          atlasDbName: opts.atlasDbName,
          instanceId: opts.instanceId,
          enabled: true,
          outboxDrainInterval: 50,
          reconnectInterval: 200,
          maxReconnectInterval: 2000,
          ...opts.options,
          conflictResolver: opts.conflictResolver,
          fleet: opts.fleet,
        }),
      ],
    })
      .overrideProvider(SYNC_WALL_CLOCK)
      .useValue(() => Date.now() + (opts.clockOffsetMs ?? 0))
      .compile();
    const app = moduleRef.createNestApplication({
      logger: process.env.SYNC_TEST_LOGS ? undefined : false,
    });
    await app.init();
    return new SyncDevice(app, opts);
  }

  get sync(): BidirectionalSyncService {
    return this.app.get(BidirectionalSyncService);
  }

  get connection(): Connection {
    return this.app.get<Connection>(getConnectionToken());
  }

  get db(): Db {
    return this.connection.db as unknown as Db;
  }

  get<T>(type: Type<T>): T {
    return this.app.get(type);
  }

  async close(): Promise<void> {
    await this.app.close();
  }
}
