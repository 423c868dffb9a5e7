/** Prefix of every collection the module owns; such collections are never synced. */
export const SYNC_COLLECTION_PREFIX = '_sync_';

/** Names of the module's own collections (in the local database unless noted). */
export const SYNC_COLLECTIONS = {
  /** Instance id, resume tokens, enabled flag, clock high-water mark, leases. */
  metadata: '_sync_metadata',
  /** Pending local changes not yet pushed to Atlas (one entry per document). */
  outbox: '_sync_outbox',
  /** Versions of deleted documents, local and on Atlas. */
  tombstones: '_sync_tombstones',
  /** Recorded conflicts (bounded). */
  conflicts: '_sync_conflicts',
  /** Remote changes the host's validation rejected. */
  deadLetters: '_sync_dead_letters',
  /** Plugin capture (standalone local servers): documents written through a model, not yet captured. */
  dirty: '_sync_dirty',
} as const;

/** Field inside every synced document that carries its version and origin. */
export const SYNC_STAMP_FIELD = '_sync';

/** The origin of versions the engine derives for writes made on Atlas without the module. */
export const ATLAS_ORIGIN = 'atlas';

/** Injection token of the custom conflict resolver (see `SyncConflictResolver`, `@InjectSyncConflictResolver()`). */
export const SYNC_CONFLICT_RESOLVER = Symbol('SYNC_CONFLICT_RESOLVER');

/** Injection token of the resolved, validated configuration (`ResolvedSyncConfig`, `@InjectSyncConfig()`). */
export const SYNC_CONFIG = Symbol('SYNC_CONFIG');

/** Injection token of the local Mongoose `Connection` the module applies changes through. */
export const SYNC_LOCAL_CONNECTION = Symbol('SYNC_LOCAL_CONNECTION');

/** Injection token of the wall clock (`() => epoch ms`, default `Date.now`); override to test clock skew. */
export const SYNC_WALL_CLOCK = Symbol('SYNC_WALL_CLOCK');
