import { createHash } from 'node:crypto';
import { AnyBulkWriteOperation, BSON, Collection, Db, Document, ObjectId } from 'mongodb';
import { SYNC_COLLECTIONS, SYNC_STAMP_FIELD } from '../bidirectional-sync.constants';
import { documentKeyOf, DocumentRef } from '../common/sync-stamp';

/** Hash of one top-level field's value, as stored in a marker's `base`. */
export interface FieldHash {
  f: string;
  h: string;
}

/**
 * One document written through a model since its last capture (plugin
 * capture, `_sync_dirty`). Written before the write, so a write the server
 * acknowledged is recorded even if the process dies right after.
 */
export interface DirtyMarker extends DocumentRef {
  /** When the marker was last (re)written. */
  at: Date;
  /** New on every (re)write: the capture removes a marker with a compare-and-set on it. */
  token?: ObjectId;
  /** True once the capture looked at the document after the last (re)write. */
  seen?: boolean;
  /**
   * The document as last captured (or as it was before the first write since):
   * a hash per top-level field, `null` when there was no document, absent when
   * unknown. A document equal to its base has no change to push (a no-op or
   * failed write, or a candidate the write did not match).
   */
  base?: FieldHash[] | null;
}

/**
 * Inserts whose ids were unknown before the write (plain objects without
 * `_id`, upserts). The capture checks the collection for documents it never
 * stamped once the marker is older than the settle time (or was left by an
 * earlier process), so an insert is not lost if the process dies between the
 * write and the marker of its new id.
 */
export interface PendingInsertsMarker {
  _id: string;
  c: string;
  at: Date;
  token: ObjectId;
  seen: true;
  /** Only ids from here on can be new (auto ObjectIds); absent when ids are not ObjectIds. */
  from?: ObjectId;
  pendingInserts: true;
}

export type MarkerDocument = DirtyMarker | PendingInsertsMarker;

/** How the capture treats a marker it looked at. */
export interface MarkerOutcome {
  marker: MarkerDocument;
  /** Older than the settle time: a write still in flight is no longer expected, the marker goes. */
  settled: boolean;
  /** The document's state now, when it was captured (becomes the base of a marker re-written meanwhile). */
  captured?: FieldHash[] | null;
}

/** ObjectIds of documents created up to this long before a pending-inserts marker are checked (clock skew). */
const PENDING_INSERTS_MARGIN_S = 60;

export function isPendingInserts(marker: MarkerDocument): marker is PendingInsertsMarker {
  return (marker as PendingInsertsMarker).pendingInserts === true;
}

/** The hashes a marker's `base` holds for a document (`null` when there is none). */
export function fieldHashes(doc: Document | null | undefined): FieldHash[] | null {
  if (!doc) return null;
  return Object.keys(doc)
    .filter((f) => f !== '_id' && f !== SYNC_STAMP_FIELD)
    .map((f) => ({
      f,
      h: createHash('sha1')
        .update(BSON.serialize({ v: doc[f] }))
        .digest('base64'),
    }));
}

/**
 * What changed since `base`: `'none'`, `'all'` (a new, deleted or unknown
 * document) or the top-level fields changed, added or removed.
 */
export function changedFields(
  base: FieldHash[] | null | undefined,
  now: FieldHash[] | null,
): 'none' | 'all' | string[] {
  if (base === undefined) return 'all';
  if (base === null || now === null) return base === now ? 'none' : 'all';
  const before = new Map(base.map((x) => [x.f, x.h]));
  const changed = now.filter((x) => before.get(x.f) !== x.h).map((x) => x.f);
  const present = new Set(now.map((x) => x.f));
  changed.push(...base.filter((x) => !present.has(x.f)).map((x) => x.f));
  return changed.length ? changed : 'none';
}

/**
 * `_sync_dirty` in the local database: written by `syncCapturePlugin`
 * around each model write, read and cleared by `DirtyMarkerCaptureService`.
 */
export class DirtyMarkerRepository {
  constructor(private readonly db: Db) {}

  get collection(): Collection<MarkerDocument> {
    return this.db.collection<MarkerDocument>(SYNC_COLLECTIONS.dirty);
  }

  ensureIndexes(): Promise<string> {
    return this.collection.createIndex({ at: 1 });
  }

  /**
   * Before a write: one marker per document, re-armed if it exists. A new
   * marker remembers the document as it is now (`states`, null when absent).
   */
  async markBefore(
    collection: string,
    states: { id: unknown; doc: Document | null }[],
  ): Promise<void> {
    if (!states.length) return;
    const at = new Date();
    const token = new ObjectId();
    await this.collection.bulkWrite(
      states.map(({ id, doc }) => ({
        updateOne: {
          filter: { _id: documentKeyOf(collection, id) },
          update: {
            $set: { c: collection, i: id, at, token, seen: false },
            $setOnInsert: { base: fieldHashes(doc) },
          },
          upsert: true,
        },
      })),
      { ordered: false },
    );
  }

  /**
   * After a write: re-arms the markers of the documents it wrote so the
   * capture looks again (it may have looked while the write was in flight).
   * A marker created here has no base: its document is always captured.
   */
  async markAfter(collection: string, ids: unknown[]): Promise<void> {
    if (!ids.length) return;
    const at = new Date();
    const token = new ObjectId();
    await this.collection.bulkWrite(
      ids.map((id) => ({
        updateOne: {
          filter: { _id: documentKeyOf(collection, id) },
          update: { $set: { c: collection, i: id, at, token, seen: false } },
          upsert: true,
        },
      })),
      { ordered: false },
    );
  }

  /** Before a write that may create documents whose ids are not known yet. */
  async markPendingInserts(collection: string, objectIds: boolean): Promise<void> {
    const now = new Date();
    await this.collection.updateOne(
      { _id: `${collection}\u0000*` },
      {
        $set: { c: collection, at: now, token: new ObjectId(), seen: true, pendingInserts: true },
        ...(objectIds
          ? {
              $min: {
                from: ObjectId.createFromTime(
                  Math.floor(now.getTime() / 1000) - PENDING_INSERTS_MARGIN_S,
                ),
              },
            }
          : {}),
      },
      { upsert: true },
    );
  }

  /** The token of a document's marker, if it has one. */
  async tokenOf(collection: string, id: unknown): Promise<ObjectId | undefined> {
    const marker = await this.collection.findOne(
      { _id: documentKeyOf(collection, id) },
      { projection: { token: 1 } },
    );
    return marker ? ((marker.token as ObjectId | undefined) ?? undefined) : undefined;
  }

  /**
   * The engine applied a remote state: that state, not the host's last one,
   * is what the marker's document must be compared with. Only while the
   * marker is unchanged, so a host write made meanwhile is still captured.
   */
  async rebase(collection: string, id: unknown, token: ObjectId, doc: Document | null) {
    await this.collection.updateOne(
      { _id: documentKeyOf(collection, id), token },
      { $set: { base: fieldHashes(doc) } },
    );
  }

  /**
   * Markers to look at, oldest first: re-armed ones, and every marker
   * written before `settledBefore` (a write in flight then has finished, or
   * its process died).
   */
  due(settledBefore: Date, limit: number): Promise<MarkerDocument[]> {
    return this.collection
      .find({ $or: [{ seen: { $ne: true } }, { at: { $lte: settledBefore } }] })
      .sort({ at: 1 })
      .limit(limit)
      .toArray();
  }

  /**
   * After the capture looked: settled markers go, others are marked seen
   * (with the captured state as their base). Each is a compare-and-set on
   * the token, so a marker re-written meanwhile stays armed; if its
   * document was captured, that captured state becomes its base.
   */
  async resolve(outcomes: MarkerOutcome[]): Promise<void> {
    if (!outcomes.length) return;
    const ops: AnyBulkWriteOperation<MarkerDocument>[] = [];
    for (const { marker, settled, captured } of outcomes) {
      const unchanged = { _id: marker._id, token: marker.token ?? null } as Document;
      if (settled) ops.push({ deleteOne: { filter: unchanged } });
      else
        ops.push({
          updateOne: {
            filter: unchanged,
            update: { $set: { seen: true, ...(captured !== undefined ? { base: captured } : {}) } },
          },
        });
    }
    for (const { marker, captured } of outcomes) {
      if (captured === undefined) continue;
      ops.push({
        updateOne: {
          filter: { _id: marker._id, token: { $ne: marker.token ?? null } } as Document,
          update: { $set: { base: captured } },
        },
      });
    }
    await this.collection.bulkWrite(ops, { ordered: true });
  }

  /** Removes a marker unless it was re-written since it was read. */
  async remove(marker: MarkerDocument): Promise<void> {
    await this.collection.deleteOne({ _id: marker._id, token: marker.token ?? null } as Document);
  }

  count(): Promise<number> {
    return this.collection.countDocuments();
  }
}
