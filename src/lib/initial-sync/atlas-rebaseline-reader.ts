import { Injectable } from '@nestjs/common';
import type { Document } from 'mongodb';
import { ATLAS_ORIGIN, SYNC_COLLECTIONS, SYNC_STAMP_FIELD } from '../bidirectional-sync.constants';
import { dbIdTypes, IdTypeSide } from '../common/id-brackets';
import { successor } from '../common/hybrid-logical-clock';
import { idKey, readStamp, SyncStamp } from '../common/sync-stamp';
import { SyncStoresService } from '../metadata/sync-stores.service';
import { Tombstone, TombstoneRepository } from '../outbox/tombstone.repository';
import { PAGE_SIZE, readPageById } from './pages-by-id';

/** Reading the current position needs only the first (empty) batch: wait briefly (ms). */
const POSITION_READ_MAX_AWAIT_MS = 50;

/** The stamp given to Atlas documents written without the module: older than any stamped version. */
export const UNSTAMPED_ATLAS_STAMP: SyncStamp = {
  v: successor(`000000000000000-000000-${ATLAS_ORIGIN}`, ATLAS_ORIGIN)!,
  o: ATLAS_ORIGIN,
};

/** What Atlas holds of some documents: a version per document present, per tombstone. */
export interface RemoteStates {
  /** `idKey` → the document's `_sync.v` (undefined: present but unstamped). */
  docs: Map<string, string | undefined>;
  /** `idKey` → the tombstone's version. */
  tombstones: Map<string, string>;
}

/** A tombstone as the re-baseline applies it. */
export type RemoteTombstone = Pick<Tombstone, '_id' | 'i' | '_sync'>;

/**
 * The re-baseline's reads of Atlas (and its one write there: the adoption of unstamped
 * documents). Direct mode calls it on the device; in fleet mode the relay calls it to answer
 * a device's re-baseline requests, so both modes read Atlas the same way.
 */
@Injectable()
export class AtlasRebaselineReader {
  constructor(
    private readonly stores: SyncStoresService,
    private readonly tombstoneRepository: TombstoneRepository,
  ) {}

  /** A resume token for "now" on Atlas, taken before comparing so nothing after it is missed. */
  async changeStreamPosition(): Promise<Document> {
    const stream = this.stores.atlas.watch([], { maxAwaitTimeMS: POSITION_READ_MAX_AWAIT_MS });
    try {
      await stream.tryNext();
      return stream.resumeToken as Document;
    } finally {
      await stream.close();
    }
  }

  async collections(): Promise<string[]> {
    const list = await this.stores.atlas.listCollections({}, { nameOnly: true }).toArray();
    return list.map((c) => c.name);
  }

  estimatedCount(collection: string): Promise<number> {
    return this.stores.atlas.collection(collection).estimatedDocumentCount();
  }

  get ids(): IdTypeSide {
    return dbIdTypes(this.stores.atlas);
  }

  /** One page of Atlas documents in `_id` order, unstamped ones adopted first. */
  async page(
    collection: string,
    bracket: Document | undefined,
    after?: { id: unknown },
    limit = PAGE_SIZE,
  ): Promise<Document[]> {
    const page = await readPageById(
      this.stores.atlas,
      collection,
      bracket,
      after,
      undefined,
      limit,
    );
    await this.adoptUnstamped(collection, page);
    return page;
  }

  /** A collection's tombstones in `_id` order, after the tombstone `_id` `after`. */
  async tombstones(
    collection: string,
    after?: string,
    limit = PAGE_SIZE,
  ): Promise<RemoteTombstone[]> {
    const found = await this.stores.atlas
      .collection<Tombstone>(SYNC_COLLECTIONS.tombstones)
      .find({ c: collection, ...(after !== undefined ? { _id: { $gt: after } } : {}) })
      .sort({ _id: 1 })
      .limit(limit)
      .toArray();
    return found.map((t) => ({ _id: t._id, i: t.i, _sync: t._sync }));
  }

  /** The versions Atlas holds of these documents, as documents and as tombstones. */
  async states(collection: string, ids: unknown[]): Promise<RemoteStates> {
    const remote = await this.stores.atlas
      .collection(collection)
      .find({ _id: { $in: ids } } as Document, { projection: { [SYNC_STAMP_FIELD]: 1 } })
      .toArray();
    const tombs = await this.tombstoneRepository.find(this.stores.atlas, collection, ids);
    return {
      docs: new Map(remote.map((d) => [idKey(d._id), readStamp(d)?.v])),
      tombstones: new Map([...tombs].map(([key, t]) => [key, t._sync.v])),
    };
  }

  async isEmpty(collection: string): Promise<boolean> {
    return !(await this.stores.atlas
      .collection(collection)
      .findOne({}, { projection: { _id: 1 } }));
  }

  /**
   * Atlas documents written without the module (before any device ran, or
   * while history was lost) get the oldest possible version, on Atlas itself
   * and with a compare-and-set, so that every device holds the same stamp as
   * Atlas and any stamped copy of the document wins over it. Every device
   * writes the same value, so concurrent re-baselines agree.
   */
  private async adoptUnstamped(collection: string, page: Document[]): Promise<void> {
    const unstamped = page.filter((doc) => !readStamp(doc));
    if (!unstamped.length) return;
    await this.stores.atlas.collection(collection).updateMany(
      {
        _id: { $in: unstamped.map((doc) => doc._id) },
        [SYNC_STAMP_FIELD]: { $exists: false },
      } as Document,
      { $set: { [SYNC_STAMP_FIELD]: UNSTAMPED_ATLAS_STAMP } },
    );
    // Re-read: a device or a direct write may have changed them meanwhile.
    const current = new Map(
      (
        await this.stores.atlas
          .collection(collection)
          .find({ _id: { $in: unstamped.map((doc) => doc._id) } } as Document)
          .toArray()
      ).map((doc) => [idKey(doc._id), doc]),
    );
    for (const [i, doc] of page.entries()) {
      if (readStamp(doc)) continue;
      const now = current.get(idKey(doc._id));
      // Deleted meanwhile: its tombstone (or the stream) carries the delete.
      page[i] = now && readStamp(now) ? now : { ...doc, [SYNC_STAMP_FIELD]: UNSTAMPED_ATLAS_STAMP };
    }
  }
}
