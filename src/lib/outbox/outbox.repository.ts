import { Injectable } from '@nestjs/common';
import type { AnyBulkWriteOperation, Collection, Document } from 'mongodb';
import { SYNC_COLLECTIONS } from '../bidirectional-sync.constants';
import { compareVersions, SyncVersion } from '../common/hybrid-logical-clock';
import { DocumentRef, documentKeyOf, idKey } from '../common/sync-stamp';
import { MONGO_ERROR_CODES } from '../common/mongo-error-codes';
import { statementErrorsOf } from '../common/write-errors';
import { SyncStoresService } from '../metadata/sync-stores.service';

/** One pending local change: the newest state of one document. */
export interface OutboxEntry extends DocumentRef {
  op: 'upsert' | 'delete';
  /** Version of this state; the entry is replaced only by a newer one. */
  v: SyncVersion;
  /** Full document (with its `_sync` stamp) for upserts. */
  doc?: Document;
  /**
   * The version this edit was made on (the last state synced from or to
   * Atlas); `null`/absent when unknown. Atlas holding exactly this version
   * means a fast-forward; anything else means a concurrent edit.
   */
  base?: SyncVersion | null;
  /** Order of enqueueing (oldest first). */
  seq: number;
  enqueuedAt: Date;
  /** Not retried before this time (epoch ms; 0 = now). */
  retryAt: number;
  attempts: number;
  lastError?: string;
}

export type NewOutboxEntry = Pick<OutboxEntry, 'op' | 'v' | 'doc' | 'base'> & {
  collection: string;
  id: unknown;
  /** Replace the base of an entry already queued (default: an entry keeps its first base). */
  rebase?: boolean;
  /** When the local write was made (for the push lag; not stored). */
  writtenAt?: Date;
};

/** What `summary()` answers. */
export interface OutboxSummary {
  /** Pending entries (one per changed document). */
  depth: number;
  /** When the entry that waits longest was enqueued; absent when the outbox is empty. */
  oldestEnqueuedAt?: Date;
  /** When these figures were measured (they may be up to a few seconds old). */
  measuredAt: Date;
}

const SUMMARY_MIN_REUSE_MS = 1000;

/** Shared by every outbox of the process, so seqs never repeat between two of them. */
let lastSeq = 0;

/**
 * The durable outbox in the local database. Captured changes are coalesced
 * per document (an entry only ever moves to a newer version), so a device
 * offline for days holds one entry per changed document, not one per write.
 *
 * @publicApi
 */
@Injectable()
export class OutboxRepository {
  private readonly enqueueListeners = new Set<() => void>();
  private lastSummary?: OutboxSummary;
  private summaryInFlight?: Promise<OutboxSummary>;
  private summaryReuseMs = SUMMARY_MIN_REUSE_MS;
  private seqFloor?: Promise<void>;
  /** Enqueues finished, and in flight, in this process. */
  private enqueuesDone = 0;
  private enqueuesInFlight = 0;
  /** `enqueuesDone` when the outbox was last seen empty. */
  private emptyAtEnqueue?: number;

  constructor(private readonly stores: SyncStoresService) {}

  /** Calls `listener` after each enqueue (the drainer pushes at once instead of waiting for its tick). */
  onEnqueued(listener: () => void): () => void {
    this.enqueueListeners.add(listener);
    return () => this.enqueueListeners.delete(listener);
  }

  get collection(): Collection<OutboxEntry> {
    return this.stores.local.collection<OutboxEntry>(SYNC_COLLECTIONS.outbox);
  }

  /**
   * Adds or advances entries; an entry already holding a newer version is
   * kept. New entries are inserted in one statement (the common case: a
   * document not already queued); only documents already queued pay a
   * conditional upsert each.
   */
  async enqueue(entries: NewOutboxEntry[]): Promise<void> {
    if (!entries.length) return;
    this.enqueuesInFlight++;
    try {
      await this.insertOrAdvance(entries);
    } finally {
      this.enqueuesInFlight--;
      this.enqueuesDone++;
    }
    for (const listener of this.enqueueListeners) listener();
  }

  /**
   * True when the outbox held nothing at the last look and nothing was
   * enqueued since: then no document has a queued change, and a new change
   * can be pushed without asking the outbox (the capture's hot path).
   */
  get knownEmpty(): boolean {
    return this.enqueuesInFlight === 0 && this.emptyAtEnqueue === this.enqueuesDone;
  }

  /** Looks whether the outbox holds any entry (due or waiting for a retry); updates `knownEmpty`. */
  async checkEmpty(): Promise<boolean> {
    const before = this.enqueuesDone;
    const any = await this.collection.findOne({}, { projection: { _id: 1 } });
    if (!any) this.emptyAtEnqueue = before;
    return !any;
  }

  private async insertOrAdvance(entries: NewOutboxEntry[]): Promise<void> {
    await this.ensureSeqFloor();
    const now = new Date();
    const docs = entries.map((e): OutboxEntry => ({
      _id: documentKeyOf(e.collection, e.id),
      c: e.collection,
      i: e.id,
      op: e.op,
      v: e.v,
      doc: e.doc,
      base: e.base ?? null,
      seq: this.nextSeq(),
      enqueuedAt: e.writtenAt ?? now,
      retryAt: 0,
      attempts: 0,
    }));
    const queued = await this.collection
      .insertMany(docs, { ordered: false })
      .then(() => [], duplicateKeyIndexes);
    if (queued.length) {
      await this.collection
        .bulkWrite(
          queued.map((index) => advance(docs[index], entries[index].rebase)),
          { ordered: false },
        )
        .catch(ignoreDuplicateKeys);
    }
  }

  /** The oldest entries due for a push. */
  async next(limit: number): Promise<OutboxEntry[]> {
    return this.collection
      .find({ retryAt: { $lte: Date.now() } })
      .sort({ retryAt: 1, seq: 1 })
      .limit(limit)
      .toArray();
  }

  /**
   * Removes the entries of one `next()` batch that were pushed: all of
   * `batch` except `failed` (already marked with `fail()`). An entry that
   * moved to a newer version meanwhile stays.
   *
   * The batch's entries that had never failed are the oldest such entries
   * (`next()` reads them in `seq` order) and a new or advanced entry always
   * gets a higher `seq`, so one ranged delete removes exactly them; a failed
   * entry leaves the range through its `retryAt`. Entries that had failed
   * before are removed one by one.
   */
  async acknowledge(batch: OutboxEntry[], failed: ReadonlySet<OutboxEntry>): Promise<void> {
    const fresh = batch.filter((e) => e.retryAt === 0);
    const retried = batch.filter((e) => e.retryAt !== 0 && !failed.has(e));
    if (fresh.length) {
      const seqs = fresh.map((e) => e.seq);
      await this.collection.deleteMany({
        retryAt: 0,
        seq: { $gte: Math.min(...seqs), $lte: Math.max(...seqs) },
      });
    }
    if (retried.length) {
      await this.collection.bulkWrite(
        retried.map((e) => ({ deleteOne: { filter: { _id: e._id, v: e.v } as Document } })),
        { ordered: false },
      );
    }
  }

  /** Keeps a failed entry for a later retry with backoff. */
  async fail(entry: OutboxEntry, error: string, retryInMs: number): Promise<void> {
    await this.collection.updateOne({ _id: entry._id, v: entry.v } as Document, {
      $set: { lastError: error, retryAt: Date.now() + retryInMs },
      $inc: { attempts: 1 },
    });
  }

  /** Pending versions of some documents of one collection (key: EJSON of the id). */
  async pendingFor(collection: string, ids: unknown[]): Promise<Map<string, OutboxEntry>> {
    const found = await this.collection
      .find({ _id: { $in: ids.map((i) => documentKeyOf(collection, i)) } })
      .toArray();
    return new Map(found.map((e) => [idKey(e.i), e]));
  }

  /** Drops a pending entry that a newer remote version superseded. */
  async dropIfNotNewer(collection: string, id: unknown, version: SyncVersion): Promise<void> {
    await this.collection.deleteOne({
      _id: documentKeyOf(collection, id),
      v: { $lte: version },
    });
  }

  /**
   * Depth and oldest entry of the outbox, shared by concurrent callers and
   * re-measured at most every `max(1 s, 10 × the last measurement's time)`:
   * health and metrics may be polled often, and on a server that answers
   * both figures by scanning the outbox (docs/test-server.md D9) an uncached
   * poll would take the server away from the sync itself.
   */
  async summary(): Promise<OutboxSummary> {
    const now = Date.now();
    if (this.lastSummary && now - this.lastSummary.measuredAt.getTime() < this.summaryReuseMs) {
      return this.lastSummary;
    }
    this.summaryInFlight ??= this.measureSummary().finally(
      () => (this.summaryInFlight = undefined),
    );
    return this.summaryInFlight;
  }

  private async measureSummary(): Promise<OutboxSummary> {
    const started = Date.now();
    const [depth, oldest] = await Promise.all([
      this.collection.estimatedDocumentCount(),
      this.collection
        .find({}, { projection: { enqueuedAt: 1 } })
        .sort({ seq: 1 })
        .limit(1)
        .next(),
    ]);
    const measuredAt = new Date();
    this.summaryReuseMs = Math.max(SUMMARY_MIN_REUSE_MS, 10 * (measuredAt.getTime() - started));
    this.lastSummary = { depth, oldestEnqueuedAt: oldest?.enqueuedAt, measuredAt };
    return this.lastSummary;
  }

  /**
   * New entries are queued above every entry already queued, whatever the
   * wall clock says (`acknowledge` relies on it). Called when this process
   * becomes the outbox's writer: another process may have written it since.
   */
  resetSequence(): void {
    this.seqFloor = undefined;
  }

  /** Strictly increasing, and above every entry found queued by `ensureSeqFloor`. */
  private nextSeq(): number {
    lastSeq = Math.max(lastSeq + 1, Date.now() * 1000);
    return lastSeq;
  }

  private ensureSeqFloor(): Promise<void> {
    this.seqFloor ??= this.collection
      .find({}, { projection: { seq: 1 } })
      .sort({ seq: -1 })
      .limit(1)
      .next()
      .then((last) => {
        lastSeq = Math.max(lastSeq, last?.seq ?? 0);
      })
      .catch((err: unknown) => {
        this.seqFloor = undefined;
        throw err;
      });
    return this.seqFloor;
  }

  newer(a: OutboxEntry | undefined, v: SyncVersion): boolean {
    return !!a && compareVersions(a.v, v) > 0;
  }
}

/** Moves a queued entry to `entry`'s newer state (nothing when the queued one is newer). */
function advance(entry: OutboxEntry, rebase?: boolean): AnyBulkWriteOperation<OutboxEntry> {
  const { _id, base, ...state } = entry;
  return {
    updateOne: {
      filter: { _id, v: { $lt: entry.v } } as Document,
      update: {
        $set: { ...state, ...(rebase ? { base } : {}) },
        ...(rebase ? {} : { $setOnInsert: { base } }),
        $unset: { lastError: '' },
      } as Document,
      upsert: true,
    },
  };
}

/** Indexes of the documents an unordered insert found already present; any other failure is rethrown. */
function duplicateKeyIndexes(err: unknown): number[] {
  const list = statementErrorsOf(err);
  if (list && list.length && list.every((w) => w.code === MONGO_ERROR_CODES.DuplicateKey))
    return list.map((w) => w.index);
  throw err;
}

/** Unordered bulk writes whose only failures are duplicate keys (an upsert-if-newer that lost) are fine. */
export function ignoreDuplicateKeys(err: unknown): void {
  duplicateKeyIndexes(err);
}
