import type { ChangeStreamDocument, Document } from 'mongodb';
import { SYNC_STAMP_FIELD } from '../bidirectional-sync.constants';
import { contentDigest } from './content-digest';
import type { SyncVersion } from './hybrid-logical-clock';
import type { Tombstone } from '../outbox/tombstone.repository';
import { documentRef, readStamp, SyncStamp, touchesStamp } from './sync-stamp';

/**
 * The rule loop prevention rests on, in one place: **engine writes set
 * `_sync`, host writes never do.** Every write the engine makes to a synced
 * document goes through these helpers, and the capture tells the two apart
 * with `isHostWrite` (on the client) and `ENGINE_WRITE_EVENTS` (the same rule
 * as a server-side filter).
 */

const VERSION_PATH = `${SYNC_STAMP_FIELD}.v`;

/**
 * Matches the document only while it still holds `version` (no stamp, or no
 * document at all, when `version` is undefined): the engine's compare-and-set.
 */
export function casFilter(id: unknown, version: SyncVersion | undefined): Document {
  return { _id: id, [VERSION_PATH]: version ?? { $exists: false } };
}

/**
 * Matches the document only while every field it had when read still holds
 * the value read (stamp included): a host write made after the read (which
 * leaves `_sync` as it was) makes the compare-and-set fail instead of being
 * overwritten unseen. Values are compared whole (`$eq`; MongoDB compares
 * embedded documents field by field in order, and these came from the
 * server). A field the host added after the read is not compared, and the
 * apply's update (`stateUpdate` of the fields read) leaves it in place, so
 * the capture pushes it on top. The stamp is the exception: a document read
 * without one (a host replace strips it) must still have none, or the
 * capture stamped it in the meantime, after pushing its content.
 * (An `$expr` on `$$ROOT` would say the same in one term, but some servers
 * then scan the whole collection: docs/test-server.md D13.)
 */
export function unchangedFilter(read: Document): Document {
  const filter: Document = { _id: read._id };
  for (const [field, value] of Object.entries(read))
    if (field !== '_id') filter[field] = { $eq: value };
  if (!(SYNC_STAMP_FIELD in read)) filter[SYNC_STAMP_FIELD] = { $exists: false };
  return filter;
}

/** Matches the document while its version is not newer than `version` (or it has none). */
export function notNewerFilter(id: unknown, version: SyncVersion): Document {
  return {
    _id: id,
    $or: [{ [VERSION_PATH]: { $lte: version } }, { [VERSION_PATH]: { $exists: false } }],
  };
}

/** Sets a new stamp and nothing else (the capture's write-back, an adoption on Atlas). */
export function stampUpdate(stamp: SyncStamp): Document {
  return { $set: { [SYNC_STAMP_FIELD]: stamp } };
}

/** A document's content under `stamp`, as the engine writes it. */
export function stamped(content: Document, id: unknown, stamp: SyncStamp): Document {
  const { [SYNC_STAMP_FIELD]: _old, ...rest } = content;
  return { ...rest, _id: id, [SYNC_STAMP_FIELD]: stamp };
}

/**
 * A stamp this device issues for `content` (a captured edit, a resolution):
 * it carries the content's digest. Stamps that arrive with a state are kept
 * as they came, so every replica holds the same stamp.
 */
export function issuedStamp(content: Document, id: unknown, stamp: SyncStamp): SyncStamp {
  return { ...stamp, h: contentDigest({ ...content, _id: id }) };
}

/**
 * An update that turns `from` into `to` ($set of every field, $unset of the
 * ones `to` lacks). The engine writes whole states this way, never with a
 * replace, so its writes always show `_sync` in `updatedFields`.
 */
export function stateUpdate(from: Document, to: Document): Document {
  const { _id, ...fields } = to;
  const removed = Object.keys(from).filter((k) => k !== '_id' && !(k in to));
  return removed.length
    ? { $set: fields, $unset: Object.fromEntries(removed.map((k) => [k, ''])) }
    : { $set: fields };
}

/**
 * Who deleted a document, on the local side: the host (`local`, pushed) or
 * the engine applying a remote delete (`remote`, written before the delete so
 * the capture recognises the delete as the engine's).
 */
export type TombstoneSource = 'local' | 'remote';

export function tombstoneOf(
  collection: string,
  id: unknown,
  stamp: SyncStamp,
  src?: TombstoneSource,
): Tombstone {
  return {
    ...documentRef(collection, id),
    _sync: stamp,
    deletedAt: new Date(),
    ...(src ? { src } : {}),
  };
}

/** Host writes never touch `_sync`; the engine's always do. */
export function isHostWrite(e: ChangeStreamDocument): boolean {
  switch (e.operationType) {
    case 'insert':
      return !readStamp(e.fullDocument as Document);
    case 'update': {
      const d = e.updateDescription;
      return !touchesStamp([...Object.keys(d?.updatedFields ?? {}), ...(d?.removedFields ?? [])]);
    }
    case 'replace':
    case 'delete':
      return true; // the engine never replaces; engine deletes are recognised by their tombstone
    default:
      return false;
  }
}

/**
 * `isHostWrite`'s server-side half, for a change stream's `$match` (`$nor`):
 * the engine's own inserts and updates, dropped on the server so they cost
 * no post-image lookup.
 */
export const ENGINE_WRITE_EVENTS: Document[] = [
  {
    operationType: 'update',
    [`updateDescription.updatedFields.${SYNC_STAMP_FIELD}`]: { $exists: true },
  },
  { operationType: 'insert', [`fullDocument.${SYNC_STAMP_FIELD}`]: { $exists: true } },
];
