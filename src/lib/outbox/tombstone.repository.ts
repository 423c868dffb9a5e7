import { Injectable } from '@nestjs/common';
import type { Db, Document } from 'mongodb';
import { SYNC_COLLECTIONS } from '../bidirectional-sync.constants';
import type { SyncVersion } from '../common/hybrid-logical-clock';
import type { TombstoneSource } from '../common/engine-writes';
import { DocumentRef, documentKeyOf, idKey, SyncStamp } from '../common/sync-stamp';
import { ignoreDuplicateKeys } from './outbox.repository';

/**
 * The version of a deleted document, kept for `tombstoneRetention` so a stale
 * update cannot bring the document back. Same shape on both sides; `src`
 * (local side only) says whether the sync engine (`remote`) or the host
 * (`local`) deleted it.
 */
export interface Tombstone extends DocumentRef {
  _sync: SyncStamp;
  deletedAt: Date;
  src?: TombstoneSource;
}

/** Reads and writes tombstones in either database. */
@Injectable()
export class TombstoneRepository {
  async find(db: Db, collection: string, ids: unknown[]): Promise<Map<string, Tombstone>> {
    if (!ids.length) return new Map();
    const found = await db
      .collection<Tombstone>(SYNC_COLLECTIONS.tombstones)
      .find({ _id: { $in: ids.map((i) => documentKeyOf(collection, i)) } })
      .toArray();
    return new Map(found.map((t) => [idKey(t.i), t]));
  }

  /** Writes tombstones, each only over an older one. */
  async upsert(db: Db, tombstones: Tombstone[]): Promise<void> {
    if (!tombstones.length) return;
    await db
      .collection<Tombstone>(SYNC_COLLECTIONS.tombstones)
      .bulkWrite(
        tombstones.map((t) => ({
          updateOne: {
            filter: { _id: t._id, '_sync.v': { $lt: t._sync.v } } as Document,
            update: {
              $set: {
                c: t.c,
                i: t.i,
                _sync: t._sync,
                deletedAt: t.deletedAt,
                ...(t.src ? { src: t.src } : {}),
              },
            },
            upsert: true,
          },
        })),
        { ordered: false },
      )
      .catch(ignoreDuplicateKeys);
  }

  /** Removes tombstones of re-created documents (only those not newer than `upTo`). */
  async remove(
    db: Db,
    collection: string,
    entries: { id: unknown; upTo: SyncVersion }[],
  ): Promise<void> {
    if (!entries.length) return;
    await db.collection(SYNC_COLLECTIONS.tombstones).bulkWrite(
      entries.map((e) => ({
        deleteOne: {
          filter: { _id: documentKeyOf(collection, e.id), '_sync.v': { $lte: e.upTo } } as Document,
        },
      })),
      { ordered: false },
    );
  }
}
