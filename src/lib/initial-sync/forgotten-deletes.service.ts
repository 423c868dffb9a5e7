import { Injectable, Logger } from '@nestjs/common';
import type { Document } from 'mongodb';
import { ATLAS_ORIGIN } from '../bidirectional-sync.constants';
import { CaptureModeService } from '../capture/capture-mode.service';
import { LocalChangeCaptureService } from '../capture/local-change-capture.service';
import { findByIds } from '../common/find-by-ids';
import { successor } from '../common/hybrid-logical-clock';
import { idKey, readStamp } from '../common/sync-stamp';
import { SyncStoresService } from '../metadata/sync-stores.service';
import { OutboxRepository } from '../outbox/outbox.repository';
import { ChangeProcessorService } from '../processor/change-processor.service';
import type { RebaselineSource } from './rebaseline-source';
import { asReplaceEvent, writtenWithoutCapture } from './uncaptured-writes';

/**
 * The re-baseline's rule for deletes Atlas no longer remembers: local
 * documents that were synced once and that Atlas now holds neither as a
 * document nor as a tombstone.
 */
@Injectable()
export class ForgottenDeletesService {
  private readonly logger = new Logger(ForgottenDeletesService.name);
  private readonly warnedEmpty = new Set<string>();

  constructor(
    private readonly stores: SyncStoresService,
    private readonly outbox: OutboxRepository,
    private readonly processor: ChangeProcessorService,
    private readonly captureMode: CaptureModeService,
    private readonly capture: LocalChangeCaptureService,
  ) {}

  /**
   * Stamped local documents that Atlas holds neither as a document nor as a
   * tombstone. A stamp means the document was synced once, so Atlas deleted
   * it and forgot the delete (its tombstone expired, or the delete was made
   * without the module while no device streamed). The rules:
   * - unmodified since it was last synced (its content matches its stamp's
   *   digest, or the stamp predates digests, and no local edit is pending):
   *   it is deleted here too, like an applied delete (a `remote` tombstone);
   * - modified (a pending outbox entry, or content the stamp does not
   *   describe): the edit wins over the delete; it is pushed (an uncaptured
   *   write is captured first, as a local edit), and the push records the
   *   conflict (`decide()`: an edit of a state Atlas forgot);
   * - unless the Atlas collection was empty when the re-baseline reached it:
   *   then Atlas was emptied or replaced rather than edited, nothing is
   *   deleted here, and everything is pushed back as new local edits (with
   *   a warning).
   *
   * Before deleting, Atlas is asked again once this device's pushes that already left the
   * outbox have landed (`settledStates()`): a document pushed but not yet on Atlas (in
   * fleet mode, one in the push stream) is this device's own new write, never a delete.
   */
  async settle(
    collection: string,
    docs: Document[],
    atlasEmpty: boolean,
    source: RebaselineSource,
  ): Promise<{ deletedLocally: number; queuedToAtlas: number }> {
    // Judged once per collection before this device pushed any of it; emptied since (a drop
    // while the re-baseline ran) counts as emptied too. Never the other way round.
    if (atlasEmpty || (await source.isEmpty(collection))) {
      if (!this.warnedEmpty.has(collection)) {
        this.warnedEmpty.add(collection);
        this.logger.warn(
          `Atlas collection "${collection}" was empty while this device holds synced documents of it: pushing them back instead of deleting them here (Atlas emptied or replaced?)`,
        );
      }
      // As new local edits: their versions beat the delete another device may derive meanwhile.
      await this.capture.captureBatch(
        docs.map((d) => asReplaceEvent(this.stores.local.databaseName, collection, d)),
      );
      return { deletedLocally: 0, queuedToAtlas: docs.length };
    }
    let current = docs;
    if (docs.some(writtenWithoutCapture)) {
      // A host write the capture has not recorded yet: let it record it, then look again.
      await this.captureMode.active.caughtUp();
      current = [
        ...(
          await findByIds(
            this.stores.local.collection(collection),
            docs.map((d) => d._id),
          )
        ).values(),
      ];
    }
    const pending = await this.outbox.pendingFor(
      collection,
      current.map((d) => d._id),
    );
    const uncaptured = current.filter(
      (d) => !pending.has(idKey(d._id)) && readStamp(d) && writtenWithoutCapture(d),
    );
    if (uncaptured.length)
      await this.capture.captureBatch(
        uncaptured.map((d) => asReplaceEvent(this.stores.local.databaseName, collection, d)),
      );
    const modified = new Set([...pending.keys(), ...uncaptured.map((d) => idKey(d._id))]);
    let unmodified = current.filter((d) => !modified.has(idKey(d._id)));
    if (unmodified.length) {
      // Read after the outbox: a push that left it since the page was compared is on Atlas now.
      const now = await source.settledStates(
        collection,
        unmodified.map((d) => d._id),
      );
      unmodified = unmodified.filter(
        (d) => !now.docs.has(idKey(d._id)) && !now.tombstones.has(idKey(d._id)),
      );
    }
    if (unmodified.length) {
      await this.processor.applyChanges(
        unmodified.map((d) => ({
          collection,
          id: d._id,
          operation: 'delete',
          // Every device derives the same version: just after the state it last synced.
          stamp: { v: successor(readStamp(d)!.v, ATLAS_ORIGIN)!, o: ATLAS_ORIGIN },
        })),
      );
      this.logger.log(
        `Re-baseline ${collection}: ${unmodified.length} documents deleted on Atlas (no tombstone left) deleted here too`,
      );
    }
    // Pending entries are pushed as they are; captured edits went through the capture's push.
    return { deletedLocally: unmodified.length, queuedToAtlas: modified.size };
  }
}
