import { Injectable, Logger } from '@nestjs/common';
import { EventEmitter2 } from '@nestjs/event-emitter';
import type { ResumeToken } from 'mongodb';
import { SYNC_COLLECTIONS } from '../bidirectional-sync.constants';
import { InjectSyncConfig } from '../bidirectional-sync.decorators';
import { idTypeBrackets } from '../common/id-brackets';
import { ResolvedSyncConfig } from '../config/sync-config';
import { SyncStoresService } from '../metadata/sync-stores.service';
import { OriginTrackerService } from '../origin/origin-tracker.service';
import { ResumeTokenRepository } from '../resume-token/resume-token.repository';
import type { DataEvent } from '../capture/local-change-capture.service';
import { gapCheckId, LOCAL_RESCAN_DONE } from './gap-check';
import { pagesById } from './pages-by-id';
import { asReplaceEvent, writtenWithoutCapture } from './uncaptured-writes';

export interface LocalRescanProgress {
  state: 'idle' | 'running' | 'done' | 'failed';
  reason?: string;
  startedAt?: Date;
  finishedAt?: Date;
  collection?: string;
  /** Local documents read. */
  scanned: number;
  /** Documents found written without being captured, and captured now. */
  pushed: number;
  /** Documents read per second (this run, or the last). */
  docsPerSecond?: number;
  /** True when this run continues one cut short (crash, stop). */
  resumed?: boolean;
  error?: string;
}

/** Where a re-scan got to, saved after every page in `_sync_metadata` (`rescan:<instance id>`). */
export interface LocalRescanCheckpoint {
  /** The local stream position recorded before scanning: the capture resumes from it. */
  position: ResumeToken;
  reason: string;
  startedAt: Date;
  collection?: string;
  bracket?: string;
  afterId?: unknown;
  scanned: number;
  pushed: number;
}

/** Captures documents as the change stream would (the capture's own `captureBatch`). */
export type CaptureDocuments = (events: DataEvent[]) => Promise<void>;

/** Reading the current position needs only the first (empty) batch: wait briefly (ms). */
const POSITION_READ_MAX_AWAIT_MS = 50;

/**
 * After the local oplog rolled past the capture's position, finds the host
 * writes made in the gap: every synced document whose content no longer
 * matches its stamp's digest (`_sync.h`), or that has no stamp, was written
 * without being captured, and is captured now as a local edit (a new
 * version on top of its stamp's, pushed and stamped by the capture's own
 * path). Stamps issued before digests existed (no `h`) count as unmodified.
 *
 * Before scanning it records a local stream position; the capture resumes
 * from there afterwards, so a write made during the scan is seen by one or
 * the other (or both: capturing twice only adds a version). The checkpoint
 * is saved after every page, so a re-scan cut short continues where it was.
 */
@Injectable()
export class LocalRescanService {
  private readonly logger = new Logger(LocalRescanService.name);
  private readonly state: LocalRescanProgress = { state: 'idle', scanned: 0, pushed: 0 };

  constructor(
    @InjectSyncConfig() private readonly config: ResolvedSyncConfig,
    private readonly stores: SyncStoresService,
    private readonly origin: OriginTrackerService,
    private readonly tokens: ResumeTokenRepository,
    private readonly events: EventEmitter2,
  ) {}

  get progress(): LocalRescanProgress {
    return { ...this.state };
  }

  private get checkpointId(): string {
    return `rescan:${this.origin.instanceId}`;
  }

  /**
   * Records that a re-scan is needed (with the position the capture will
   * resume from) and drops the unusable token. The scan itself runs in
   * `runPending()`, before the capture opens its stream again.
   */
  async begin(reason: string): Promise<void> {
    if (!(await this.loadCheckpoint())) {
      const checkpoint: LocalRescanCheckpoint = {
        position: await this.currentLocalPosition(),
        reason,
        startedAt: new Date(),
        scanned: 0,
        pushed: 0,
      };
      await this.saveCheckpoint(checkpoint);
    }
    await this.tokens.clear(this.origin.instanceId, 'local');
  }

  /** Runs (or continues) a recorded re-scan, then stores its position as the capture's token. */
  async runPending(capture: CaptureDocuments): Promise<void> {
    const checkpoint = await this.loadCheckpoint();
    if (!checkpoint) return;
    const resumed = checkpoint.scanned > 0 || checkpoint.collection !== undefined;
    const started = Date.now();
    const scannedBefore = checkpoint.scanned;
    Object.assign(this.state, {
      state: 'running',
      reason: checkpoint.reason,
      startedAt: checkpoint.startedAt,
      finishedAt: undefined,
      collection: undefined,
      scanned: checkpoint.scanned,
      pushed: checkpoint.pushed,
      docsPerSecond: undefined,
      resumed,
      error: undefined,
    });
    this.logger.warn(
      `Local re-scan ${resumed ? 'resumed' : 'started'} (${checkpoint.reason}): looking for local writes that were not captured`,
    );
    const rate = () =>
      Math.round(
        (this.state.scanned - scannedBefore) / Math.max(0.001, (Date.now() - started) / 1000),
      );
    try {
      for (const collection of await this.collectionsToScan()) {
        if (checkpoint.collection && collection < checkpoint.collection) continue;
        this.state.collection = collection;
        await this.scanCollection(collection, checkpoint, capture);
        this.state.docsPerSecond = rate();
      }
      // Deletes made in the gap left no document to scan: the Atlas listener
      // looks for them next (GapDeletesService). Recorded before the token
      // moves on, so a crash here leaves either this re-scan or that check pending.
      const metadata = this.stores.local.collection<{ _id: string }>(SYNC_COLLECTIONS.metadata);
      await metadata.updateOne(
        { _id: gapCheckId(this.origin.instanceId) },
        { $set: { reason: checkpoint.reason, since: checkpoint.startedAt } },
        { upsert: true },
      );
      await this.tokens.save(this.origin.instanceId, 'local', checkpoint.position);
      await metadata.deleteOne({ _id: this.checkpointId });
      Object.assign(this.state, {
        state: 'done',
        finishedAt: new Date(),
        collection: undefined,
        docsPerSecond: rate(),
      });
      this.logger.warn(
        `Local re-scan done: ${this.state.scanned} documents scanned, ${this.state.pushed} uncaptured writes captured (${this.state.docsPerSecond} documents/s)`,
      );
      this.events.emit(LOCAL_RESCAN_DONE);
    } catch (err) {
      Object.assign(this.state, { state: 'failed', error: String((err as Error)?.message ?? err) });
      throw err;
    }
  }

  private async scanCollection(
    collection: string,
    checkpoint: LocalRescanCheckpoint,
    capture: CaptureDocuments,
  ): Promise<void> {
    const db = this.stores.local;
    const resume = checkpoint.collection === collection ? checkpoint : undefined;
    let skipping = resume?.bracket !== undefined;
    for (const bracket of await idTypeBrackets([db], collection)) {
      const key = JSON.stringify(bracket ?? null);
      if (skipping && key !== resume!.bracket) continue;
      const after = skipping && 'afterId' in resume! ? { id: resume!.afterId } : undefined;
      skipping = false;
      for await (const page of pagesById(db, collection, bracket, after)) {
        const uncaptured = page.filter(writtenWithoutCapture);
        if (uncaptured.length)
          await capture(uncaptured.map((doc) => asReplaceEvent(db.databaseName, collection, doc)));
        this.state.scanned += page.length;
        this.state.pushed += uncaptured.length;
        Object.assign(checkpoint, {
          collection,
          bracket: key,
          afterId: page[page.length - 1]._id,
          scanned: this.state.scanned,
          pushed: this.state.pushed,
        });
        await this.saveCheckpoint(checkpoint);
      }
    }
  }

  private async collectionsToScan(): Promise<string[]> {
    const names = await this.stores.local.listCollections({}, { nameOnly: true }).toArray();
    return names
      .map((c) => c.name)
      .filter((name) => this.config.pushesCollection(name))
      .sort();
  }

  /** A resume token for "now" on the local database, taken before scanning. */
  private async currentLocalPosition(): Promise<ResumeToken> {
    const stream = this.stores.local.watch([], { maxAwaitTimeMS: POSITION_READ_MAX_AWAIT_MS });
    try {
      await stream.tryNext();
      return stream.resumeToken;
    } finally {
      await stream.close();
    }
  }

  private async loadCheckpoint(): Promise<LocalRescanCheckpoint | undefined> {
    const doc = await this.stores.local
      .collection<{ _id: string; checkpoint?: LocalRescanCheckpoint }>(SYNC_COLLECTIONS.metadata)
      .findOne({ _id: this.checkpointId });
    return doc?.checkpoint ?? undefined;
  }

  private async saveCheckpoint(checkpoint: LocalRescanCheckpoint): Promise<void> {
    await this.stores.local
      .collection<{ _id: string }>(SYNC_COLLECTIONS.metadata)
      .updateOne(
        { _id: this.checkpointId },
        { $set: { checkpoint, updatedAt: new Date() } },
        { upsert: true },
      );
  }
}
