import type { ChangeStreamDocument, Document } from 'mongodb';
import { SYNC_COLLECTIONS } from '../bidirectional-sync.constants';
import { collectionOperationWarning, DATA_OPERATIONS } from '../common/collection-operations';
import { readStamp, SyncStamp, touchesStamp } from '../common/sync-stamp';
import { InvalidChangeError } from '../errors/sync.errors';
import type { SyncOperation } from '../events/sync-events';

/** A document state (or deletion) arriving from Atlas, with its version. */
export interface IncomingChange {
  collection: string;
  id: unknown;
  operation: SyncOperation;
  /** The new content with its stamp; absent for deletions. */
  doc?: Document;
  stamp: SyncStamp;
  /** When the change was written on Atlas (for lag). */
  writtenAt?: Date;
}

/** A data event of a synced collection: it names its collection and document. */
export type AtlasDataEvent = ChangeStreamDocument & {
  ns: { coll: string };
  documentKey: { _id: unknown };
};

/**
 * What an Atlas event means for this device:
 * - `state`: a stamped state (or a tombstone's delete) to apply;
 * - `direct`: a write made on Atlas without the module, adopted by stamping it;
 * - `plain-delete`: a delete without a tombstone (made without the module);
 * - `skip`: nothing for this device (its own write, an excluded collection,
 *   a tombstone's expiry), with a `warning` to log for unexpected events,
 *   `announce`d as an error event for collection operations (drop, rename).
 */
export type AtlasEventKind =
  | { kind: 'state'; change: IncomingChange }
  | { kind: 'direct'; event: AtlasDataEvent & { fullDocument: Document } }
  | { kind: 'plain-delete'; event: AtlasDataEvent }
  | { kind: 'skip'; warning?: string; announce?: boolean };

export interface ClassifierContext {
  instanceId: string;
  /** Whether a document is this device's own write (`OriginTrackerService.shouldSkipSync`, which counts echoes). */
  shouldSkipSync(doc: Document): boolean;
  /** Whether the collection is synced from Atlas (`ResolvedSyncConfig.pullsCollection`). */
  pullsCollection(name: string): boolean;
}

/** Classifies one Atlas change event. Pure; throws `InvalidChangeError` on a malformed event. */
export function classifyAtlasEvent(
  change: ChangeStreamDocument,
  context: ClassifierContext,
): AtlasEventKind {
  const ns = (change as { ns?: { coll?: string } }).ns;
  const op = change.operationType;
  if (!(DATA_OPERATIONS as readonly string[]).includes(op)) {
    const warning = collectionOperationWarning('atlas', change);
    if (warning && context.pullsCollection(ns?.coll ?? ''))
      return { kind: 'skip', warning, announce: true };
    return {
      kind: 'skip',
      warning: !warning && op !== 'invalidate' ? `Ignoring ${op} event` : undefined,
    };
  }
  const key = (change as { documentKey?: { _id?: unknown } }).documentKey;
  if (!ns?.coll || !key || !('_id' in key))
    throw new InvalidChangeError(`${op} event without ns.coll or documentKey._id`);
  const event = change as AtlasDataEvent;
  const doc = (change as { fullDocument?: Document | null }).fullDocument ?? undefined;
  const writtenAt = (change as { wallTime?: Date }).wallTime;

  if (ns.coll === SYNC_COLLECTIONS.tombstones) {
    if (op === 'delete' || !doc) return { kind: 'skip' }; // tombstone expiry
    const stamp = readStamp(doc);
    const target = doc as { c?: string; i?: unknown };
    if (!stamp || typeof target.c !== 'string' || !('i' in target))
      throw new InvalidChangeError('malformed tombstone');
    if (stamp.o === context.instanceId || !context.pullsCollection(target.c))
      return { kind: 'skip' };
    return {
      kind: 'state',
      change: { collection: target.c, id: target.i, operation: 'delete', stamp, writtenAt },
    };
  }
  if (!context.pullsCollection(ns.coll)) return { kind: 'skip' };
  if (op === 'delete') return { kind: 'plain-delete', event };
  if (!doc) return { kind: 'skip' }; // deleted since the event; the delete follows
  if (context.shouldSkipSync(doc)) return { kind: 'skip' };
  const stamp = readStamp(doc);
  const update = (
    change as { updateDescription?: { updatedFields?: object; removedFields?: string[] } }
  ).updateDescription;
  const stampChanged =
    op === 'update'
      ? touchesStamp([
          ...Object.keys(update?.updatedFields ?? {}),
          ...(update?.removedFields ?? []),
        ])
      : !!stamp;
  if (!stampChanged || !stamp) return { kind: 'direct', event: { ...event, fullDocument: doc } };
  return {
    kind: 'state',
    change: {
      collection: ns.coll,
      id: key._id,
      operation: op as SyncOperation,
      doc,
      stamp,
      writtenAt,
    },
  };
}
