// Public API of nest-bidirectional-sync. Anything not exported here is internal
// and may change in any release (tests and scripts import internal paths directly).

// The engine: module, options, configuration, tokens and their decorators.
export { BidirectionalSyncModule } from './bidirectional-sync.module';
export type { BidirectionalSyncExtras } from './bidirectional-sync.module-definition';
export type {
  BidirectionalSyncModuleOptions,
  BidirectionalSyncModuleExtras,
  ConflictResolutionStrategy,
  LocalCaptureMode,
} from './config/sync-options.interface';
export { ResolvedSyncConfig, syncOptionsFromEnv } from './config/sync-config';
export {
  SYNC_CONFIG,
  SYNC_CONFLICT_RESOLVER,
  SYNC_COLLECTIONS,
  SYNC_STAMP_FIELD,
} from './bidirectional-sync.constants';
export { InjectSyncConfig, InjectSyncConflictResolver } from './bidirectional-sync.decorators';

// The specification's components (injectable services).
export { BidirectionalSyncService } from './bidirectional-sync.service';
export type {
  BidirectionalHealth,
  HealthState,
  SyncTransportStatus,
} from './bidirectional-sync.service';
export { ListenerService } from './listener/listener.service';
export { ChangeProcessorService } from './processor/change-processor.service';
export { OriginTrackerService } from './origin/origin-tracker.service';
export { ConflictResolverService } from './conflict/conflict-resolver.service';
export type { ConflictRecord, ConflictQuery } from './conflict/conflict.repository';
export { MonitorService } from './monitor/monitor.service';
export type { DirectionalMetrics, DirectionMetrics } from './monitor/monitor.service';
export { ResumeTokenRepository } from './resume-token/resume-token.repository';
export { OutboxRepository } from './outbox/outbox.repository';
export { OutboxDrainerService } from './outbox/outbox-drainer.service';

// Conflicts: the custom resolver's contract, and version order for writing one.
export type {
  ConflictContext,
  ConflictResolution,
  ConflictSide,
  SyncConflictResolver,
} from './conflict/conflict-resolver.interface';
export { compareVersions } from './common/hybrid-logical-clock';
export type { SyncVersion } from './common/hybrid-logical-clock';
export type { SyncStamp } from './common/sync-stamp';

// Events and errors.
export {
  SyncEvents,
  SyncChangeAppliedEvent,
  SyncConflictResolvedEvent,
  SyncErrorEvent,
  SyncStateChangedEvent,
} from './events/sync-events';
export type { SyncComponent, SyncDirection, SyncOperation } from './events/sync-events';
export {
  SyncError,
  SyncConfigurationError,
  InvalidChangeError,
  SyncCaptureError,
} from './errors/sync.errors';

// Standalone local servers: the Mongoose plugin that captures model writes.
export { syncCapturePlugin } from './capture/sync-capture.plugin';

// Health: the Terminus indicator and its module; thresholds are the engine's option.
export { SyncHealthModule } from './health/sync-health.module';
export { SyncHealthIndicator } from './health/sync-health.indicator';
export type { SyncHealthReport, SyncHealthCheckOptions } from './health/sync-health.indicator';
export { syncHealthThresholdsFromEnv } from './health/sync-health.options';
export type { HealthThresholds } from './health/sync-health.options';

// The REST API (optional) and its Prometheus exporter.
export { SyncApiModule } from './api/sync-api.module';
export type { SyncApiModuleOptions, SyncApiModuleExtras } from './api/sync-api-options.interface';
export { syncApiOptionsFromEnv } from './api/sync-api.config';
export {
  SYNC_API_GUARD,
  SYNC_API_KEY_HEADER,
  SYNC_API_PREFIX,
  SYNC_API_SECURITY_SCHEME,
} from './api/sync-api.constants';
export { SyncPrometheusService } from './metrics/sync-prometheus.service';
