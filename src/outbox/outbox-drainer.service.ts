import { Inject, Injectable, Logger } from '@nestjs/common';
import { EventEmitter2 } from '@nestjs/event-emitter';
import { SchedulerRegistry } from '@nestjs/schedule';
import type { AnyBulkWriteOperation, Document, MongoBulkWriteError } from 'mongodb';
import { SYNC_CONFIG, SYNC_STAMP_FIELD } from '../bidirectional-sync.constants';
import { backoffDelay } from '../common/change-stream-tailer';
import { compareVersions } from '../common/hybrid-logical-clock';
import { readStamp, SyncStamp } from '../common/sync-stamp';
import { ResolvedSyncConfig } from '../config/sync-config';
import { ConflictResolverService } from '../conflict/conflict-resolver.service';
import { mergeFieldLevel } from '../conflict/field-level-merge';
import { redactMessage } from '../errors/sync.errors';
import { SyncChangeAppliedEvent, SyncErrorEvent, SyncEvents } from '../events/sync-events';
import { SyncStoresService } from '../metadata/sync-stores.service';
import { MonitorService } from '../monitor/monitor.service';
import { OriginTrackerService } from '../origin/origin-tracker.service';
import { idKey, OutboxEntry, OutboxRepository } from './outbox.repository';
import { TombstoneRepository } from './tombstone.repository';

const DRAIN_JOB = 'bidirectional-sync:outbox-drain';
const CLEANUP_JOB = 'bidirectional-sync:cleanup';

type PushOutcome = 'applied' | 'stale' | { error: string };

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
  }

  async stop(): Promise<void> {
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
    // Runs never overlap: a slow push makes the next tick a no-op.
    if (this.draining) return;
    this.drain().catch(() => undefined);
  }

  /** Pushes everything due, batch after batch; returns the number of entries handled. */
  drain(): Promise<number> {
    this.draining ??= this.drainAll().finally(() => (this.draining = undefined));
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
    const byCollection = new Map<string, OutboxEntry[]>();
    for (const e of batch) byCollection.set(e._id.c, [...(byCollection.get(e._id.c) ?? []), e]);
    const outcomes = new Map<OutboxEntry, PushOutcome>();
    for (const [collection, entries] of byCollection) {
      const result = await this.pushCollection(collection, entries);
      for (const [entry, outcome] of result) outcomes.set(entry, outcome);
    }
    const done: OutboxEntry[] = [];
    const perEntryMs = (Date.now() - started) / batch.length;
    for (const [entry, outcome] of outcomes) {
      const op = entry.op === 'delete' ? 'delete' : 'update';
      if (typeof outcome === 'object') {
        this.monitor.recordLocalToAtlas(op, false, perEntryMs);
        await this.outbox.fail(
          entry,
          outcome.error,
          backoffDelay(entry.attempts + 1, { initialMs: 1000, maxMs: 60_000, maxAttempts: 0 }),
        );
        this.events.emit(
          SyncEvents.error,
          new SyncErrorEvent('drainer', outcome.error, entry._id.c, entry._id.i),
        );
        continue;
      }
      done.push(entry);
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
            entry._id.c,
            entry._id.i,
            op,
            entry.v,
            readStamp(entry.doc)?.o ?? '',
          ),
        );
    }
    await this.outbox.acknowledge(done);
    return batch.length;
  }

  /** Compare-and-set pushes of one collection's entries; deletes leave tombstones on Atlas first. */
  private async pushCollection(
    collection: string,
    entries: OutboxEntry[],
  ): Promise<Map<OutboxEntry, PushOutcome>> {
    const atlas = this.stores.atlas;
    const outcomes = new Map<OutboxEntry, PushOutcome>();
    const deletes = entries.filter((e) => e.op === 'delete');
    let upserts = entries.filter((e) => e.op === 'upsert');

    if (this.config.conflictResolutionStrategy === 'field-level' && upserts.length) {
      upserts = await this.mergeWithAtlas(collection, upserts);
    }

    // Tombstones before deletes: devices learn the delete's version first.
    await this.tombstones.upsert(
      atlas,
      deletes.map((e) => ({
        _id: e._id,
        _sync: { v: e.v, o: originOf(e) },
        deletedAt: new Date(),
      })),
    );
    const ops: AnyBulkWriteOperation<Document>[] = [
      ...upserts.map((e) => ({
        replaceOne: { filter: olderThan(e), replacement: e.doc as Document, upsert: true },
      })),
      ...deletes.map((e) => ({ deleteOne: { filter: olderThan(e) } })),
    ];
    const ordered = [...upserts, ...deletes];
    const failures = await bulkFailures(
      atlas.collection(collection).bulkWrite(ops, { ordered: false }),
    );
    ordered.forEach((entry, i) => {
      const code = failures.get(i);
      if (code === undefined) outcomes.set(entry, 'applied');
      else if (code.code === 11000 && entry.op === 'upsert' && !(entry as MergedEntry).mergedFrom)
        outcomes.set(entry, 'stale');
      else if (code.code === 11000)
        outcomes.set(entry, { error: 'Atlas changed during a field-level merge; retrying' });
      else outcomes.set(entry, { error: redactMessage(code.message) });
    });
    // A delete that matched nothing: the document is gone or Atlas holds a newer version.
    await this.reconcileAfterPush(collection, outcomes);
    return outcomes;
  }

  /**
   * After upserting, a tombstone written concurrently by another device may be
   * newer: delete what we wrote if so (the other device's delete checks the
   * document after writing its tombstone, so one of the two always sees the other).
   * Also records a conflict for each push Atlas rejected as stale.
   */
  private async reconcileAfterPush(
    collection: string,
    outcomes: Map<OutboxEntry, PushOutcome>,
  ): Promise<void> {
    const atlas = this.stores.atlas;
    const applied = [...outcomes]
      .filter(([e, o]) => o === 'applied' && e.op === 'upsert')
      .map(([e]) => e);
    const tombs = await this.tombstones.find(
      atlas,
      collection,
      applied.map((e) => e._id.i),
    );
    const undo = applied.filter(
      (e) => compareVersions(tombs.get(idKey(e._id.i))?._sync.v, e.v) > 0,
    );
    if (undo.length) {
      await atlas.collection(collection).bulkWrite(
        undo.map((e) => ({
          deleteOne: { filter: { _id: e._id.i, [`${SYNC_STAMP_FIELD}.v`]: e.v } as Document },
        })),
        { ordered: false },
      );
      for (const e of undo) outcomes.set(e, 'stale');
    }
    const stale = [...outcomes].filter(([, o]) => o === 'stale').map(([e]) => e);
    if (!stale.length) return;
    const current = await atlas
      .collection(collection)
      .find({ _id: { $in: stale.map((e) => e._id.i) } } as Document, {
        projection: { [SYNC_STAMP_FIELD]: 1 },
      })
      .toArray();
    const atlasVersions = new Map(current.map((d) => [idKey(d._id), readStamp(d)?.v]));
    const staleTombs = await this.tombstones.find(
      atlas,
      collection,
      stale.map((e) => e._id.i),
    );
    await this.conflicts.logConflict(
      ...stale.map((e) => ({
        collection,
        documentId: e._id.i,
        localVersion: e.v,
        atlasVersion: atlasVersions.get(idKey(e._id.i)) ?? staleTombs.get(idKey(e._id.i))?._sync.v,
        winner: 'atlas' as const,
      })),
    );
  }

  /** Field-level: merge each entry with Atlas's current state; the push then compares against that state's version. */
  private async mergeWithAtlas(collection: string, entries: OutboxEntry[]): Promise<MergedEntry[]> {
    const current = await this.stores.atlas
      .collection(collection)
      .find({ _id: { $in: entries.map((e) => e._id.i) } } as Document)
      .toArray();
    const byId = new Map(current.map((d) => [idKey(d._id), d]));
    return entries.map((e) => {
      const remote = byId.get(idKey(e._id.i));
      const remoteStamp = readStamp(remote);
      const localStamp = readStamp(e.doc);
      if (!remote || !remoteStamp || !localStamp) return e;
      const merged = mergeFieldLevel(
        { doc: e.doc!, stamp: localStamp },
        { doc: remote, stamp: remoteStamp },
      );
      // The merged state replaces exactly the state it merged with, under a
      // version newer than both (`v` stays the outbox entry's identity).
      const version =
        compareVersions(remoteStamp.v, e.v) >= 0 ? this.origin.clock.tickAfter(remoteStamp.v) : e.v;
      const stamp: SyncStamp = { ...merged.stamp, v: version, o: this.origin.instanceId };
      return { ...e, doc: { ...merged.doc, [SYNC_STAMP_FIELD]: stamp }, mergedFrom: remoteStamp.v };
    });
  }
}

type MergedEntry = OutboxEntry & { mergedFrom?: string };

function originOf(e: OutboxEntry): string {
  return (
    (e.doc?.[SYNC_STAMP_FIELD] as SyncStamp | undefined)?.o ?? e.v.split('-').slice(2).join('-')
  );
}

/** Filter matching the document only while Atlas holds an older version (or none). */
function olderThan(e: MergedEntry): Document {
  const field = `${SYNC_STAMP_FIELD}.v`;
  // Field-level: the merge kept Atlas's newer fields; replace only that exact state.
  if (e.mergedFrom) return { _id: e._id.i, [field]: e.mergedFrom };
  const v = readStamp(e.doc)?.v ?? e.v;
  return { _id: e._id.i, $or: [{ [field]: { $lt: v } }, { [field]: { $exists: false } }] };
}

/** Index → error of an unordered bulk write's failed operations (empty on success). */
async function bulkFailures(
  write: Promise<unknown>,
): Promise<Map<number, { code: number; message: string }>> {
  try {
    await write;
    return new Map();
  } catch (err) {
    const bulk = err as MongoBulkWriteError;
    const list = bulk.writeErrors
      ? Array.isArray(bulk.writeErrors)
        ? bulk.writeErrors
        : [bulk.writeErrors]
      : undefined;
    if (!list) throw err;
    return new Map(
      list.map((w) => [w.index, { code: w.code, message: w.errmsg ?? String(w.code) }]),
    );
  }
}
