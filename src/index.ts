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
export { RebaselineService } from './initial-sync/rebaseline.service';
export { SyncStoresService } from './metadata/sync-stores.service';
