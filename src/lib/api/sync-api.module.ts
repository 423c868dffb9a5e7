import { Inject, Logger, Module, OnModuleInit, Optional } from '@nestjs/common';
import type { CanActivate } from '@nestjs/common';
import {
  getOptionsToken,
  getStorageToken,
  ThrottlerModuleOptions,
  ThrottlerStorageService,
} from '@nestjs/throttler';
import { SyncHealthModule } from '../health/sync-health.module';
import { SyncPrometheusService } from '../metrics/sync-prometheus.service';
import { SyncApiKeyGuard } from './guards/sync-api-key.guard';
import type { SyncApiModuleOptions } from './sync-api-options.interface';
import {
  resolveSyncApiConfig,
  ResolvedSyncApiConfig,
  syncApiOptionsFromEnv,
} from './sync-api.config';
import { SYNC_API_CONFIG, SYNC_API_GUARD, SYNC_API_PREFIX } from './sync-api.constants';
import { SYNC_DASHBOARD_PATH } from '../dashboard/sync-dashboard.constants';
import {
  ConfigurableSyncApiModule,
  SYNC_API_ASYNC_OPTIONS_TYPE,
  SYNC_API_OPTIONS,
  SYNC_API_OPTIONS_TYPE,
} from './sync-api.module-definition';
import { SyncApiService } from './sync-api.service';
import { SyncDeadLettersService } from './sync-dead-letters.service';
import { SyncController } from './sync.controller';
import { SyncDashboardController } from '../dashboard/sync-dashboard.controller';
import { SyncDashboardService } from '../dashboard/sync-dashboard.service';

/**
 * The sync API (`SyncController`) for hosts that opt in. Import it next to
 * `BidirectionalSyncModule.forRoot()`:
 *
 * ```ts
 * SyncApiModule.forRoot()                                 // options from the environment
 * SyncApiModule.forRoot({ apiKey, protectReads: true, throttle: { ttl: 60000, limit: 100 } })
 * SyncApiModule.forRoot({ guard: MyAuthGuard })           // the host's guard decides instead
 * SyncApiModule.forRoot({ dashboard: false })             // no operator page at /dashboard/
 * ```
 *
 * Rate limiting uses its own throttler storage and options, so a host's
 * `ThrottlerModule` configuration is neither needed nor affected.
 *
 * @publicApi
 */
@Module({
  imports: [SyncHealthModule],
  controllers: [SyncController, SyncDashboardController],
  providers: [
    {
      provide: SYNC_API_CONFIG,
      useFactory: (options: SyncApiModuleOptions) => resolveSyncApiConfig(options),
      inject: [SYNC_API_OPTIONS],
    },
    {
      provide: getOptionsToken(),
      useFactory: (config: ResolvedSyncApiConfig): ThrottlerModuleOptions => ({
        throttlers: [{ ttl: config.throttle.ttl, limit: config.throttle.limit }],
        errorMessage: `Too many requests: at most ${config.throttle.limit} per ${config.throttle.ttl} ms per endpoint`,
      }),
      inject: [SYNC_API_CONFIG],
    },
    { provide: getStorageToken(), useClass: ThrottlerStorageService },
    SyncApiKeyGuard,
    SyncApiService,
    SyncDeadLettersService,
    SyncPrometheusService,
    SyncDashboardService,
  ],
  exports: [SyncPrometheusService, SyncHealthModule],
})
export class SyncApiModule extends ConfigurableSyncApiModule implements OnModuleInit {
  private readonly logger = new Logger('SyncApi');

  constructor(
    @Inject(SYNC_API_CONFIG) private readonly config: ResolvedSyncApiConfig,
    @Optional() @Inject(SYNC_API_GUARD) private readonly hostGuard?: CanActivate | null,
  ) {
    super();
  }

  /** Options as given, or read from the environment (`syncApiOptionsFromEnv()`) when omitted. */
  static override forRoot(options?: typeof SYNC_API_OPTIONS_TYPE) {
    return super.forRoot(options ?? syncApiOptionsFromEnv());
  }

  static override forRootAsync(options: typeof SYNC_API_ASYNC_OPTIONS_TYPE) {
    return super.forRootAsync(options);
  }

  onModuleInit(): void {
    const prefix = `/${SYNC_API_PREFIX}`;
    if (this.config.dashboard) this.logger.log(`Dashboard at ${prefix}/${SYNC_DASHBOARD_PATH}/`);
    if (this.hostGuard) {
      this.logger.log(`Sync API at ${prefix}: access decided by the host's guard`);
    } else if (!this.config.apiKey) {
      this.logger.warn(
        `SYNC_API_KEY is not set: POST ${prefix}/toggle is refused (403) until an API key is configured` +
          (this.config.protectReads ? '; reads are refused too (SYNC_API_PROTECT_READS)' : ''),
      );
    } else {
      this.logger.log(
        `Sync API at ${prefix}: API key required for ${this.config.protectReads ? 'every endpoint' : 'POST /toggle'}`,
      );
    }
  }
}
