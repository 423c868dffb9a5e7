import { Injectable } from '@nestjs/common';
import type { Document, Timestamp } from 'mongodb';
import { ATLAS_ORIGIN } from '../bidirectional-sync.constants';
import { contentDigest, matchesStampDigest } from '../common/content-digest';
import { casFilter, stampUpdate, tombstoneOf } from '../common/engine-writes';
import { findByIds } from '../common/find-by-ids';
import { groupBy } from '../common/group-by';
import {
  compareVersions,
  maxVersion,
  successor,
  SyncVersion,
  versionFromClusterTime,
} from '../common/hybrid-logical-clock';
import { idKey, readStamp } from '../common/sync-stamp';
import { SyncStoresService } from '../metadata/sync-stores.service';
import { OutboxEntry, OutboxRepository } from '../outbox/outbox.repository';
import { Tombstone, TombstoneRepository } from '../outbox/tombstone.repository';
import type { AtlasDataEvent } from './atlas-change-classifier';

/** Adoptions that lose their compare-and-set are re-read and tried again this many times in all. */
const MAX_ADOPTION_ATTEMPTS = 4;

/** A direct write's event, with the newest version the same batch delivered before it. */
export interface DirectWrite {
  event: AtlasDataEvent & { fullDocument: Document; clusterTime?: Timestamp };
  seenBefore?: SyncVersion;
}

/**
 * Writes made on Atlas without the module carry no new version. Every device
 * derives the same one from the event's cluster time and stamps it on Atlas
 * with a compare-and-set (the first device wins, the rest match nothing);
 * all devices then apply the stamped state like any other. Deletes made that
 * way are recorded as Atlas tombstones.
 */
@Injectable()
export class AtlasDirectWriteAdopter {
  constructor(
    private readonly stores: SyncStoresService,
    private readonly outbox: OutboxRepository,
    private readonly tombstones: TombstoneRepository,
  ) {}

  /**
   * The derived version is newer than every version of the document this
   * device has seen: its stamp before the write (which a replace removes),
   * its tombstone, what the device applied, and what the batch delivered
   * before the write.
   */
  async adoptWrites(writes: DirectWrite[]): Promise<void> {
    for (const { event, seenBefore } of writes) {
      const collection = event.ns.coll;
      const id = event.documentKey._id;
      const derived = versionFromClusterTime(event.clusterTime, ATLAS_ORIGIN);
      let current: Document | null = event.fullDocument;
      for (let attempt = 1; current && attempt <= MAX_ADOPTION_ATTEMPTS; attempt++) {
        const previous = readStamp(current);
        const h = contentDigest(current);
        // Adopted already: stamped for this very content by a device before us.
        // (A version at least as new is not enough: a later direct write keeps
        // the stamp the engine put on the write before it.)
        if (
          previous?.o === ATLAS_ORIGIN &&
          previous.h === h &&
          compareVersions(previous.v, derived) >= 0
        )
          break;
        const { v, tombstone } = await this.adoptedVersion(
          collection,
          id,
          previous?.v,
          derived,
          seenBefore,
        );
        const result = await this.stores.atlas
          .collection(collection)
          .updateOne(casFilter(id, previous?.v), stampUpdate({ v, o: ATLAS_ORIGIN, h }));
        if (result.matchedCount) {
          // Re-created on Atlas: the tombstone of its earlier life goes (see AtlasPushApplier).
          if (tombstone)
            await this.tombstones.remove(this.stores.atlas, collection, [{ id, upTo: v }]);
          break;
        }
        // The stamp moved since the event's read: another device adopted, or
        // adopted an earlier content that a later direct write (which keeps
        // the stamp) has replaced since. Only the document as it is now tells.
        current = await this.stores.atlas.collection(collection).findOne({ _id: id } as Document);
        if (current && matchesStampDigest(current) && !olderAdoption(current, derived)) break;
      }
    }
  }

  private async adoptedVersion(
    collection: string,
    id: unknown,
    previous: SyncVersion | undefined,
    derived: SyncVersion,
    seenBefore: SyncVersion | undefined,
  ): Promise<{ v: SyncVersion; tombstone: boolean }> {
    const [tombs, local, pending] = await Promise.all([
      this.tombstones.find(this.stores.atlas, collection, [id]),
      this.findLocal(collection, [id]),
      this.outbox.pendingFor(collection, [id]),
    ]);
    const key = idKey(id);
    const after = (v: SyncVersion | undefined) => successor(v, ATLAS_ORIGIN);
    const v = maxVersion(
      derived,
      after(previous),
      after(tombs.get(key)?._sync.v),
      after(lastAtlasVersionSeen(pending.get(key), local.get(key))),
      after(seenBefore),
    )!;
    return { v, tombstone: tombs.has(key) };
  }

  /**
   * A delete on Atlas without a tombstone was made without the module. It is
   * recorded as a tombstone on Atlas (newer than the version this device
   * holds, unless this device holds an unpushed edit), and every device
   * applies that tombstone.
   */
  async recordDeletes(events: (AtlasDataEvent & { clusterTime?: Timestamp })[]): Promise<void> {
    for (const [collection, list] of groupBy(events, (e) => e.ns.coll)) {
      const ids = list.map((e) => e.documentKey._id);
      const [atlasTombs, local, pending, atlasNow] = await Promise.all([
        this.tombstones.find(this.stores.atlas, collection, ids),
        this.findLocal(collection, ids),
        this.outbox.pendingFor(collection, ids),
        this.stores.atlas
          .collection(collection)
          .find({ _id: { $in: ids } } as Document, { projection: { _id: 1 } })
          .toArray(),
      ]);
      const recreated = new Set(atlasNow.map((d) => idKey(d._id)));
      const tombstones: Tombstone[] = [];
      for (const e of list) {
        const id = e.documentKey._id;
        const key = idKey(id);
        // Written again since the delete: the newer state's own events decide.
        if (recreated.has(key)) continue;
        const unpushed = pending.get(key);
        const lastSeen = lastAtlasVersionSeen(unpushed, local.get(key));
        // A device's delete wrote a tombstone at least that new: its tombstone
        // event does the work. An older tombstone is from an earlier life of
        // the document, so this delete was made on Atlas directly.
        const tomb = atlasTombs.get(key);
        if (tomb && compareVersions(tomb._sync.v, lastSeen) >= 0) continue;
        const derived = versionFromClusterTime(e.clusterTime, ATLAS_ORIGIN);
        const v = unpushed ? derived : maxVersion(derived, successor(lastSeen, ATLAS_ORIGIN))!;
        tombstones.push(tombstoneOf(collection, id, { v, o: ATLAS_ORIGIN }));
      }
      await this.tombstones.upsert(this.stores.atlas, tombstones);
    }
  }

  private findLocal(collection: string, ids: unknown[]): Promise<Map<string, Document>> {
    return findByIds(this.stores.local.collection(collection), ids);
  }
}

/**
 * Stamped for its content by an adoption, but under an older write's version:
 * an update event's post-image is looked up when the event is read, so a late
 * adopter of an earlier write may stamp a later write's content with the
 * earlier write's version. That later write's own event then re-stamps it, so
 * the content Atlas holds carries a version at least as new as its write.
 */
function olderAdoption(doc: Document, derived: SyncVersion): boolean {
  const stamp = readStamp(doc);
  return stamp?.o === ATLAS_ORIGIN && compareVersions(stamp.v, derived) < 0;
}

/** The last Atlas state a device knows of a document (its own unpushed edit is not one). */
function lastAtlasVersionSeen(
  unpushed: OutboxEntry | undefined,
  local: Document | undefined,
): SyncVersion | undefined {
  return unpushed ? (unpushed.base ?? undefined) : readStamp(local)?.v;
}
