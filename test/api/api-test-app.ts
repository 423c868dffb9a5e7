import { DynamicModule, INestApplication, LoggerService } from '@nestjs/common';
import { EventEmitterModule } from '@nestjs/event-emitter';
import { getConnectionToken, MongooseModule } from '@nestjs/mongoose';
import { ScheduleModule } from '@nestjs/schedule';
import { Test } from '@nestjs/testing';
import type { Db } from 'mongodb';
import type { Connection } from 'mongoose';
import { format } from 'node:util';
import request from 'supertest';
import { waitFor } from '../support/mongo-harness';
import type {
  SyncApiModuleExtras,
  SyncApiModuleOptions,
} from '../../src/lib/api/sync-api-options.interface';
import { SyncApiModule } from '../../src/lib/api/sync-api.module';
import { BidirectionalSyncModule } from '../../src/lib/bidirectional-sync.module';
import { BidirectionalSyncService } from '../../src/lib/bidirectional-sync.service';
import type { BidirectionalSyncModuleOptions } from '../../src/lib/config/sync-options.interface';
import type { FleetModuleOptions } from '../../src/lib/fleet/fleet-options.interface';

/** Records every log line as written (nothing redacted), to check what the code logs. */
export class CapturingLogger implements LoggerService {
  readonly lines: string[] = [];
  private write(level: string, message: unknown, rest: unknown[]): void {
    const line = `${level} ${format(message, ...rest)}`;
    this.lines.push(line);
    if (process.env.SYNC_TEST_LOGS) process.stdout.write(`${line}\n`);
  }
  log(message: unknown, ...rest: unknown[]): void {
    this.write('LOG', message, rest);
  }
  error(message: unknown, ...rest: unknown[]): void {
    this.write('ERROR', message, rest);
  }
  warn(message: unknown, ...rest: unknown[]): void {
    this.write('WARN', message, rest);
  }
  debug(message: unknown, ...rest: unknown[]): void {
    this.write('DEBUG', message, rest);
  }
  verbose(message: unknown, ...rest: unknown[]): void {
    this.write('VERBOSE', message, rest);
  }
  fatal(message: unknown, ...rest: unknown[]): void {
    this.write('FATAL', message, rest);
  }
}

export interface ApiTestAppOptions {
  localUri: string;
  localDbName: string;
  atlasUri: string;
  atlasDbName: string;
  /** Sync module options (fast drain and reconnect by default); `fleet` for fleet mode. */
  sync?: Partial<BidirectionalSyncModuleOptions> & { fleet?: FleetModuleOptions };
  /** API module options and extras (generous rate limit by default). */
  api?: SyncApiModuleOptions & SyncApiModuleExtras;
  /** Replaces `SyncApiModule.forRoot(api)` (e.g. with `forRootAsync`). */
  apiModule?: DynamicModule;
  logger?: LoggerService;
}

/** A host application with the sync engine and the sync API, served over HTTP for supertest. */
export class ApiTestApp {
  private constructor(readonly app: INestApplication) {}

  static async start(opts: ApiTestAppOptions): Promise<ApiTestApp> {
    const moduleRef = await Test.createTestingModule({
      imports: [
        ScheduleModule.forRoot(),
        EventEmitterModule.forRoot(),
        MongooseModule.forRoot(opts.localUri, { dbName: opts.localDbName }),
        BidirectionalSyncModule.forRoot({
          atlasUri: opts.atlasUri,
          atlasDbName: opts.atlasDbName,
          enabled: true,
          outboxDrainInterval: 50,
          reconnectInterval: 200,
          maxReconnectInterval: 2000,
          ...opts.sync,
        }),
        opts.apiModule ??
          SyncApiModule.forRoot({ throttle: { ttl: 60_000, limit: 10_000 }, ...opts.api }),
      ],
    }).compile();
    const app = moduleRef.createNestApplication({ logger: opts.logger ?? false });
    await app.init();
    return new ApiTestApp(app);
  }

  /** A supertest client of this app. */
  get http() {
    return request(this.app.getHttpServer());
  }

  get sync(): BidirectionalSyncService {
    return this.app.get(BidirectionalSyncService);
  }

  get db(): Db {
    return this.app.get<Connection>(getConnectionToken()).db as unknown as Db;
  }

  async close(): Promise<void> {
    await this.app.close();
  }
}

/** Every string in a JSON-able value, joined (to search responses for leaked secrets). */
export function flatten(value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/** `waitFor` for a check that returns the value once it is there, or a falsy value before. */
export function waitForValue<T>(
  check: () => Promise<T | false | undefined | null>,
  options: Parameters<typeof waitFor>[1],
): Promise<T> {
  return waitFor(check, options) as Promise<T>;
}
