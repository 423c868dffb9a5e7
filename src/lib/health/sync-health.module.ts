import { DynamicModule, Inject, Module, OnModuleInit, Optional } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { checkThresholds, SyncHealthModuleOptions } from './sync-health.options';
import { SyncEngineLocator } from './sync-engine.locator';
import { SyncHealthIndicator } from './sync-health.indicator';

/** Injection token of `SyncHealthModuleOptions`. */
export const SYNC_HEALTH_OPTIONS = Symbol('SYNC_HEALTH_OPTIONS');

/**
 * Provides `SyncHealthIndicator` for the host's Terminus health checks.
 * Import it next to `BidirectionalSyncModule.forRoot()` (it finds the engine
 * wherever that module is imported). `forRoot({ thresholds })` also sets the
 * alert thresholds.
 *
 * @publicApi
 */
@Module({
  imports: [TerminusModule],
  providers: [SyncEngineLocator, SyncHealthIndicator],
  exports: [SyncEngineLocator, SyncHealthIndicator],
})
export class SyncHealthModule implements OnModuleInit {
  constructor(
    private readonly engine: SyncEngineLocator,
    @Optional() @Inject(SYNC_HEALTH_OPTIONS) private readonly options?: SyncHealthModuleOptions,
  ) {}

  static forRoot(options: SyncHealthModuleOptions = {}): DynamicModule {
    checkThresholds(options.thresholds);
    return {
      module: SyncHealthModule,
      providers: [{ provide: SYNC_HEALTH_OPTIONS, useValue: options }],
    };
  }

  onModuleInit(): void {
    applyThresholds(this.engine, this.options?.thresholds);
  }
}

/** Sets the given alert thresholds on the engine (unset ones are kept). */
export function applyThresholds(
  engine: SyncEngineLocator,
  thresholds: SyncHealthModuleOptions['thresholds'],
): void {
  const defined = Object.entries(thresholds ?? {}).filter(([, v]) => v !== undefined);
  if (defined.length) Object.assign(engine.sync.thresholds, Object.fromEntries(defined));
}
