import { DynamicModule, Module } from '@nestjs/common';
import { EventEmitterModule } from '@nestjs/event-emitter';
import { MongooseModule } from '@nestjs/mongoose';
import { ScheduleModule } from '@nestjs/schedule';
import { TerminusModule } from '@nestjs/terminus';
import { SyncApiModule } from '../lib/api/sync-api.module';
import { syncApiOptionsFromEnv } from '../lib/api/sync-api.config';
import { AppController } from './app.controller';
import { BidirectionalSyncModule } from '../lib/bidirectional-sync.module';
import { syncOptionsFromEnv } from '../lib/config/sync-config';
import { fleetOptionsFromEnv } from '../lib/fleet/fleet-config';
import { SyncHealthModule } from '../lib/health/sync-health.module';
import { EmbeddedDevServers } from '../dev-servers/embedded-dev-servers';
import type { ServiceConfig } from './service-config';

export interface AppModuleOptions {
  config: ServiceConfig;
  /** Connection strings in use (the configured ones, or the embedded servers'). */
  uris: { local: string; atlas?: string };
  /** The embedded servers, stopped when the application shuts down. */
  devServers?: EmbeddedDevServers;
  env?: NodeJS.ProcessEnv;
}

/**
 * The runnable service: the host's local connection, the sync engine, the
 * sync API and a Terminus `/health`. Built by `src/main.ts` from the environment.
 */
@Module({})
export class AppModule {
  static forRoot({ config, uris, devServers, env = process.env }: AppModuleOptions): DynamicModule {
    const syncOptions = syncOptionsFromEnv(env, { atlasUri: uris.atlas });
    // A fresh `npm start` is a live demo: on the embedded servers sync starts switched on
    // (an explicit BIDIRECTIONAL_SYNC_ENABLED, or a stored POST /toggle, still wins).
    // Against configured servers the specification's default (off) stays.
    if (devServers && syncOptions.enabled === undefined) syncOptions.enabled = true;
    return {
      module: AppModule,
      imports: [
        ScheduleModule.forRoot(),
        EventEmitterModule.forRoot(),
        MongooseModule.forRoot(uris.local, { dbName: config.localDbName }),
        BidirectionalSyncModule.forRoot({
          ...syncOptions,
          // SYNC_TRANSPORT=nats: a device in fleet mode (direct mode reads no NATS variable).
          ...(env.SYNC_TRANSPORT?.trim() === 'nats' ? { fleet: fleetOptionsFromEnv(env) } : {}),
        }),
        SyncApiModule.forRoot(syncApiOptionsFromEnv(env)),
        SyncHealthModule,
        TerminusModule,
      ],
      controllers: [AppController],
      providers: devServers ? [{ provide: EmbeddedDevServers, useValue: devServers }] : [],
    };
  }
}
