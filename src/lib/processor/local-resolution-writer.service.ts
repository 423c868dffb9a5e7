import { Injectable } from '@nestjs/common';
import type { Collection, Document } from 'mongodb';
import { notNewerFilter, stateUpdate, tombstoneOf } from '../common/engine-writes';
import type { SyncVersion } from '../common/hybrid-logical-clock';
import { idKey } from '../common/sync-stamp';
import { SyncStoresService } from '../metadata/sync-stores.service';
import type { ResolvedState } from '../outbox/atlas-push-applier.service';
import { TombstoneRepository } from '../outbox/tombstone.repository';

/**
 * The local half of a push resolution: when pushing an edit made a new
 * state (a resolver's choice, a merge under a new version), this device
 * holds it too, before Atlas does.
 */
@Injectable()
export class LocalResolutionWriter {
  constructor(
    private readonly stores: SyncStoresService,
    private readonly tombstones: TombstoneRepository,
  ) {}

  /**
   * New states a push resolution made (a resolver's choice, a merge under a
   * new version) replace the pushed edit locally, only where the document is
   * not newer than that edit: a newer local edit is pushed, and resolved, on
   * its own. A local delete that lost to the Atlas document brings it back.
   */
  async hold(collection: string, resolved: ResolvedState[]): Promise<void> {
    for (const { edit, doc, stamp } of resolved) {
      const filter = notNewerFilter(edit.i, edit.v);
      if (doc) {
        const result = await this.local(collection).updateOne(
          filter,
          stateUpdate(edit.doc ?? {}, doc),
        );
        if (!result.matchedCount) await this.reviveIfDeletedBy(collection, edit.i, edit.v, doc);
      } else {
        await this.tombstones.upsert(this.stores.local, [
          tombstoneOf(collection, edit.i, stamp, 'remote'),
        ]);
        const result = await this.local(collection).deleteOne(filter);
        // A newer local edit kept the document: no tombstone of the engine's may stay beside it.
        if (
          !result.deletedCount &&
          (await this.local(collection).countDocuments({ _id: edit.i } as Document))
        )
          await this.tombstones.remove(this.stores.local, collection, [
            { id: edit.i, upTo: stamp.v },
          ]);
      }
    }
  }

  private async reviveIfDeletedBy(
    collection: string,
    id: unknown,
    deleteVersion: SyncVersion,
    doc: Document,
  ): Promise<void> {
    const tombs = await this.tombstones.find(this.stores.local, collection, [id]);
    if (tombs.get(idKey(id))?._sync.v !== deleteVersion) return; // edited again since: that edit decides
    await this.tombstones.remove(this.stores.local, collection, [{ id, upTo: deleteVersion }]);
    await this.local(collection)
      .insertOne(doc)
      .catch(() => undefined); // created again meanwhile: that write is captured and pushed
  }

  private local(collection: string): Collection<Document> {
    return this.stores.local.collection(collection);
  }
}
