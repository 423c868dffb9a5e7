import { Inject, Injectable, Logger } from '@nestjs/common';
import { EventEmitter2 } from '@nestjs/event-emitter';
import { SchedulerRegistry } from '@nestjs/schedule';
import type { Document } from 'mongodb';
import { SYNC_CONFIG, SYNC_STAMP_FIELD } from '../bidirectional-sync.constants';
import { backoffDelay } from '../common/change-stream-tailer';
import { compareVersions, maxVersion, SyncVersion } from '../common/hybrid-logical-clock';
import {
  documentRef,
  idKey,
  readStamp,
  stateUpdate,
  SyncStamp,
  withoutStamp,
} from '../common/sync-stamp';
import { groupBy } from '../common/group-by';
import { statementErrorsOf } from '../common/write-errors';
import { ResolvedSyncConfig } from '../config/sync-config';
import { ConflictResolverService } from '../conflict/conflict-resolver.service';
import { mergeFieldLevel } from '../conflict/field-level-merge';
import { redactMessage } from '../errors/sync.errors';
import { SyncChangeAppliedEvent, SyncErrorEvent, SyncEvents } from '../events/sync-events';
import { SyncStoresService } from '../metadata/sync-stores.service';
import { MonitorService } from '../monitor/monitor.service';
import { OriginTrackerService } from '../origin/origin-tracker.service';
import { OutboxEntry, OutboxRepository } from './outbox.repository';
import { TombstoneRepository } from './tombstone.repository';

const DRAIN_JOB = 'bidirectional-sync:outbox-drain';
const CLEANUP_JOB = 'bidirectional-sync:cleanup';

type PushOutcome = 'applied' | 'stale' | { error: string; retryMs?: number };

export interface DrainerStatus {
  running: boolean;
  lastDrainAt?: Date;
  lastError?: string;
  consecutiveFailures: number;
}

/**
 * The specification's Sync Worker: a scheduled job (interval from
 * `SYNC_OUTBOX_DRAIN_INTERVAL`) that pushes outbox entries to Atlas in
 * batches. Every push is a compare-and-set on the document's version, so a
 * stale push never overwrites newer data and a repeated push is harmless.
 *
 * @publicApi
 */
@Injectable()
export class OutboxDrainerService {
  private readonly logger = new Logger(OutboxDrainerService.name);
  private draining?: Promise<number>;
  private drainAgain = false;
  private stopSignal?: () => void;
  private readonly state: DrainerStatus = { running: false, consecutiveFailures: 0 };

  constructor(
    @Inject(SYNC_CONFIG) private readonly config: ResolvedSyncConfig,
    private readonly stores: SyncStoresService,
    private readonly outbox: OutboxRepository,
    private readonly tombstones: TombstoneRepository,
    private readonly conflicts: ConflictResolverService,
    private readonly monitor: MonitorService,
    private readonly scheduler: SchedulerRegistry,
    private readonly events: EventEmitter2,
    private readonly origin: OriginTrackerService,
  ) {}

  get status(): DrainerStatus {
    return { ...this.state };
  }

  start(): void {
    if (this.state.running) return;
    this.state.running = true;
    this.addInterval(DRAIN_JOB, this.config.outboxDrainInterval, () => this.drainScheduled());
    this.addInterval(CLEANUP_JOB, this.config.originTrackingCleanupInterval, () =>
      this.conflicts.trim().catch((err) => this.logger.warn(`Conflict trim failed: ${err}`)),
    );
    // New entries are pushed at once; the interval is the retry path (and the
    // only one while Atlas is failing, so a burst of writes is not a burst of retries).
    this.stopSignal = this.outbox.onEnqueued(() => {
      if (this.state.consecutiveFailures === 0) this.drainScheduled();
    });
  }

  async stop(): Promise<void> {
    this.stopSignal?.();
    this.stopSignal = undefined;
    for (const job of [DRAIN_JOB, CLEANUP_JOB]) {
      if (this.scheduler.doesExist('interval', job)) this.scheduler.deleteInterval(job);
    }
    this.state.running = false;
    await this.draining?.catch(() => undefined);
  }

  private addInterval(name: string, ms: number, fn: () => unknown): void {
    if (this.scheduler.doesExist('interval', name)) this.scheduler.deleteInterval(name);
    const timer = setInterval(fn, ms);
    timer.unref();
    this.scheduler.addInterval(name, timer);
  }

  private drainScheduled(): void {
    // Runs never overlap: a request during a run makes one more run after it.
    if (this.draining) {
      this.drainAgain = true;
      return;
    }
    this.drain().catch(() => undefined);
  }

  /** Pushes everything due, batch after batch; returns the number of entries handled. */
  drain(): Promise<number> {
    this.draining ??= this.drainAll().finally(() => {
      this.draining = undefined;
      if (this.drainAgain && this.state.running) {
        this.drainAgain = false;
        this.drainScheduled();
      }
    });
    return this.draining;
  }

  private async drainAll(): Promise<number> {
    let handled = 0;
    try {
      await this.stores.ensureAtlasIndexes();
      for (;;) {
        const batch = await this.outbox.next(this.config.outboxBatchSize);
        if (!batch.length) break;
        handled += await this.pushBatch(batch);
        if (batch.length < this.config.outboxBatchSize) break;
      }
      this.state.consecutiveFailures = 0;
      this.state.lastError = undefined;
    } catch (err) {
      this.state.consecutiveFailures++;
      this.state.lastError = redactMessage(String((err as Error)?.message ?? err));
      if (this.state.consecutiveFailures === 1 || this.state.consecutiveFailures % 20 === 0) {
        this.logger.warn(
          `Push to Atlas failed (${this.state.consecutiveFailures}x), changes stay queued: ${this.state.lastError}`,
        );
      }
      this.events.emit(SyncEvents.error, new SyncErrorEvent('drainer', this.state.lastError));
    }
    this.state.lastDrainAt = new Date();
    return handled;
  }

  private async pushBatch(batch: OutboxEntry[]): Promise<number> {
    const started = Date.now();
    const byCollection = groupBy(batch, (e) => e.c);
    const outcomes = new Map<OutboxEntry, PushOutcome>();
    for (const [collection, entries] of byCollection) {
      const result = await this.pushCollection(collection, entries);
      for (const [entry, outcome] of result) outcomes.set(entry, outcome);
    }
    const failed = new Set<OutboxEntry>();
    const perEntryMs = (Date.now() - started) / batch.length;
    for (const [entry, outcome] of outcomes) {
      const op = entry.op === 'delete' ? 'delete' : 'update';
      if (typeof outcome === 'object') {
        this.monitor.recordLocalToAtlas(op, false, perEntryMs);
        await this.outbox.fail(
          entry,
          outcome.error,
          outcome.retryMs ??
            backoffDelay(entry.attempts + 1, { initialMs: 1000, maxMs: 60_000, maxAttempts: 0 }),
        );
        failed.add(entry);
        this.events.emit(
          SyncEvents.error,
          new SyncErrorEvent('drainer', outcome.error, entry.c, entry.i),
        );
        continue;
      }
      this.monitor.recordLocalToAtlas(
        op,
        true,
        perEntryMs,
        Date.now() - entry.enqueuedAt.getTime(),
      );
      if (outcome === 'stale') this.monitor.recordStale();
      else
        this.events.emit(
          SyncEvents.changeApplied,
          new SyncChangeAppliedEvent(
            'localToAtlas',
            entry.c,
            entry.i,
            op,
            entry.v,
            readStamp(entry.doc)?.o ?? '',
          ),
        );
    }
    await this.outbox.acknowledge(batch, failed);
    return batch.length;
  }

  /**
   * Pushes one collection's entries. Atlas's current versions are read first;
   * an entry whose base is what Atlas holds is a fast-forward, anything else
   * is a concurrent edit, resolved by the strategy. Every write is a
   * compare-and-set on the exact version read, so a race with another device
   * is retried on the next run instead of overwriting.
   */
  private async pushCollection(
    collection: string,
    entries: OutboxEntry[],
  ): Promise<Map<OutboxEntry, PushOutcome>> {
    const atlas = this.stores.atlas;
    const ids = entries.map((e) => e.i);
    const [docs, tombs] = await Promise.all([
      atlas
        .collection(collection)
        .find({ _id: { $in: ids } } as Document)
        .toArray(),
      this.tombstones.find(atlas, collection, ids),
    ]);
    const current = new Map(docs.map((d) => [idKey(d._id), d]));
    const outcomes = new Map<OutboxEntry, PushOutcome>();
    const writes: PlannedWrite[] = [];
    const conflicts: Parameters<ConflictResolverService['logConflict']> = [];

    for (const entry of entries) {
      const key = idKey(entry.i);
      const atlasDoc = current.get(key);
      const atlasStamp = atlasDoc ? readStamp(atlasDoc) : tombs.get(key)?._sync;
      const atlasState: AtlasState = {
        exists: !!atlasDoc,
        doc: atlasDoc,
        version: atlasStamp?.v,
        origin: atlasStamp?.o,
      };
      if (atlasState.version === entry.v) {
        outcomes.set(entry, 'applied'); // pushed before (a crash between push and acknowledge)
        continue;
      }
      const plan = await this.plan(collection, entry, atlasState);
      if (plan.conflict)
        conflicts.push({
          collection,
          documentId: entry.i,
          localVersion: entry.v,
          atlasVersion: atlasState.version,
          winner: plan.conflict,
        });
      if (plan.kind === 'skip') outcomes.set(entry, 'stale');
      else writes.push({ entry, atlasState, ...plan });
    }
    await this.conflicts.logConflict(...conflicts);
    await this.rewriteLocal(
      collection,
      writes.filter((w) => w.rewriteLocal),
    );

    const deletes = writes.filter((w) => w.doc === null);
    // Tombstones before deletes: devices learn the delete's version first.
    await this.tombstones.upsert(
      atlas,
      deletes.map((w) => ({
        ...documentRef(collection, w.entry.i),
        _sync: { v: w.version, o: this.origin.instanceId },
        deletedAt: new Date(),
      })),
    );
    const upserts = writes.filter((w) => w.doc !== null);
    const failures = await bulkFailures(
      upserts.length
        ? atlas.collection(collection).bulkWrite(
            upserts.map((w) => ({
              replaceOne: {
                filter: exactly(w.entry.i, w.atlasState),
                replacement: w.doc as Document,
                upsert: true,
              },
            })),
            { ordered: false },
          )
        : Promise.resolve(),
    );
    upserts.forEach((w, i) => {
      const failure = failures.get(i);
      if (!failure) outcomes.set(w.entry, 'applied');
      else if (failure.code === 11000)
        outcomes.set(w.entry, { error: 'Atlas changed while pushing; retrying', retryMs: 100 });
      else outcomes.set(w.entry, { error: redactMessage(failure.message) });
    });
    for (const w of deletes) {
      const result = await atlas.collection(collection).deleteOne(exactly(w.entry.i, w.atlasState));
      outcomes.set(
        w.entry,
        result.deletedCount || !w.atlasState.exists
          ? 'applied'
          : { error: 'Atlas changed while deleting; retrying', retryMs: 100 },
      );
    }
    await this.undoBehindTombstones(
      collection,
      upserts.filter((w) => outcomes.get(w.entry) === 'applied'),
    );
    return outcomes;
  }

  /** What to write for one entry, given what Atlas holds. */
  private async plan(collection: string, entry: OutboxEntry, atlas: AtlasState): Promise<Plan> {
    const base = entry.base ?? undefined;
    const localDoc = entry.op === 'delete' ? null : (entry.doc as Document);
    const ours: Plan = { kind: 'write', doc: localDoc, version: entry.v };
    // Fast-forward: Atlas still holds the state this edit was made on. A local
    // delete does not know its base (no pre-image): plain last write wins.
    const unknownBase = entry.op === 'delete' && base === undefined;
    // A host `replace` drops the stamp, so the base is unknown too; when Atlas
    // holds a state this instance wrote, no other writer came in between.
    const ownStateOnAtlas = base === undefined && atlas.origin === this.origin.instanceId;
    if (
      atlas.version === base ||
      (!atlas.exists && atlas.version === undefined) ||
      unknownBase ||
      ownStateOnAtlas
    ) {
      return compareVersions(entry.v, atlas.version) > 0
        ? ours
        : { kind: 'skip', conflict: unknownBase ? undefined : 'atlas' };
    }
    switch (this.config.conflictResolutionStrategy) {
      case 'field-level': {
        if (!localDoc || !atlas.doc) break;
        const atlasStamp = readStamp(atlas.doc) ?? { v: atlas.version ?? '', o: 'atlas' };
        const merged = mergeFieldLevel(
          { doc: localDoc, stamp: readStamp(localDoc)! },
          { doc: atlas.doc, stamp: atlasStamp },
        );
        const version =
          compareVersions(atlas.version, entry.v) >= 0
            ? this.origin.clock.tickAfter(atlas.version)
            : entry.v;
        const stamp: SyncStamp = { ...merged.stamp, v: version, o: this.origin.instanceId };
        return {
          kind: 'write',
          doc: { ...merged.doc, [SYNC_STAMP_FIELD]: stamp },
          version,
          conflict: 'merged',
          rewriteLocal: version !== entry.v || undefined,
        };
      }
      case 'custom': {
        const decision = await this.conflicts.resolveConflict({
          collection,
          documentId: entry.i,
          local: {
            document: localDoc ? withoutStamp(localDoc) : null,
            version: entry.v,
            origin: this.origin.instanceId,
          },
          atlas: {
            document: atlas.doc ? withoutStamp(atlas.doc) : null,
            version: atlas.version ?? '',
            origin: readStamp(atlas.doc)?.o ?? 'atlas',
          },
        });
        const chosen =
          'merged' in decision
            ? { ...decision.merged, _id: entry.i }
            : decision.winner === 'local'
              ? localDoc
              : (atlas.doc ?? null);
        const winner = 'merged' in decision ? 'merged' : decision.winner;
        if (winner === 'atlas' && compareVersions(atlas.version, entry.v) > 0)
          return { kind: 'skip', conflict: 'atlas' };
        if (winner === 'local' && compareVersions(entry.v, atlas.version) > 0)
          return { ...ours, conflict: 'local' };
        // The choice is older than the other side: it wins under a new version.
        const version = this.origin.clock.tickAfter(maxVersion(entry.v, atlas.version));
        const doc = chosen
          ? {
              ...withoutStamp(chosen),
              _id: entry.i,
              [SYNC_STAMP_FIELD]: { v: version, o: this.origin.instanceId },
            }
          : null;
        return { kind: 'write', doc, version, conflict: winner, rewriteLocal: true };
      }
    }
    // last-write-wins (and field-level against a delete): the newer version wins.
    return compareVersions(entry.v, atlas.version) > 0
      ? { ...ours, conflict: 'local' }
      : { kind: 'skip', conflict: 'atlas' };
  }

  /** Resolutions that produced a new state write it locally too (compare-and-set on the pushed entry's version). */
  private async rewriteLocal(collection: string, writes: PlannedWrite[]): Promise<void> {
    const local = this.stores.local;
    for (const w of writes) {
      // Not newer than the pushed entry: its stamp may not have reached the
      // document yet, and a newer local edit is pushed (and resolved) on its own.
      const field = `${SYNC_STAMP_FIELD}.v`;
      const filter = {
        _id: w.entry.i,
        $or: [{ [field]: { $lte: w.entry.v } }, { [field]: { $exists: false } }],
      } as Document;
      if (w.doc) {
        const result = await local
          .collection(collection)
          .updateOne(filter, stateUpdate(w.entry.doc ?? {}, w.doc));
        if (!result.matchedCount) await this.upsertLocalIfDeleted(collection, w);
      } else {
        await this.tombstones.upsert(local, [
          {
            ...documentRef(collection, w.entry.i),
            _sync: { v: w.version, o: this.origin.instanceId },
            deletedAt: new Date(),
            src: 'remote',
          },
        ]);
        await local.collection(collection).deleteOne(filter);
      }
    }
  }

  /** A local delete lost to a resolver's choice of the Atlas document: bring it back locally. */
  private async upsertLocalIfDeleted(collection: string, w: PlannedWrite): Promise<void> {
    const tombs = await this.tombstones.find(this.stores.local, collection, [w.entry.i]);
    if (tombs.get(idKey(w.entry.i))?._sync.v !== w.entry.v) return; // edited again since: that edit decides
    await this.tombstones.remove(this.stores.local, collection, [
      { id: w.entry.i, upTo: w.entry.v },
    ]);
    await this.stores.local
      .collection(collection)
      .insertOne(w.doc as Document)
      .catch(() => undefined);
  }

  /**
   * A delete by another device may have written its tombstone between our
   * read and our upsert: if a newer tombstone exists now, remove what we
   * wrote (that device checks the document after its tombstone, so one of the
   * two always sees the other).
   */
  private async undoBehindTombstones(collection: string, applied: PlannedWrite[]): Promise<void> {
    if (!applied.length) return;
    const atlas = this.stores.atlas;
    const tombs = await this.tombstones.find(
      atlas,
      collection,
      applied.map((w) => w.entry.i),
    );
    const undo = applied.filter(
      (w) => compareVersions(tombs.get(idKey(w.entry.i))?._sync.v, w.version) > 0,
    );
    if (!undo.length) return;
    await atlas.collection(collection).bulkWrite(
      undo.map((w) => ({
        deleteOne: {
          filter: { _id: w.entry.i, [`${SYNC_STAMP_FIELD}.v`]: w.version } as Document,
        },
      })),
      { ordered: false },
    );
  }
}

/** What Atlas holds for a document: a document (maybe unstamped), a tombstone, or nothing. */
interface AtlasState {
  exists: boolean;
  doc?: Document;
  /** Version and origin of the document, or of its tombstone. */
  version?: SyncVersion;
  origin?: string;
}

type Plan =
  | { kind: 'skip'; conflict?: 'atlas' | 'local' | 'merged' }
  | {
      kind: 'write';
      doc: Document | null;
      version: SyncVersion;
      conflict?: 'atlas' | 'local' | 'merged';
      rewriteLocal?: boolean;
    };

type PlannedWrite = { entry: OutboxEntry; atlasState: AtlasState } & Extract<
  Plan,
  { kind: 'write' }
>;

/** Matches the document only in the exact state read (compare-and-set). */
function exactly(id: unknown, state: AtlasState): Document {
  const field = `${SYNC_STAMP_FIELD}.v`;
  if (!state.exists) return { _id: id, [field]: { $exists: false } };
  return { _id: id, [field]: state.version ?? { $exists: false } };
}

/** Index → error of an unordered bulk write's failed operations (empty on success). */
async function bulkFailures(
  write: Promise<unknown>,
): Promise<Map<number, { code: number; message: string }>> {
  try {
    await write;
    return new Map();
  } catch (err) {
    const list = statementErrorsOf(err);
    if (!list) throw err;
    return new Map(
      list.map((w) => [w.index, { code: w.code, message: w.errmsg ?? String(w.code) }]),
    );
  }
}
