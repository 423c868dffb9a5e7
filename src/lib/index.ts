// Public API of the bidirectional sync module.
export * from './bidirectional-sync.constants';
export * from './bidirectional-sync.decorators';
export { BidirectionalSyncModule } from './bidirectional-sync.module';
export { SYNC_MODULE_OPTIONS } from './bidirectional-sync.module-definition';
export type { BidirectionalSyncExtras } from './bidirectional-sync.module-definition';
export * from './bidirectional-sync.service';
export * from './config/sync-options.interface';
export {
  resolveSyncConfig,
  syncOptionsFromEnv,
  ResolvedSyncConfig,
  DEFAULT_EXCLUDED_COLLECTIONS,
  SYNC_ENV_VARIABLES,
} from './config/sync-config';
export * from './common/hybrid-logical-clock';
export type { SyncStamp } from './common/sync-stamp';
export * from './conflict/conflict-resolver.interface';
export { ConflictResolverService } from './conflict/conflict-resolver.service';
export type { ConflictRecord, ConflictQuery } from './conflict/conflict.repository';
export { mergeFieldLevel } from './conflict/field-level-merge';
export * from './errors/sync.errors';
export * from './events/sync-events';
export { ListenerService } from './listener/listener.service';
export { ChangeProcessorService } from './processor/change-processor.service';
export type { IncomingChange } from './processor/change-processor.service';
export { OriginTrackerService } from './origin/origin-tracker.service';
export { MonitorService } from './monitor/monitor.service';
export type { DirectionalMetrics, DirectionMetrics } from './monitor/monitor.service';
export { ResumeTokenRepository } from './resume-token/resume-token.repository';
export { OutboxRepository } from './outbox/outbox.repository';
export { OutboxDrainerService } from './outbox/outbox-drainer.service';
export { LocalChangeCaptureService } from './capture/local-change-capture.service';
export { syncCapturePlugin } from './capture/sync-capture.plugin';
export { RebaselineService } from './initial-sync/rebaseline.service';
export { SyncStoresService } from './metadata/sync-stores.service';

// Operations surface: REST API, Prometheus exporter and Terminus health indicator.
export { SyncApiModule } from './api/sync-api.module';
export { SYNC_API_OPTIONS } from './api/sync-api.module-definition';
export { SyncController } from './api/sync.controller';
export { SyncApiService } from './api/sync-api.service';
export type { SyncApiModuleOptions, SyncApiModuleExtras } from './api/sync-api-options.interface';
export {
  syncApiOptionsFromEnv,
  resolveSyncApiConfig,
  SYNC_API_ENV_VARIABLES,
  DEFAULT_SYNC_API_THROTTLE,
} from './api/sync-api.config';
export type { ResolvedSyncApiConfig } from './api/sync-api.config';
export * from './api/sync-api.constants';
export { SyncApiKeyGuard } from './api/guards/sync-api-key.guard';
export { SyncApiAccess } from './api/guards/sync-api-access.decorator';
export type { SyncApiAccessLevel } from './api/guards/sync-api-access.decorator';
export { ConflictsQueryDto } from './api/dto/conflicts-query.dto';
export { ToggleSyncDto } from './api/dto/toggle-sync.dto';
export * from './api/dto/sync-responses.dto';
export { SyncPrometheusService, SYNC_METRIC_PREFIX } from './metrics/sync-prometheus.service';
export { SyncHealthModule, SYNC_HEALTH_OPTIONS } from './health/sync-health.module';
export { SyncHealthIndicator } from './health/sync-health.indicator';
export type { SyncHealthReport, SyncHealthCheckOptions } from './health/sync-health.indicator';
export {
  syncHealthThresholdsFromEnv,
  SYNC_HEALTH_ENV_VARIABLES,
} from './health/sync-health.options';
export type { SyncHealthModuleOptions } from './health/sync-health.options';
export { SyncEngineLocator } from './health/sync-engine.locator';
export { redactDeep } from './errors/redact-deep';
