import { Injectable, Logger } from '@nestjs/common';
import { EventEmitter2 } from '@nestjs/event-emitter';
import type { ChangeStreamDocument } from 'mongodb';
import { SYNC_COLLECTIONS, SYNC_STAMP_FIELD } from '../bidirectional-sync.constants';
import { InjectSyncConfig } from '../bidirectional-sync.decorators';
import type { DataEvent } from '../capture/local-change-capture.service';
import { LocalChangeCaptureService } from '../capture/local-change-capture.service';
import { findByIds } from '../common/find-by-ids';
import { groupBy } from '../common/group-by';
import { compareVersions, SyncVersion } from '../common/hybrid-logical-clock';
import { idTypeBrackets } from '../common/id-brackets';
import { idKey, readStamp } from '../common/sync-stamp';
import { ResolvedSyncConfig } from '../config/sync-config';
import { ConflictResolverService } from '../conflict/conflict-resolver.service';
import { SyncErrorEvent, SyncEvents } from '../events/sync-events';
import { SyncStoresService } from '../metadata/sync-stores.service';
import { OriginTrackerService } from '../origin/origin-tracker.service';
import { OutboxRepository } from '../outbox/outbox.repository';
import { TombstoneRepository } from '../outbox/tombstone.repository';
import { DeadLetterService } from '../processor/dead-letter.service';
import { gapCheckId } from './gap-check';
import { pagesById } from './pages-by-id';
import { asDeleteEvent } from './uncaptured-writes';

export interface GapDeletesProgress {
  state: 'idle' | 'watching' | 'done' | 'abandoned';
  /** Atlas documents absent here when the check began. */
  candidates?: number;
  /** Deletes made in the gap, pushed now. */
  pushed?: number;
  /** Deletes made in the gap that an edit on Atlas overrode (each recorded as a conflict). */
  lostToEdits?: number;
  reason?: string;
}

interface Candidate {
  collection: string;
  id: unknown;
  /** The first change the Atlas stream delivered for it after the check began, if any. */
  firstOperation?: string;
}

/**
 * A delete the host made while the local oplog was rolling past the capture
 * leaves nothing behind: no document, no tombstone, no digest to compare.
 * It shows only as an absence: an Atlas document this device no longer
 * holds. Absence alone is ambiguous (the document may be new on Atlas and
 * not delivered yet), so the check runs at the one point where the Atlas
 * history tells the two apart: just before the listener resumes from its
 * stored position. It lists the Atlas documents absent here (with no local
 * tombstone, pending push or dead letter), then watches what the stream
 * delivers for them until it has caught up:
 * - an insert: created on Atlas after this device's position; not ours;
 * - a delete: deleted on Atlas as well; nothing to push;
 * - an update or replace: it existed here and was edited elsewhere; the
 *   edit is applied (it re-creates the document) and wins over the gap's
 *   delete, which is recorded as a conflict;
 * - nothing: this device held it, and the host deleted it in the gap; the
 *   delete is pushed now, as the capture would have pushed it;
 * - whatever it delivered, Atlas's state is still this device's own: this
 *   device held it (the stream skips our own states but not our own earlier
 *   deletes, which are older history), so the delete is pushed too.
 * Never for a collection that is empty here (a wiped collection must not
 * empty Atlas), nor once the Atlas history itself was lost (re-baseline):
 * then the check is abandoned with an error event.
 */
@Injectable()
export class GapDeletesService {
  private readonly logger = new Logger(GapDeletesService.name);
  private watching?: Map<string, Candidate>;
  private settling?: Promise<void>;
  private state: GapDeletesProgress = { state: 'idle' };

  constructor(
    @InjectSyncConfig() private readonly config: ResolvedSyncConfig,
    private readonly stores: SyncStoresService,
    private readonly origin: OriginTrackerService,
    private readonly outbox: OutboxRepository,
    private readonly tombstones: TombstoneRepository,
    private readonly deadLetters: DeadLetterService,
    private readonly conflicts: ConflictResolverService,
    private readonly capture: LocalChangeCaptureService,
    private readonly events: EventEmitter2,
  ) {}

  get progress(): GapDeletesProgress {
    return { ...this.state };
  }

  /**
   * Called by the Atlas listener before it opens its stream from a stored
   * position. With a check pending, lists the candidates and returns the
   * function that settles them once the stream has caught up.
   */
  async prepare(): Promise<((caughtUp: () => Promise<boolean>) => Promise<void>) | undefined> {
    if (!(await this.pending())) return undefined;
    // A stream reopened while watching keeps what it saw: recomputing would miss the edits applied since.
    if (!this.watching) {
      const candidates = await this.findCandidates();
      this.watching = candidates;
      this.state = { state: 'watching', candidates: candidates.size };
      this.logger.warn(
        `Local history gap: ${candidates.size} Atlas documents are absent here; watching the Atlas stream to tell deletes made in the gap from documents new on Atlas`,
      );
    }
    return (caughtUp) =>
      (this.settling ??= this.settleOnceCaughtUp(caughtUp).finally(
        () => (this.settling = undefined),
      ));
  }

  /** The Atlas history was lost too (re-baseline): absences cannot be told apart any more. */
  async abandon(reason: string): Promise<void> {
    if (!(await this.pending())) return;
    this.watching = undefined;
    this.state = { state: 'abandoned', reason };
    const message = `Deletes made during the local history gap were not checked (${reason}): documents deleted here in the gap may be back`;
    this.logger.error(message);
    this.events.emit(SyncEvents.error, new SyncErrorEvent('capture', message));
    await this.clearPending();
  }

  /** The listener hands over every batch it reads while a check watches. */
  observe(events: ChangeStreamDocument[]): void {
    if (!this.watching) return;
    for (const e of events) {
      const ref = e as { ns?: { coll?: string }; documentKey?: { _id?: unknown } };
      if (!ref.ns?.coll || ref.documentKey === undefined) continue;
      const candidate = this.watching.get(candidateKey(ref.ns.coll, ref.documentKey._id));
      if (candidate && candidate.firstOperation === undefined)
        candidate.firstOperation = e.operationType;
    }
  }

  private async settleOnceCaughtUp(caughtUp: () => Promise<boolean>): Promise<void> {
    // False when the listener stopped first: the check stays pending for its next start.
    if (!(await caughtUp()) || !this.watching) return;
    // A host delete made since the check began is the capture's to push.
    await this.capture.caughtUp();
    const candidates = [...this.watching.values()];
    let pushed = 0;
    let lostToEdits = 0;
    for (const [collection, list] of groupBy(candidates, (c) => c.collection)) {
      const ids = list.map((c) => c.id);
      const [present, tombs, queued, held] = await Promise.all([
        findByIds(this.stores.local.collection(collection), ids),
        this.tombstones.find(this.stores.local, collection, ids),
        this.outbox.pendingFor(collection, ids),
        this.deadLetters.heldFor(collection, ids),
      ]);
      const absent = list.filter((c) => !present.has(idKey(c.id))).map((c) => c.id);
      const onAtlas = await findByIds(this.stores.atlas.collection(collection), absent, {
        [SYNC_STAMP_FIELD]: 1,
      });
      const deletes: DataEvent[] = [];
      const staleTombstones: { id: unknown; upTo: SyncVersion }[] = [];
      for (const c of list) {
        const key = idKey(c.id);
        const edited = c.firstOperation === 'update' || c.firstOperation === 'replace';
        if (present.has(key)) {
          if (edited) {
            lostToEdits++;
            await this.conflicts.logConflict({
              collection,
              documentId: c.id,
              atlasVersion: readStamp(present.get(key)!)?.v,
              winner: 'atlas',
            });
          }
          continue;
        }
        if (queued.has(key) || held.has(key) || !onAtlas.has(key)) continue;
        const tomb = tombs.get(key);
        const atlasStamp = readStamp(onAtlas.get(key));
        if (atlasStamp?.o === this.origin.instanceId) {
          // Atlas's newest state is this device's own, so this device held it. The stream
          // does not deliver our own states but does deliver our own earlier deletes: such
          // a delete (and the tombstone its replay left) is older history, not news.
          if (tomb && compareVersions(tomb._sync.v, atlasStamp.v) >= 0) continue;
          if (tomb) staleTombstones.push({ id: c.id, upTo: tomb._sync.v });
        } else if (c.firstOperation || tomb) continue;
        deletes.push(asDeleteEvent(this.stores.local.databaseName, collection, c.id));
      }
      // The capture takes a delete over a `remote` tombstone for the engine's own.
      await this.tombstones.remove(this.stores.local, collection, staleTombstones);
      if (deletes.length) await this.capture.captureBatch(deletes);
      pushed += deletes.length;
    }
    this.watching = undefined;
    this.state = { state: 'done', candidates: candidates.length, pushed, lostToEdits };
    await this.clearPending();
    this.logger.warn(
      `Local history gap checked: ${pushed} deletes made in the gap pushed, ${lostToEdits} overridden by edits made on Atlas meanwhile (recorded as conflicts), ${candidates.length - pushed - lostToEdits} documents new on Atlas or deleted there`,
    );
  }

  /** Atlas documents of the pulled collections that this device holds neither as a document nor as a tombstone. */
  private async findCandidates(): Promise<Map<string, Candidate>> {
    const found = new Map<string, Candidate>();
    const atlas = this.stores.atlas;
    const local = this.stores.local;
    const names = await atlas.listCollections({}, { nameOnly: true }).toArray();
    for (const collection of names
      .map((c) => c.name)
      .filter((n) => this.config.pullsCollection(n))) {
      if (!(await local.collection(collection).findOne({}, { projection: { _id: 1 } }))) {
        const message = `Local history gap: local collection "${collection}" is empty while Atlas holds documents; deletes are not derived from it (a wiped collection must not empty Atlas)`;
        this.logger.warn(message);
        this.events.emit(SyncEvents.error, new SyncErrorEvent('capture', message, collection));
        continue;
      }
      for (const bracket of await idTypeBrackets([atlas], collection))
        for await (const page of pagesById(atlas, collection, bracket, undefined, { _id: 1 })) {
          const ids = page.map((d) => d._id);
          const [here, tombs] = await Promise.all([
            findByIds(local.collection(collection), ids, { _id: 1 }),
            this.tombstones.find(local, collection, ids),
          ]);
          for (const id of ids)
            if (!here.has(idKey(id)) && !tombs.has(idKey(id)))
              found.set(candidateKey(collection, id), { collection, id });
        }
    }
    return found;
  }

  private async pending(): Promise<boolean> {
    const flag = await this.metadata().findOne({ _id: gapCheckId(this.origin.instanceId) });
    return flag !== null;
  }

  private async clearPending(): Promise<void> {
    await this.metadata().deleteOne({ _id: gapCheckId(this.origin.instanceId) });
  }

  private metadata() {
    return this.stores.local.collection<{ _id: string }>(SYNC_COLLECTIONS.metadata);
  }
}

function candidateKey(collection: string, id: unknown): string {
  return `${collection}\u0000${idKey(id)}`;
}
