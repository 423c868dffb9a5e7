import { Injectable, Logger } from '@nestjs/common';
import { EventEmitter2 } from '@nestjs/event-emitter';
import { SchedulerRegistry } from '@nestjs/schedule';
import { InjectSyncConfig } from '../bidirectional-sync.decorators';
import { backoffDelay } from '../common/change-stream-tailer';
import { groupBy } from '../common/group-by';
import { readStamp } from '../common/sync-stamp';
import type { ResolvedSyncConfig } from '../config/sync-config';
import { ConflictResolverService } from '../conflict/conflict-resolver.service';
import { redactMessage } from '../errors/sync.errors';
import { SyncChangeAppliedEvent, SyncErrorEvent, SyncEvents } from '../events/sync-events';
import { SyncStoresService } from '../metadata/sync-stores.service';
import { MonitorService } from '../monitor/monitor.service';
import { LocalApplierService } from '../processor/local-applier.service';
import { AtlasPushApplier, PushOutcome } from './atlas-push-applier.service';
import { OutboxEntry, OutboxRepository } from './outbox.repository';

const DRAIN_JOB = 'bidirectional-sync:outbox-drain';
const CLEANUP_JOB = 'bidirectional-sync:cleanup';
/** A failed entry waits this long before its first retry, doubling up to the cap. */
const PUSH_RETRY = { initialMs: 1000, maxMs: 60_000, maxAttempts: 0 };
/** While Atlas keeps failing, the failure is logged once and then every this many attempts. */
const FAILURE_LOG_EVERY = 20;

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
    @InjectSyncConfig() private readonly config: ResolvedSyncConfig,
    private readonly stores: SyncStoresService,
    private readonly outbox: OutboxRepository,
    private readonly pushApplier: AtlasPushApplier,
    private readonly localApplier: LocalApplierService,
    private readonly conflicts: ConflictResolverService,
    private readonly monitor: MonitorService,
    private readonly scheduler: SchedulerRegistry,
    private readonly events: EventEmitter2,
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
    this.state.lastDrainAt = new Date();
    return handled;
  }

  private async pushBatch(batch: OutboxEntry[]): Promise<number> {
    const started = Date.now();
    const byCollection = groupBy(batch, (e) => e.c);
    const outcomes = new Map<OutboxEntry, PushOutcome>();
    for (const [collection, entries] of byCollection) {
      const result = await this.pushApplier.push(collection, entries, (resolved) =>
        this.localApplier.holdResolved(collection, resolved),
      );
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
          outcome.retryMs ?? backoffDelay(entry.attempts + 1, PUSH_RETRY),
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
}
