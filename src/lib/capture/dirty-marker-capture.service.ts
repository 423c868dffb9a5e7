import { InjectSyncConfig } from '../bidirectional-sync.decorators';
import { Injectable, Logger } from '@nestjs/common';
import type { Document } from 'mongodb';
import { SYNC_STAMP_FIELD } from '../bidirectional-sync.constants';
import { groupBy } from '../common/group-by';
import { idKey } from '../common/sync-stamp';
import { WaiterList } from '../common/waiter-list';
import { ResolvedSyncConfig } from '../config/sync-config';
import { redactMessage } from '../errors/sync.errors';
import { SyncStoresService } from '../metadata/sync-stores.service';
import {
  changedFields,
  DirtyMarker,
  DirtyMarkerRepository,
  fieldHashes,
  isPendingInserts,
  MarkerDocument,
  MarkerOutcome,
  PendingInsertsMarker,
} from './dirty-marker.repository';
import { DataEvent, LocalChangeCaptureService } from './local-change-capture.service';
import { LocalCapture, LocalCaptureStatus } from './local-capture.interface';
import { syncCaptureChannel } from './sync-capture.plugin';
import { WorkerLoop } from '../common/worker-loop';

/**
 * A marker older than this is looked at one last time and removed: a write
 * in flight when it was written has finished by then (or its process died),
 * and its post hook re-arms the marker anyway. Until then a marker stays, so
 * a write still in flight is never missed.
 */
export const MARKER_SETTLE_MS = 30_000;
/** Pages of markers handled per poll before the loop yields. */
const MAX_PAGES_PER_POLL = 20;

interface CatchUpWaiter {
  /** Polls started before the caller asked (those prove nothing). */
  afterPoll: number;
}

/**
 * Local capture for standalone servers (no change streams): polls the
 * markers `syncCapturePlugin` records around model writes, turns each into
 * the change event the change stream would have delivered (the document as
 * it is now, or a delete) and hands them to
 * `LocalChangeCaptureService.captureBatch`, the one stamping and outbox
 * path. A marker whose document did not change since its base (a no-op or
 * failed write) produces no event.
 */
@Injectable()
export class DirtyMarkerCaptureService implements LocalCapture {
  private readonly logger = new Logger(DirtyMarkerCaptureService.name);
  private readonly worker: WorkerLoop;
  private indexed = false;
  private unsubscribe?: () => void;
  /** Markers written before this are settled (left by an earlier process, or a crash). */
  private startedAt = 0;
  private pollsStarted = 0;
  private readonly catchUpWaiters = new WaiterList<CatchUpWaiter>();
  private readonly state: LocalCaptureStatus = {
    running: false,
    connected: false,
    consecutiveFailures: 0,
  };

  constructor(
    @InjectSyncConfig() private readonly config: ResolvedSyncConfig,
    private readonly stores: SyncStoresService,
    private readonly capture: LocalChangeCaptureService,
  ) {
    this.worker = new WorkerLoop({
      turn: () => this.turn(),
      retry: {
        initialMs: Math.min(config.reconnectInterval, 1000),
        maxMs: config.maxReconnectInterval,
      },
      onFailure: (err, attempt, delay) => {
        this.state.connected = false;
        this.state.consecutiveFailures = attempt;
        this.state.lastError = describe(err);
        this.logger.warn(
          `Dirty marker capture failed (attempt ${attempt}), retrying in ${delay} ms: ${this.state.lastError}`,
        );
      },
    });
  }

  get status(): LocalCaptureStatus {
    return { ...this.state };
  }

  private get markers(): DirtyMarkerRepository {
    return new DirtyMarkerRepository(this.stores.local);
  }

  start(): void {
    if (this.worker.running) return;
    this.startedAt = Date.now();
    this.state.running = true;
    // A write recorded in this process is captured at once, not at the next interval.
    this.unsubscribe = syncCaptureChannel(this.stores.connection).onRecorded(() =>
      this.worker.wake(),
    );
    this.worker.start();
  }

  async stop(): Promise<void> {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    await this.worker.stop();
    this.state.running = false;
    this.state.connected = false;
    this.catchUpWaiters.releaseAll();
  }

  /**
   * Resolves once a poll started after the call found no marker left to
   * handle: every model write made before the call has been captured.
   */
  caughtUp(): Promise<void> {
    if (!this.worker.running) return Promise.resolve();
    const afterPoll = this.pollsStarted;
    this.worker.wake();
    return this.catchUpWaiters.wait({ afterPoll });
  }

  /**
   * Change-stream mode: captures markers a plugin run left behind (the
   * server used to be standalone, or writes before the mode was chosen).
   * Runs before the change stream starts, never beside it.
   */
  async captureLeftovers(): Promise<void> {
    try {
      if (!(await this.markers.count())) return;
      this.startedAt = Date.now();
      for (let i = 0; i < MAX_PAGES_PER_POLL && !(await this.poll()); i++);
      this.logger.log('Captured the writes the Mongoose plugin had recorded before');
    } catch (err) {
      this.logger.warn(`Could not capture the plugin's leftover markers: ${describe(err)}`);
    }
  }

  /** One poll: the interval's wait after it when every marker was handled, none when some are left. */
  private async turn(): Promise<number> {
    const poll = ++this.pollsStarted;
    if (!this.indexed) this.indexed = !!(await this.markers.ensureIndexes());
    const drained = await this.poll();
    this.state.connected = true;
    this.state.consecutiveFailures = 0;
    this.state.lastError = undefined;
    if (!drained) return 0;
    this.catchUpWaiters.release((w) => w.afterPoll < poll);
    return this.config.outboxDrainInterval;
  }

  /** Handles due markers page by page; true when none is left. */
  private async poll(): Promise<boolean> {
    const pageSize = this.config.outboxBatchSize;
    for (let page = 0; page < MAX_PAGES_PER_POLL && !this.worker.stopRequested; page++) {
      const settledBefore = new Date(Math.max(Date.now() - MARKER_SETTLE_MS, this.startedAt));
      const markers = await this.markers.due(settledBefore, pageSize);
      if (!markers.length) return true;
      const markedMore = await this.handle(markers, settledBefore);
      if (markers.length < pageSize && !markedMore) return true;
    }
    return false;
  }

  /** Captures a page of markers; true when it marked more documents (found uncaptured inserts). */
  private async handle(markers: MarkerDocument[], settledBefore: Date): Promise<boolean> {
    const pushed: DirtyMarker[] = [];
    let markedMore = false;
    for (const marker of markers) {
      if (isPendingInserts(marker)) {
        markedMore = (await this.findUncapturedInserts(marker)) || markedMore;
        continue;
      }
      if (!this.config.pushesCollection(marker.c) || !('i' in marker)) {
        await this.markers.remove(marker);
        continue;
      }
      pushed.push(marker);
    }
    const events: DataEvent[] = [];
    const outcomes: MarkerOutcome[] = [];
    for (const [collection, list] of groupBy(pushed, (m) => m.c)) {
      const docs = await this.stores.local
        .collection(collection)
        .find({ _id: { $in: list.map((m) => m.i) } } as Document)
        .toArray();
      const current = new Map(docs.map((d) => [idKey(d._id), d]));
      for (const marker of list) {
        const doc = current.get(idKey(marker.i)) ?? null;
        const now = fieldHashes(doc);
        const changed = changedFields(marker.base, now);
        const settled = marker.at <= settledBefore;
        if (changed === 'none') {
          outcomes.push({ marker, settled });
          continue;
        }
        events.push(this.changeEvent(collection, marker, doc, changed));
        outcomes.push({ marker, settled, captured: now });
      }
    }
    // Outbox first: a marker is cleared only once its change is safe there.
    await this.capture.captureBatch(events);
    await this.markers.resolve(outcomes);
    return markedMore;
  }

  /**
   * The event a change stream would have delivered: a delete, a replace
   * (new or unknown document) or an update naming the top-level fields that
   * changed (the field-level strategy versions only those).
   */
  private changeEvent(
    collection: string,
    marker: DirtyMarker,
    doc: Document | null,
    changed: 'all' | string[],
  ): DataEvent {
    const common = {
      ns: { db: this.stores.local.databaseName, coll: collection },
      documentKey: { _id: marker.i },
    };
    if (!doc) return { ...common, operationType: 'delete' } as DataEvent;
    if (changed === 'all')
      return { ...common, operationType: 'replace', fullDocument: doc } as DataEvent;
    const fields = changed.filter((f) => f !== SYNC_STAMP_FIELD);
    return {
      ...common,
      operationType: 'update',
      fullDocument: doc,
      updateDescription: {
        updatedFields: Object.fromEntries(fields.filter((f) => f in doc).map((f) => [f, doc[f]])),
        removedFields: fields.filter((f) => !(f in doc)),
        truncatedArrays: [],
      },
    } as unknown as DataEvent;
  }

  /**
   * Inserts whose ids were unknown before the write: documents the capture
   * never stamped are marked (a host insert is stamped once captured), so
   * one whose process died before marking its new id is still pushed.
   */
  private async findUncapturedInserts(marker: PendingInsertsMarker): Promise<boolean> {
    let found = 0;
    if (this.config.pushesCollection(marker.c)) {
      const filter: Document = { [SYNC_STAMP_FIELD]: { $exists: false } };
      if (marker.from) filter._id = { $gte: marker.from };
      const cursor = this.stores.local
        .collection(marker.c)
        .find(filter, { projection: { _id: 1 }, batchSize: 1000 });
      let ids: unknown[] = [];
      for await (const doc of cursor) {
        ids.push(doc._id);
        found++;
        if (ids.length >= 1000) {
          await this.markers.markAfter(marker.c, ids);
          ids = [];
        }
      }
      await this.markers.markAfter(marker.c, ids);
    }
    await this.markers.remove(marker);
    return found > 0;
  }
}

function describe(err: unknown): string {
  return redactMessage(err instanceof Error ? err.message : String(err));
}
