import { randomBytes } from 'node:crypto';
import { DynamicModule, Module } from '@nestjs/common';
import { EventEmitterModule } from '@nestjs/event-emitter';
import { MongooseModule } from '@nestjs/mongoose';
import { ScheduleModule } from '@nestjs/schedule';
import { BidirectionalSyncModule } from '../../bidirectional-sync.module';
import type { BidirectionalSyncModuleOptions } from '../../config/sync-options.interface';
import { FleetModule } from '../fleet.module';
import type { FleetModuleOptions } from '../fleet-options.interface';
import { RelayChangePublisher } from './relay-change-publisher.service';
import { RelayHealthService } from './relay-health.service';
import { RelayHttpController } from './relay-http.controller';
import { RelayPrometheusService } from './relay-prometheus.service';
import { RelayPushConsumer } from './relay-push-consumer.service';
import { RelayRebaselineResponder } from './relay-rebaseline-responder.service';
import { RelayService } from './relay.service';

/** Suffix of the relay database's default name (`<Atlas database>_relay`). */
export const RELAY_DATABASE_SUFFIX = '_relay';

export interface RelayModuleOptions {
  /** `ATLAS_MONGODB_URI`: the Atlas cluster the relay reads and writes. */
  atlasUri: string;
  /** `ATLAS_DB_NAME`: the synced Atlas database. */
  atlasDbName: string;
  /**
   * `RELAY_DB_NAME`: the relays' own database on the same cluster (lease, shared resume
   * token, conflict log, clock). Default `<atlasDbName>_relay`. Every relay of one Atlas
   * database must use the same one: its lease elects the one active relay.
   */
  relayDbName?: string;
  /**
   * This process's instance id: the origin of the versions it issues (resolutions, delete
   * tombstones). Default `relay-<random>`; unique per process.
   */
  instanceId?: string;
  /** NATS options; `transport: 'nats'` and `role: 'relay'` are set. */
  fleet?: FleetModuleOptions;
  /**
   * Engine options (`syncOptionsFromEnv()`): collections, batch sizes, conflict strategy,
   * lease TTL, reconnect policy. `enabled`/`autoStart` are ignored (the relay drives it).
   */
  sync?: Partial<BidirectionalSyncModuleOptions>;
}

/**
 * The fleet relay as a Nest application module: the engine on the Atlas cluster (its
 * "local" database is the relay database, so the lease, resume token and conflict log are
 * shared by every relay), the NATS connection, and the relay's two directions. Its
 * controller serves `GET /health` and `GET /metrics` when the module runs as an HTTP
 * application (`npm run relay` with `RELAY_PORT`).
 *
 * @publicApi
 */
@Module({})
export class RelayModule {
  static forRoot(options: RelayModuleOptions): DynamicModule {
    const relayDbName = options.relayDbName ?? `${options.atlasDbName}${RELAY_DATABASE_SUFFIX}`;
    const instanceId = options.instanceId ?? `relay-${randomBytes(4).toString('hex')}`;
    return {
      module: RelayModule,
      imports: [
        ScheduleModule.forRoot(),
        EventEmitterModule.forRoot(),
        MongooseModule.forRoot(options.atlasUri, { dbName: relayDbName }),
        BidirectionalSyncModule.forRoot({
          ...options.sync,
          atlasUri: options.atlasUri,
          atlasDbName: options.atlasDbName,
          instanceId,
          enabled: false,
          autoStart: false,
        }),
        FleetModule.forRoot({ ...options.fleet, transport: 'nats', role: 'relay' }),
      ],
      controllers: [RelayHttpController],
      providers: [
        RelayChangePublisher,
        RelayPushConsumer,
        RelayRebaselineResponder,
        RelayService,
        RelayHealthService,
        RelayPrometheusService,
      ],
      exports: [RelayService, RelayHealthService, RelayPrometheusService],
    };
  }
}
