import { Injectable } from '@nestjs/common';
import type { AnyBulkWriteOperation, Collection, Document } from 'mongodb';
import { SYNC_COLLECTIONS } from '../bidirectional-sync.constants';
import { compareVersions, SyncVersion } from '../common/hybrid-logical-clock';
import { DocumentRef, documentKeyOf, idKey } from '../common/sync-stamp';
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

let lastSeq = 0;
/** Strictly increasing within a process, and after every earlier process's (wall-clock based). */
function nextSeq(): number {
  lastSeq = Math.max(lastSeq + 1, Date.now() * 1000);
  return lastSeq;
}

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

  constructor(private readonly stores: SyncStoresService) {}

  /** Calls `listener` after each enqueue (the drainer pushes at once instead of waiting for its tick). */
  onEnqueued(listener: () => void): () => void {
    this.enqueueListeners.add(listener);
    return () => this.enqueueListeners.delete(listener);
  }

  get collection(): Collection<OutboxEntry> {
    return this.stores.local.collection<OutboxEntry>(SYNC_COLLECTIONS.outbox);
  }

  /** Adds or advances entries; an entry already holding a newer version is kept. */
  async enqueue(entries: NewOutboxEntry[]): Promise<void> {
    if (!entries.length) return;
    const now = new Date();
    const ops: AnyBulkWriteOperation<OutboxEntry>[] = entries.map((e) => ({
      updateOne: {
        filter: { _id: documentKeyOf(e.collection, e.id), v: { $lt: e.v } } as Document,
        update: {
          $set: {
            c: e.collection,
            i: e.id,
            op: e.op,
            v: e.v,
            doc: e.doc,
            seq: nextSeq(),
            enqueuedAt: now,
            retryAt: 0,
            attempts: 0,
            ...(e.rebase ? { base: e.base ?? null } : {}),
          },
          ...(e.rebase ? {} : { $setOnInsert: { base: e.base ?? null } }),
          $unset: { lastError: '' },
        } as Document,
        upsert: true,
      },
    }));
    await this.collection.bulkWrite(ops, { ordered: false }).catch(ignoreDuplicateKeys);
    for (const listener of this.enqueueListeners) listener();
  }

  /** The oldest entries due for a push. */
  async next(limit: number): Promise<OutboxEntry[]> {
    return this.collection
      .find({ retryAt: { $lte: Date.now() } })
      .sort({ retryAt: 1, seq: 1 })
      .limit(limit)
      .toArray();
  }

  /** Removes pushed entries, unless they moved to a newer version meanwhile. */
  async acknowledge(entries: Pick<OutboxEntry, '_id' | 'v'>[]): Promise<void> {
    if (!entries.length) return;
    await this.collection.bulkWrite(
      entries.map((e) => ({ deleteOne: { filter: { _id: e._id, v: e.v } as Document } })),
      { ordered: false },
    );
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

  newer(a: OutboxEntry | undefined, v: SyncVersion): boolean {
    return !!a && compareVersions(a.v, v) > 0;
  }
}

/** Unordered bulk writes whose only failures are duplicate keys (an upsert-if-newer that lost) are fine. */
export function ignoreDuplicateKeys(err: unknown): void {
  const writeErrors = (err as { writeErrors?: { code: number }[] | { code: number } }).writeErrors;
  const list = Array.isArray(writeErrors) ? writeErrors : writeErrors ? [writeErrors] : undefined;
  if (list && list.length && list.every((w) => w.code === 11000)) return;
  throw err;
}
