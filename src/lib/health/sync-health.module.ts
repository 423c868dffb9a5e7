import { Module } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { SyncHealthIndicator } from './sync-health.indicator';

/**
 * Provides `SyncHealthIndicator` for the host's Terminus health checks.
 * Import it next to `BidirectionalSyncModule.forRoot()`, which provides the
 * engine it reads wherever it is imported. The alert thresholds are the
 * engine's option `healthThresholds`.
 *
 * @publicApi
 */
@Module({
  imports: [TerminusModule],
  providers: [SyncHealthIndicator],
  exports: [SyncHealthIndicator],
})
export class SyncHealthModule {}
