import { randomBytes } from 'node:crypto';
import { Logger } from '@nestjs/common';
import type {
  ChangeStream,
  ChangeStreamDocument,
  Db,
  Document,
  MongoError,
  ResumeToken,
  Timestamp,
} from 'mongodb';
import { redactMessage } from '../errors/sync.errors';
import { hasMongoErrorCode, MONGO_ERROR_CODES } from './mongo-error-codes';
import { WaiterList } from './waiter-list';
import { ReconnectPolicy, WorkerLoop } from './worker-loop';

/** Error codes after which a stored resume token can never be used again. */
const HISTORY_LOST_CODES = new Set<number>([
  MONGO_ERROR_CODES.ChangeStreamHistoryLost,
  MONGO_ERROR_CODES.ChangeStreamFatalError,
  MONGO_ERROR_CODES.InvalidResumeToken,
]);

/** Minimum time between two saves of an idle stream's token (ms). */
const IDLE_TOKEN_SAVE_MS = 5000;

/**
 * How long one read waits on the server for new events (ms). A change stream
 * read is a long poll: the server answers as soon as an event arrives, so a
 * long wait adds no lag and spares an idle server most reads.
 */
export const CHANGE_STREAM_MAX_AWAIT_MS = 1000;

export function isHistoryLostError(err: unknown): boolean {
  const e = err as MongoError & { codeName?: string };
  if (!e || typeof e !== 'object') return false;
  if (typeof e.code === 'number' && HISTORY_LOST_CODES.has(e.code)) return true;
  return e.codeName === 'ChangeStreamHistoryLost' || e.codeName === 'InvalidResumeToken';
}

export interface ChangeStreamTailerOptions {
  /** Label for logs ("Atlas listener", "local capture"). */
  name: string;
  db: () => Db;
  pipeline: () => Document[];
  batchSize: number;
  reconnect: ReconnectPolicy;
  loadToken: () => Promise<ResumeToken | undefined>;
  saveToken: (token: ResumeToken) => Promise<void>;
  /** Applies a batch; the token after the batch is saved only when this resolves. */
  handleBatch: (events: ChangeStreamDocument[]) => Promise<void>;
  /** The stored token is unusable (286, invalid, invalidate): re-baseline and return where to start. */
  onHistoryLost: (err: unknown) => Promise<void>;
  onStateChange?: (state: 'connected' | 'disconnected', detail?: string) => void;
  /**
   * A document in the watched database that `caughtUp()` updates: the
   * update's own event marks the point to reach and wakes a waiting read at
   * once. The pipeline must let that event through; the tailer drops it
   * before `handleBatch`. Without a mark, `caughtUp()` may wait for a whole
   * idle read (`CHANGE_STREAM_MAX_AWAIT_MS`) to come back empty.
   */
  progressMark?: ProgressMark;
}

/** Where `caughtUp()` writes its mark: `_id` of a document in `collection`. */
export interface ProgressMark {
  collection: string;
  id: string;
}

/** A change stream `$match` that lets `mark`'s events through besides those `match` selects. */
export function matchWithProgressMark(mark: ProgressMark, match: Document): Document {
  return { $match: { $or: [{ 'ns.coll': mark.collection, 'documentKey._id': mark.id }, match] } };
}

export interface ChangeStreamTailerStatus {
  running: boolean;
  connected: boolean;
  lastChange?: Date;
  lastTokenSavedAt?: Date;
  consecutiveFailures: number;
  disconnectedSince?: Date;
  lastError?: string;
}

/**
 * Reads a database-level change stream in batches, hands each batch to a
 * handler and saves the resume token only after the batch was handled, so
 * a crash at any point replays (never skips) events. Reconnects with
 * backoff; one mechanism for the Atlas listener and the local capture.
 */
export class ChangeStreamTailer {
  private readonly logger: Logger;
  private stream?: ChangeStream;
  private readonly worker: WorkerLoop;
  private lastSavedToken?: string;
  /** True from opening with a stored token until the first successful read. */
  private openingWithToken = false;
  private pollsStarted = 0;
  private marksWritten = 0;
  /** The highest of this tailer's marks read from the stream. */
  private marksRead = 0;
  /** Tells this tailer's marks from those of an earlier run or another process. */
  private readonly markNonce = randomBytes(6).toString('hex');
  private readonly catchUpWaiters = new WaiterList<CatchUpWaiter>();
  /** The current stream has its server cursor (events from now on reach it). */
  private streamOpen = false;
  private readonly openWaiters = new WaiterList<object>();
  private readonly state: ChangeStreamTailerStatus = {
    running: false,
    connected: false,
    consecutiveFailures: 0,
  };

  constructor(private readonly options: ChangeStreamTailerOptions) {
    this.logger = new Logger(`ChangeStreamTailer:${options.name}`);
    this.worker = new WorkerLoop({
      turn: () => this.turn(),
      retry: options.reconnect,
      recover: (err) => this.recover(err),
      onFailure: (err, attempt, delay) => {
        this.state.consecutiveFailures = attempt;
        this.state.lastError = describe(err);
        this.setConnected(false, this.state.lastError);
        this.logger.warn(
          `Change Stream reconnecting (attempt ${attempt}) in ${delay} ms: ${this.state.lastError}`,
        );
      },
    });
  }

  get status(): ChangeStreamTailerStatus {
    return { ...this.state };
  }

  start(): void {
    if (this.worker.running) return;
    this.state.running = true;
    this.worker.start();
  }

  /** Stops reading; resolves once the batch in progress (if any) was handled and its token saved. */
  async stop(): Promise<void> {
    const stopped = this.worker.stop();
    await this.stream?.close().catch(() => undefined);
    await stopped;
    this.state.running = false;
    this.state.connected = false;
    this.catchUpWaiters.releaseAll();
    this.openWaiters.releaseAll();
  }

  /**
   * Resolves once every event the server had at the call has been handled:
   * the progress mark written now was read (and everything before it
   * handled), or, without a mark, a handled event is at least as new as the
   * server's operation time then; or a poll started after the call came back
   * empty. Also resolves when the tailer stops, so a caller never waits on a
   * stopped stream.
   */
  async caughtUp(): Promise<void> {
    if (!this.worker.running) return;
    const afterPoll = this.pollsStarted;
    // A stream opened without a token starts after whatever was written
    // before its cursor existed, so a mark written then would never be read.
    if (this.options.progressMark && !this.streamOpen) await this.openWaiters.wait({});
    if (!this.worker.running) return;
    const mark = await this.writeProgressMark();
    // Without a mark: the server's operation time now. (A write's reply may
    // carry a time later than the write's own event, so a mark is waited for
    // by its value, not by its time.)
    const target = mark === undefined ? await this.operationTime() : undefined;
    // The mark's event may have been read while the write's reply was on its way.
    if (!this.worker.running || (mark !== undefined && mark <= this.marksRead)) return;
    return this.catchUpWaiters.wait({ target, afterPoll, mark });
  }

  /** The sequence number of a progress mark written now; undefined without one or when the write failed. */
  private async writeProgressMark(): Promise<number | undefined> {
    const mark = this.options.progressMark;
    if (!mark) return undefined;
    const seq = ++this.marksWritten;
    try {
      await this.options
        .db()
        .collection<{ _id: string }>(mark.collection)
        .updateOne(
          { _id: mark.id },
          { $set: { mark: `${this.markNonce}:${seq}` } },
          { upsert: true },
        );
      return seq;
    } catch {
      return undefined;
    }
  }

  private operationTime(): Promise<Timestamp | undefined> {
    return this.options
      .db()
      .command({ ping: 1 })
      .then((reply) => reply.operationTime as Timestamp | undefined)
      .catch(() => undefined);
  }

  /** This tailer's progress mark in an event: its sequence number, or undefined for any other event. */
  private progressMarkOf(e: ChangeStreamDocument): number | undefined {
    const mark = this.options.progressMark;
    if (!mark) return undefined;
    const { ns, documentKey } = e as { ns?: { coll?: string }; documentKey?: { _id?: unknown } };
    if (ns?.coll !== mark.collection || documentKey?._id !== mark.id) return undefined;
    const { updateDescription, fullDocument } = e as {
      updateDescription?: { updatedFields?: Document };
      fullDocument?: Document;
    };
    const value = String(
      (updateDescription ? updateDescription.updatedFields : fullDocument)?.mark,
    );
    const [nonce, seq] = value.split(':');
    // Another process's (or an earlier run's) mark still counts as a mark, never as ours.
    return nonce === this.markNonce ? Number(seq) : 0;
  }

  /** One stream's life: read until stopped or failed, then close it. */
  private async turn(): Promise<number> {
    try {
      await this.tail();
    } finally {
      const stream = this.stream;
      this.stream = undefined;
      this.streamOpen = false;
      await stream?.close().catch(() => undefined);
    }
    return 0;
  }

  /** A resume point that is gone is no failure to retry: re-baseline, then open anew. */
  private async recover(err: unknown): Promise<boolean> {
    // A token the server cannot even parse (FailedToParse when opening) is as dead as a pruned one.
    const tokenRejected =
      this.openingWithToken && hasMongoErrorCode(err, MONGO_ERROR_CODES.FailedToParse);
    if (!isHistoryLostError(err) && !tokenRejected) return false;
    this.logger.warn(`Resume point is gone (${describe(err)}): re-baselining`);
    await this.options.onHistoryLost(err);
    return true;
  }

  private async tail(): Promise<void> {
    const token = await this.options.loadToken();
    this.lastSavedToken = token ? JSON.stringify(token) : undefined;
    const stream = this.options.db().watch(this.options.pipeline(), {
      fullDocument: 'updateLookup',
      batchSize: this.options.batchSize,
      maxAwaitTimeMS: CHANGE_STREAM_MAX_AWAIT_MS,
      ...(token ? { startAfter: token } : {}),
    });
    this.stream = stream;
    this.openingWithToken = !!token;
    // Emitted once the server answers the opening aggregate (and after every read).
    stream.once('resumeTokenChanged', () => {
      this.streamOpen = true;
      this.openWaiters.releaseAll();
    });
    while (!this.worker.stopRequested) {
      const poll = ++this.pollsStarted;
      const first = await stream.tryNext();
      this.openingWithToken = false;
      this.worker.succeeded();
      this.state.consecutiveFailures = 0;
      this.state.lastError = undefined;
      this.setConnected(true);
      if (!first) {
        await this.saveIdleToken(stream.resumeToken);
        // An empty read proves nothing to a waiter whose mark is on its way:
        // the reply opening a resumed stream may be empty while events wait.
        this.catchUpWaiters.release((w) => w.mark === undefined && w.afterPoll < poll);
        continue;
      }
      const batch: ChangeStreamDocument[] = [first];
      while (batch.length < this.options.batchSize && bufferedCount(stream) > 0) {
        const next = await stream.tryNext();
        if (!next) break;
        batch.push(next);
      }
      let marksInBatch = 0;
      const events = batch.filter((e) => {
        const mark = this.progressMarkOf(e);
        if (mark !== undefined) marksInBatch = Math.max(marksInBatch, mark);
        return mark === undefined;
      });
      if (events.length) {
        this.state.lastChange = new Date();
        await this.options.handleBatch(events);
        await this.saveToken(stream.resumeToken);
      } else {
        await this.saveIdleToken(stream.resumeToken);
      }
      // Only now: the batch's events before a mark are handled.
      this.marksRead = Math.max(this.marksRead, marksInBatch);
      const handledUpTo = (batch[batch.length - 1] as { clusterTime?: Timestamp }).clusterTime;
      this.catchUpWaiters.release(
        (w) =>
          (w.mark !== undefined && w.mark <= this.marksRead) ||
          (!!w.target && !!handledUpTo && compareTimestamps(handledUpTo, w.target) >= 0),
      );
    }
  }

  private async saveToken(token: ResumeToken | undefined): Promise<void> {
    if (!token) return;
    const key = JSON.stringify(token);
    if (key === this.lastSavedToken) return;
    await this.options.saveToken(token);
    this.lastSavedToken = key;
    this.state.lastTokenSavedAt = new Date();
  }

  /**
   * Nothing to handle, but the post-batch resume token still advances, so a
   * quiet stream never falls behind the oplog window. Saved at most once per
   * IDLE_TOKEN_SAVE_MS: each save is a write that wakes every stream.
   */
  private async saveIdleToken(token: ResumeToken | undefined): Promise<void> {
    if (Date.now() - (this.state.lastTokenSavedAt?.getTime() ?? 0) >= IDLE_TOKEN_SAVE_MS)
      await this.saveToken(token);
  }

  private setConnected(connected: boolean, detail?: string): void {
    if (this.state.connected === connected && connected) return;
    const changed = this.state.connected !== connected || !connected;
    this.state.connected = connected;
    if (connected) this.state.disconnectedSince = undefined;
    else this.state.disconnectedSince ??= new Date();
    if (changed) this.options.onStateChange?.(connected ? 'connected' : 'disconnected', detail);
  }
}

interface CatchUpWaiter {
  /** The server's operation time when the caller asked; undefined when it could not be read. */
  target?: Timestamp;
  /** Polls started before the caller asked (an empty one of those proves nothing). */
  afterPoll: number;
  /** The progress mark written for the caller: reached once its event was read. */
  mark?: number;
}

function compareTimestamps(a: Timestamp, b: Timestamp): number {
  return a.t - b.t || a.i - b.i;
}

/** Events already received but not yet returned (driver internals; 0 when unknown). */
function bufferedCount(stream: ChangeStream): number {
  const cursor = (stream as unknown as { cursor?: { bufferedCount?: () => number } }).cursor;
  return cursor?.bufferedCount?.() ?? 0;
}

function describe(err: unknown): string {
  const e = err as { code?: number; codeName?: string; message?: string };
  const code =
    e?.code !== undefined ? ` [${e.codeName ?? ''}${e.codeName ? ' ' : ''}${e.code}]` : '';
  return redactMessage(`${e?.message ?? String(err)}${code}`);
}
