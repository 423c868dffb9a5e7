import type { Document } from 'mongodb';
import type { SyncVersion } from '../common/hybrid-logical-clock';

/** One side of a conflict as a resolver sees it. */
export interface ConflictSide {
  /** The document (without `_sync`), or `null` when this side deleted it. */
  document: Document | null;
  version: SyncVersion;
  origin: string;
}

export interface ConflictContext {
  collection: string;
  documentId: unknown;
  local: ConflictSide;
  atlas: ConflictSide;
}

/** What a resolver decides: keep one side, or a merged document (written with a new version). */
export type ConflictResolution = { winner: 'local' } | { winner: 'atlas' } | { merged: Document };

/**
 * A host-provided conflict resolver (`CONFLICT_RESOLUTION_STRATEGY=custom`),
 * bound to the `SYNC_CONFLICT_RESOLVER` token. It must be deterministic and
 * symmetric (the same answer whichever device runs it), or devices diverge.
 *
 * @publicApi
 */
export interface SyncConflictResolver {
  resolve(context: ConflictContext): ConflictResolution | Promise<ConflictResolution>;
}
