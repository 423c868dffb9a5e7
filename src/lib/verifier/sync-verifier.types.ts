import type { Db } from 'mongodb';
import type { ResolvedSyncConfig } from '../config/sync-config';

/** How a collection is synced, hence how it is verified. */
export type VerifiedDirection = 'both' | 'local-to-atlas' | 'not-synced';

/**
 * `missing`: on Atlas, not in the local database. `extra`: in the local
 * database, not on Atlas. `different`: on both sides with different content.
 */
export type MismatchKind = 'missing' | 'extra' | 'different';

export interface SyncMismatch {
  collection: string;
  id: unknown;
  kind: MismatchKind;
  /** `different`: the top-level fields whose values differ. */
  fields?: string[];
  localVersion?: string;
  atlasVersion?: string;
  /** `different`: which side holds the newer `_sync.v`. */
  newer?: 'local' | 'atlas' | 'same';
  /** Set when the local outbox holds an unpushed change of this document (reported as pending). */
  pending?: { op: string; v: string };
}

export interface CollectionVerification {
  name: string;
  direction: VerifiedDirection;
  /** Documents read on each side (Atlas, local → Atlas only: its document count). */
  local: number;
  atlas: number;
  /** `_id` ranges compared, and how many of them hashed differently. */
  ranges: number;
  rangesDiffering: number;
  /** Whole documents fetched again to classify the differences of differing ranges. */
  fetched: number;
  missing: number;
  extra: number;
  different: number;
  /** Differences explained by a pending outbox entry (not mismatches). */
  pending: number;
}

export interface SyncVerificationReport {
  /** True when no mismatch remains (pending changes are not mismatches). */
  ok: boolean;
  localDb: string;
  atlasDb: string;
  comparison: string;
  ignoredFields: string[];
  pageSize: number;
  startedAt: Date;
  durationMs: number;
  /** Entries in the local `_sync_outbox` when the verification started. */
  outboxSize: number;
  collections: CollectionVerification[];
  totals: Omit<CollectionVerification, 'name' | 'direction'> & { mismatches: number };
  /** The first `maxReported` mismatches, in collection and `_id` order. */
  mismatches: SyncMismatch[];
  /** The first `maxReported` differences explained by pending outbox entries. */
  pending: SyncMismatch[];
  /** True when more mismatches or pending differences exist than are listed. */
  truncated: boolean;
}

export interface SyncVerifierOptions {
  local: Db;
  atlas: Db;
  /**
   * Which collections sync in which direction. Default: built from
   * `syncCollections` and `excludedCollections` as the module does.
   */
  sync?: Pick<ResolvedSyncConfig, 'pushesCollection' | 'pullsCollection'>;
  /** SYNC_COLLECTIONS: the synced collections (default: all). */
  syncCollections?: string[];
  /** BIDIRECTIONAL_EXCLUDED_COLLECTIONS (default sessions, logs, notifications). */
  excludedCollections?: string[];
  /** Verify only these collections (default: every collection on either side). */
  only?: string[];
  /** Documents per `_id` range (default 1000). */
  pageSize?: number;
  /** Top-level fields left out of the comparison (default none). */
  ignoreFields?: string[];
  /** Mismatches (and pending differences) listed in the report (default 1000). */
  maxReported?: number;
  /** Called when a collection starts and when it is done. */
  onProgress?: (collection: CollectionVerification, phase: 'start' | 'done') => void;
}
