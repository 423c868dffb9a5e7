import type { MongoClientOptions } from 'mongodb';
import type { HealthThresholds } from '../health/sync-health.options';

/** How concurrent edits of one document are resolved. */
export type ConflictResolutionStrategy = 'last-write-wins' | 'field-level' | 'custom';

/**
 * How local writes are captured: a change stream (replica sets; every writer)
 * or the markers `syncCapturePlugin` records (standalone servers; model writes only).
 */
export type LocalCaptureMode = 'change-stream' | 'mongoose-plugin';

/**
 * Options of `BidirectionalSyncModule.forRoot()`. Every option has an
 * environment variable (see `.env.example`) used by `syncOptionsFromEnv()`.
 *
 * @publicApi
 */
export interface BidirectionalSyncModuleOptions {
  /**
   * Connection string of the shared Atlas cluster (replica set). Env `ATLAS_MONGODB_URI`.
   * Required in direct mode; a device in fleet mode (`fleet.transport: 'nats'`) has none:
   * it reaches Atlas only through the relays.
   */
  atlasUri?: string;
  /** Atlas database to sync with. Env `ATLAS_DB_NAME`. Default: the local database's name. */
  atlasDbName?: string;
  /** Extra driver options for the Atlas client (TLS, pool size...). */
  atlasClientOptions?: MongoClientOptions;
  /**
   * Atlas → Local enabled. Local → Atlas always runs. Env `BIDIRECTIONAL_SYNC_ENABLED`.
   * Default `false`, as in the specification ("start disabled in production");
   * a value stored by `POST /toggle` overrides it on later starts.
   */
  enabled?: boolean;
  /** Collections to sync. Default: every collection of the local database except excluded ones. Env `SYNC_COLLECTIONS`. */
  collections?: string[];
  /**
   * Collections that sync Local → Atlas only. Env `BIDIRECTIONAL_EXCLUDED_COLLECTIONS`.
   * Default `['sessions', 'logs', 'notifications']`; `_sync_*` collections are always excluded.
   */
  excludedCollections?: string[];
  /** Change stream batch size. Env `ATLAS_CHANGE_STREAM_BATCH_SIZE`. Default 100. */
  changeStreamBatchSize?: number;
  /** Env `CONFLICT_RESOLUTION_STRATEGY`. Default `last-write-wins`. `custom` needs a `SYNC_CONFLICT_RESOLVER` provider. */
  conflictResolutionStrategy?: ConflictResolutionStrategy;
  /** Interval of the cleanup job that bounds in-memory origin state (ms). Env `ORIGIN_TRACKING_CLEANUP_INTERVAL`. Default 60000. */
  originTrackingCleanupInterval?: number;
  /** First reconnect delay (ms); doubles per attempt with jitter. Env `CHANGE_STREAM_RECONNECT_INTERVAL`. Default 5000. */
  reconnectInterval?: number;
  /** Consecutive failed reconnects before health turns `unhealthy`. Env `CHANGE_STREAM_MAX_RECONNECT_ATTEMPTS`. Default 10. */
  maxReconnectAttempts?: number;
  /** Cap of the reconnect delay (ms). Env `CHANGE_STREAM_MAX_RECONNECT_INTERVAL`. Default 60000. */
  maxReconnectInterval?: number;
  /** This device's id. Env `SYNC_INSTANCE_ID`. Default: random, generated on first start and stored in `_sync_metadata`. */
  instanceId?: string;
  /** How often the outbox drainer runs (ms). Env `SYNC_OUTBOX_DRAIN_INTERVAL`. Default 250. */
  outboxDrainInterval?: number;
  /** Outbox entries pushed per Atlas round trip. Env `SYNC_OUTBOX_BATCH_SIZE`. Default 500. */
  outboxBatchSize?: number;
  /** How long tombstones of deleted documents are kept (ms). Env `SYNC_TOMBSTONE_RETENTION`. Default 30 days. */
  tombstoneRetention?: number;
  /** Conflict records kept in `_sync_conflicts`. Env `SYNC_MAX_CONFLICT_RECORDS`. Default 1000. */
  maxConflictRecords?: number;
  /** Documents applied in parallel (distinct ids only; one id is always applied in order). Env `SYNC_APPLY_CONCURRENCY`. Default 16. */
  applyConcurrency?: number;
  /**
   * Several processes on one local database: one holds a lease and runs capture,
   * drainer and listener; the others stand by and take over this long (ms) after
   * the holder stops renewing. Env `SYNC_LEASE_TTL`. Default 15000.
   */
  leaseTtl?: number;
  /** How often the lease holder renews (ms). Env `SYNC_LEASE_RENEW_INTERVAL`. Default 5000. */
  leaseRenewInterval?: number;
  /**
   * How local writes are captured. `auto` uses the change stream when the local server is a
   * replica set (its `hello` reply has `setName`) and the Mongoose plugin otherwise.
   * Env `SYNC_LOCAL_CAPTURE`. Default `auto`.
   */
  localCapture?: 'auto' | LocalCaptureMode;
  /**
   * Alert thresholds of the health check (`checkBidirectionalHealth()`, `SyncHealthIndicator`,
   * `GET /health`); unset ones keep the defaults. Env `SYNC_HEALTH_MAX_LAG_MS` (default 30000),
   * `SYNC_HEALTH_MAX_DISCONNECTED_MS` (default 300000), `SYNC_HEALTH_MAX_CONFLICTS_PER_HOUR`
   * (default 10). Read-only once the module is built.
   */
  healthThresholds?: Partial<HealthThresholds>;
  /** Start the listener and drainer when the application boots. Default `true`. */
  autoStart?: boolean;
}

/** Extras of `forRoot()` / `forRootAsync()` needed while the module graph is built. */
export interface BidirectionalSyncModuleExtras {
  /** Register the module globally. Default `false`. */
  isGlobal?: boolean;
  /** Name of the host's local Mongoose connection (`MongooseModule.forRoot(uri, { connectionName })`). Default: the default connection. */
  localConnectionName?: string;
}
