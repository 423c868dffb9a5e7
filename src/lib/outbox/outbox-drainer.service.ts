import { Inject, Injectable, Logger, Optional } from '@nestjs/common';
import { EventEmitter2 } from '@nestjs/event-emitter';
import { SchedulerRegistry } from '@nestjs/schedule';
import { InjectSyncConfig } from '../bidirectional-sync.decorators';
import { backoffDelay, UNTIL_WOKEN, WorkerLoop } from '../common/worker-loop';
import { groupBy } from '../common/group-by';
import { faultPoint } from '../common/fault-points';
import { idKey, readStamp } from '../common/sync-stamp';
import type { ResolvedSyncConfig } from '../config/sync-config';
import { ConflictResolverService } from '../conflict/conflict-resolver.service';
import { redactMessage } from '../errors/sync.errors';
import { SyncChangeAppliedEvent, SyncErrorEvent, SyncEvents } from '../events/sync-events';
import { SyncStoresService } from '../metadata/sync-stores.service';
import { MonitorService } from '../monitor/monitor.service';
import { LocalResolutionWriter } from '../processor/local-resolution-writer.service';
import { AtlasPushApplier, PushedEdit, PushOutcome } from './atlas-push-applier.service';
import { NewOutboxEntry, OutboxEntry, OutboxRepository } from './outbox.repository';
import { PushSink, SYNC_PUSH_SINK } from './push-sink';

const DRAIN_JOB = 'bidirectional-sync:outbox-drain';
const CLEANUP_JOB = 'bidirectional-sync:cleanup';
/** A failed entry waits this long before its first retry, doubling up to the cap. */
const PUSH_RETRY = { initialMs: 1000, maxMs: 60_000, maxAttempts: 0 };
/** While Atlas keeps failing, the failure is logged once and then every this many attempts. */
const FAILURE_LOG_EVERY = 20;

/** A captured change on its way to Atlas (an outbox entry's fields, before any outbox). */
type CapturedEdit = NewOutboxEntry & PushedEdit;

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
  private readonly worker = new WorkerLoop({
    turn: async () => {
      this.lastHandled = await this.drainAll();
      return UNTIL_WOKEN; // the scheduled job and new entries wake it
    },
    retry: PUSH_RETRY,
  });
  private lastHandled = 0;
  /** A drain asked for while the worker is stopped (the flush on shutdown). */
  private drainWhileStopped?: Promise<number>;
  private stopSignal?: () => void;
  private readonly state: DrainerStatus = { running: false, consecutiveFailures: 0 };
  /** Where edits go: the bound `SYNC_PUSH_SINK` (fleet mode), else Atlas. */
  private readonly sink: PushSink;

  constructor(
    @InjectSyncConfig() private readonly config: ResolvedSyncConfig,
    private readonly stores: SyncStoresService,
    private readonly outbox: OutboxRepository,
    private readonly pushApplier: AtlasPushApplier,
    private readonly resolutions: LocalResolutionWriter,
    private readonly conflicts: ConflictResolverService,
    private readonly monitor: MonitorService,
    private readonly scheduler: SchedulerRegistry,
    private readonly events: EventEmitter2,
    @Optional() @Inject(SYNC_PUSH_SINK) sink?: PushSink,
  ) {
    this.sink = sink ?? {
      ready: () => this.stores.ensureAtlasIndexes(),
      push: (edits) => this.pushToAtlas(edits),
    };
  }

  get status(): DrainerStatus {
    return { ...this.state };
  }

  start(): void {
    if (this.state.running) return;
    this.state.running = true;
    this.addInterval(DRAIN_JOB, this.config.outboxDrainInterval, () => this.worker.wake());
    this.addInterval(CLEANUP_JOB, this.config.originTrackingCleanupInterval, () =>
      this.conflicts.trim().catch((err) => this.logger.warn(`Conflict trim failed: ${err}`)),
    );
    // New entries are pushed at once; the interval is the retry path (and the
    // only one while Atlas is failing, so a burst of writes is not a burst of retries).
    this.stopSignal = this.outbox.onEnqueued(() => {
      if (this.state.consecutiveFailures === 0) this.worker.wake();
    });
    this.worker.start();
  }

  async stop(): Promise<void> {
    this.stopSignal?.();
    this.stopSignal = undefined;
    for (const job of [DRAIN_JOB, CLEANUP_JOB]) {
      if (this.scheduler.doesExist('interval', job)) this.scheduler.deleteInterval(job);
    }
    this.state.running = false;
    await this.worker.stop();
  }

  private addInterval(name: string, ms: number, fn: () => unknown): void {
    if (this.scheduler.doesExist('interval', name)) this.scheduler.deleteInterval(name);
    const timer = setInterval(fn, ms);
    timer.unref();
    this.scheduler.addInterval(name, timer);
  }

  /** Pushes everything due now, batch after batch; returns the number of entries handled. */
  async drain(): Promise<number> {
    if (!this.worker.running) {
      this.drainWhileStopped ??= this.drainAll().finally(
        () => (this.drainWhileStopped = undefined),
      );
      return this.drainWhileStopped;
    }
    await this.worker.nextTurn();
    return this.lastHandled;
  }

  private async drainAll(): Promise<number> {
    let handled = 0;
    try {
      await this.sink.ready();
      for (;;) {
        const batch = await this.outbox.next(this.config.outboxBatchSize);
        if (!batch.length) {
          // Nothing due: if nothing waits for a retry either, captures skip the outbox.
          if (!this.outbox.knownEmpty) await this.outbox.checkEmpty();
          break;
        }
        handled += await this.pushBatch(batch);
        if (batch.length < this.config.outboxBatchSize) break;
      }
      this.state.consecutiveFailures = 0;
      this.state.lastError = undefined;
    } catch (err) {
      this.recordFailure(err);
    }
    this.state.lastDrainAt = new Date();
    return handled;
  }

  /** Atlas failed a push: changes stay queued, and new ones queue up until a drain succeeds. */
  private recordFailure(err: unknown): void {
    this.state.consecutiveFailures++;
    this.state.lastError = redactMessage(String((err as Error)?.message ?? err));
    if (
      this.state.consecutiveFailures === 1 ||
      this.state.consecutiveFailures % FAILURE_LOG_EVERY === 0
    ) {
      this.logger.warn(
        `Push to Atlas failed (${this.state.consecutiveFailures}x), changes stay queued: ${this.state.lastError}`,
      );
    }
    this.events.emit(SyncEvents.error, new SyncErrorEvent('drainer', this.state.lastError));
  }

  /**
   * The hot path: changes the capture just read go to Atlas at once. Only
   * what cannot be pushed now lands in the outbox, for the scheduled job:
   * every change while Atlas is failing, a change of a document that still
   * has a queued one (per-document order), and a change whose write failed.
   * Resolves once each change is on Atlas or in the outbox, so the capture
   * may then save its resume token.
   */
  async pushCaptured(changes: NewOutboxEntry[]): Promise<void> {
    if (!changes.length) return;
    if (!this.state.running || this.state.consecutiveFailures > 0)
      return this.outbox.enqueue(changes);
    const queue: NewOutboxEntry[] = [];
    const direct: CapturedEdit[] = [];
    for (const [collection, list] of groupBy(changes, (c) => c.collection)) {
      const queued = this.outbox.knownEmpty
        ? new Map<string, unknown>()
        : await this.outbox.pendingFor(
            collection,
            list.map((c) => c.id),
          );
      for (const change of list) {
        if (queued.has(idKey(change.id))) queue.push(change);
        else direct.push({ ...change, c: collection, i: change.id });
      }
    }
    await this.outbox.enqueue(queue);
    await faultPoint('push:before-atlas');
    let outcomes: Map<CapturedEdit, PushOutcome>;
    try {
      await this.sink.ready();
      outcomes = await this.sink.push(direct);
    } catch (err) {
      this.recordFailure(err);
      return this.outbox.enqueue(direct);
    }
    await faultPoint('push:after-atlas');
    const failed = this.report(outcomes, (edit) => edit.writtenAt);
    await this.outbox.enqueue(direct.filter((edit) => failed.has(edit)));
  }

  /** Direct mode: pushes edits collection by collection; resolutions are held locally first. */
  private async pushToAtlas<E extends PushedEdit>(edits: E[]): Promise<Map<E, PushOutcome>> {
    const outcomes = new Map<E, PushOutcome>();
    for (const [collection, list] of groupBy(edits, (e) => e.c)) {
      const result = await this.pushApplier.push(collection, list, (resolved) =>
        this.resolutions.hold(collection, resolved),
      );
      for (const [edit, outcome] of result) outcomes.set(edit, outcome);
    }
    return outcomes;
  }

  /** Counts and announces each outcome; returns the edits that failed. */
  private report<E extends PushedEdit>(
    outcomes: Map<E, PushOutcome>,
    writtenAt: (edit: E) => Date | undefined,
    durationMs = 0,
  ): Set<E> {
    const failed = new Set<E>();
    const perEditMs = durationMs / Math.max(1, outcomes.size);
    for (const [edit, outcome] of outcomes) {
      const op = edit.op === 'delete' ? 'delete' : 'update';
      if (typeof outcome === 'object') {
        this.monitor.recordLocalToAtlas(op, false, perEditMs);
        failed.add(edit);
        this.events.emit(
          SyncEvents.error,
          new SyncErrorEvent('drainer', outcome.error, edit.c, edit.i),
        );
        continue;
      }
      const since = writtenAt(edit);
      this.monitor.recordLocalToAtlas(
        op,
        true,
        perEditMs,
        since ? Date.now() - since.getTime() : undefined,
      );
      if (outcome === 'stale') this.monitor.recordStale();
      else
        this.events.emit(
          SyncEvents.changeApplied,
          new SyncChangeAppliedEvent(
            'localToAtlas',
            edit.c,
            edit.i,
            op,
            edit.v,
            readStamp(edit.doc)?.o ?? '',
          ),
        );
    }
    return failed;
  }

  private async pushBatch(batch: OutboxEntry[]): Promise<number> {
    const started = Date.now();
    const outcomes = await this.sink.push(batch);
    const failed = this.report(outcomes, (entry) => entry.enqueuedAt, Date.now() - started);
    for (const entry of failed) {
      const outcome = outcomes.get(entry) as { error: string; retryMs?: number };
      await this.outbox.fail(
        entry,
        outcome.error,
        outcome.retryMs ?? backoffDelay(entry.attempts + 1, PUSH_RETRY),
      );
    }
    await this.outbox.acknowledge(batch, failed);
    return batch.length;
  }
}
