import { createHash } from 'node:crypto';
import type { Db, Document } from 'mongodb';
import { SYNC_COLLECTION_PREFIX, SYNC_COLLECTIONS } from '../bidirectional-sync.constants';
import { compareVersions } from '../common/hybrid-logical-clock';
import { idTypeBrackets } from '../common/id-brackets';
import { documentKeyOf, readStamp } from '../common/sync-stamp';
import { DEFAULT_EXCLUDED_COLLECTIONS, ResolvedSyncConfig } from '../config/sync-config';
import { COMPARISON_RULES, differingFields, documentHash, idKeyOf } from './canonical';

import type {
  CollectionVerification,
  SyncMismatch,
  SyncVerificationReport,
  SyncVerifierOptions,
  VerifiedDirection,
} from './sync-verifier.types';

export * from './sync-verifier.types';

interface ScanEntry {
  key: string;
  id: unknown;
  hash: string;
}

interface Scan {
  entries: ScanEntry[];
  /** The first `_id` after the scanned ones, when the limit cut the scan short. */
  next?: Bound;
}

/** A range bound (wrapped, so a `null` `_id` is a bound too). */
interface Bound {
  id: unknown;
}

interface Context {
  name: string;
  stats: CollectionVerification;
  /** `$type` filter of the `_id` sort bracket being scanned (mixed `_id` types only). */
  bracket?: Document;
}

/** Largest number of documents of one side hashed as one range before it is split. */
const SPLIT_FACTOR = 4;
/** Defaults of `pageSize` (documents per hashed range) and `maxReported` (mismatches listed). */
const DEFAULT_PAGE_SIZE = 1000;
const DEFAULT_MAX_REPORTED = 1000;
/** A range needs two documents to be split in halves. */
const MIN_PAGE_SIZE = 2;
/** Largest driver batch of a range scan: one round trip per this many documents. */
const MAX_SCAN_BATCH = 1000;
/** How often `waitForOutbox()` counts the outbox by default (ms). */
const OUTBOX_POLL_MS = 200;

/**
 * Compares a local database with Atlas, collection by collection, and
 * classifies every difference as missing, extra or different.
 *
 * Each collection is walked in `_id` order in ranges of `pageSize` local
 * documents. Both sides of a range are hashed (SHA-256 of each document's
 * canonical Extended JSON, then of the range's `_id`/hash list); only ranges
 * whose hashes differ are looked at document by document, and only the
 * differing documents are fetched again to classify them. A range that holds
 * far more documents on Atlas (a new device) is split on Atlas's `_id`s, so
 * memory stays bounded. Documents with `_id`s of several BSON types are
 * verified one type bracket at a time (range queries do not cross types).
 *
 * Collections synced Local → Atlas only (BIDIRECTIONAL_EXCLUDED_COLLECTIONS)
 * are checked one way: every local document must be on Atlas, with the same
 * content unless Atlas holds a newer version. Collections outside
 * SYNC_COLLECTIONS are listed as not synced. A difference whose document has
 * an entry in the local `_sync_outbox` is reported as pending, not as a
 * mismatch: the drainer has not pushed it yet.
 *
 * The verifier only reads. On a live system, a write in flight can show up as
 * a difference; run it when the devices are quiet, or after `waitForOutbox`.
 *
 * @internal (behind `npm run sync:verify`; not exported from the package root)
 */
export class SyncVerifier {
  private readonly local: Db;
  private readonly atlas: Db;
  private readonly sync: Pick<ResolvedSyncConfig, 'pushesCollection' | 'pullsCollection'>;
  private readonly pageSize: number;
  private readonly ignore: string[];
  private readonly maxReported: number;
  private mismatches: SyncMismatch[] = [];
  private pending: SyncMismatch[] = [];
  private truncated = false;

  constructor(private readonly options: SyncVerifierOptions) {
    this.local = options.local;
    this.atlas = options.atlas;
    this.sync =
      options.sync ??
      Object.assign(new ResolvedSyncConfig(), {
        collections: options.syncCollections,
        excludedCollections: options.excludedCollections ?? DEFAULT_EXCLUDED_COLLECTIONS,
      });
    this.pageSize = Math.max(MIN_PAGE_SIZE, options.pageSize ?? DEFAULT_PAGE_SIZE);
    this.ignore = options.ignoreFields ?? [];
    this.maxReported = options.maxReported ?? DEFAULT_MAX_REPORTED;
  }

  /** Waits until the local outbox is empty or `timeoutMs` passed; returns the entries left. */
  async waitForOutbox(timeoutMs: number, intervalMs = OUTBOX_POLL_MS): Promise<number> {
    const outbox = this.local.collection(SYNC_COLLECTIONS.outbox);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const left = await outbox.countDocuments();
      if (left === 0 || Date.now() >= deadline) return left;
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  }

  async verify(): Promise<SyncVerificationReport> {
    const startedAt = new Date();
    this.mismatches = [];
    this.pending = [];
    this.truncated = false;
    const outboxSize = await this.local.collection(SYNC_COLLECTIONS.outbox).countDocuments();
    const names = await this.collectionNames();
    const collections: CollectionVerification[] = [];
    for (const name of names) {
      const stats: CollectionVerification = {
        name,
        direction: this.directionOf(name),
        local: 0,
        atlas: 0,
        ranges: 0,
        rangesDiffering: 0,
        fetched: 0,
        missing: 0,
        extra: 0,
        different: 0,
        pending: 0,
      };
      collections.push(stats);
      this.options.onProgress?.(stats, 'start');
      if (stats.direction === 'both') {
        await this.verifyBothWays({ name, stats });
      } else if (stats.direction === 'local-to-atlas') {
        await this.verifyLocalToAtlas({ name, stats });
      } else {
        [stats.local, stats.atlas] = await Promise.all(
          [this.local, this.atlas].map((db) => db.collection(name).countDocuments()),
        );
      }
      this.options.onProgress?.(stats, 'done');
    }
    const sum = (key: keyof Omit<CollectionVerification, 'name' | 'direction'>) =>
      collections.reduce((n, c) => n + c[key], 0);
    const totals = {
      local: sum('local'),
      atlas: sum('atlas'),
      ranges: sum('ranges'),
      rangesDiffering: sum('rangesDiffering'),
      fetched: sum('fetched'),
      missing: sum('missing'),
      extra: sum('extra'),
      different: sum('different'),
      pending: sum('pending'),
      mismatches: sum('missing') + sum('extra') + sum('different'),
    };
    return {
      ok: totals.mismatches === 0,
      localDb: this.local.databaseName,
      atlasDb: this.atlas.databaseName,
      comparison: this.ignore.length
        ? `${COMPARISON_RULES}; ignoring ${this.ignore.join(', ')}`
        : COMPARISON_RULES,
      ignoredFields: [...this.ignore],
      pageSize: this.pageSize,
      startedAt,
      durationMs: Date.now() - startedAt.getTime(),
      outboxSize,
      collections,
      totals,
      mismatches: this.mismatches,
      pending: this.pending,
      truncated: this.truncated,
    };
  }

  private directionOf(name: string): VerifiedDirection {
    if (this.sync.pullsCollection(name)) return 'both';
    if (this.sync.pushesCollection(name)) return 'local-to-atlas';
    return 'not-synced';
  }

  /** Every collection (not views) on either side, except `system.*` and the module's own. */
  private async collectionNames(): Promise<string[]> {
    const lists = await Promise.all(
      [this.local, this.atlas].map((db) =>
        db.listCollections({}, { nameOnly: true, authorizedCollections: true }).toArray(),
      ),
    );
    const names = new Set<string>();
    for (const info of lists.flat()) {
      if ((info.type ?? 'collection') !== 'collection') continue;
      if (info.name.startsWith('system.') || info.name.startsWith(SYNC_COLLECTION_PREFIX)) continue;
      if (this.options.only && !this.options.only.includes(info.name)) continue;
      names.add(info.name);
    }
    return [...names].sort();
  }

  /** Range by range in local `_id` order; Atlas's side of each range is hashed alongside. */
  private async verifyBothWays(ctx: Context): Promise<void> {
    for (const bracket of await idTypeBrackets([this.local, this.atlas], ctx.name)) {
      const c = { ...ctx, bracket };
      let lo: Bound | undefined;
      for (;;) {
        const local = await this.scan(this.local, c, lo, undefined, this.pageSize);
        await this.compareWithAtlas(c, lo, local.next, local.entries);
        if (!local.next) break;
        lo = local.next;
      }
    }
  }

  /**
   * Compares the local documents of `[lo, hi)` with Atlas's. When Atlas holds
   * more than SPLIT_FACTOR pages there, the range is compared piecewise on
   * Atlas's own `_id`s (local's side of each piece is re-read: it is small).
   */
  private async compareWithAtlas(
    ctx: Context,
    lo: Bound | undefined,
    hi: Bound | undefined,
    localEntries: ScanEntry[],
  ): Promise<void> {
    const page = this.pageSize;
    let from = lo;
    let local = localEntries;
    for (;;) {
      const atlas = await this.scan(this.atlas, ctx, from, hi, SPLIT_FACTOR * page);
      if (!atlas.next) {
        await this.compareRange(ctx, local, atlas.entries);
        return;
      }
      const bounds: (Bound | undefined)[] = [from];
      for (let k = 1; k < SPLIT_FACTOR; k++) bounds.push({ id: atlas.entries[k * page].id });
      bounds.push(atlas.next);
      for (let k = 0; k < SPLIT_FACTOR; k++) {
        const piece = await this.scan(
          this.local,
          ctx,
          bounds[k],
          bounds[k + 1],
          SPLIT_FACTOR * page,
        );
        await this.compareRange(ctx, piece.entries, atlas.entries.slice(k * page, (k + 1) * page));
      }
      from = atlas.next;
      local = (await this.scan(this.local, ctx, from, hi, SPLIT_FACTOR * page)).entries;
    }
  }

  /** One range: equal hashes end it; otherwise the differing documents are classified. */
  private async compareRange(ctx: Context, local: ScanEntry[], atlas: ScanEntry[]): Promise<void> {
    ctx.stats.ranges++;
    ctx.stats.local += local.length;
    ctx.stats.atlas += atlas.length;
    if (rangeHash(local) === rangeHash(atlas)) return;
    ctx.stats.rangesDiffering++;
    const atlasByKey = new Map(atlas.map((e) => [e.key, e]));
    const localKeys = new Set(local.map((e) => e.key));
    const suspects: unknown[] = [];
    for (const e of local) if (atlasByKey.get(e.key)?.hash !== e.hash) suspects.push(e.id);
    for (const e of atlas) if (!localKeys.has(e.key)) suspects.push(e.id);
    await this.classify(ctx, suspects, 'both');
  }

  /** Local → Atlas only: each page of local documents is looked up on Atlas by `_id`. */
  private async verifyLocalToAtlas(ctx: Context): Promise<void> {
    for (const bracket of await idTypeBrackets([this.local, this.atlas], ctx.name)) {
      const c = { ...ctx, bracket };
      let lo: Bound | undefined;
      for (;;) {
        const local = await this.scan(this.local, c, lo, undefined, this.pageSize);
        if (local.entries.length) {
          ctx.stats.ranges++;
          ctx.stats.local += local.entries.length;
          const atlas = await this.fetch(
            this.atlas,
            ctx.name,
            local.entries.map((e) => e.id),
          );
          const suspects = local.entries
            .filter((e) => {
              const doc = atlas.get(e.key);
              return !doc || documentHash(doc, this.ignore) !== e.hash;
            })
            .map((e) => e.id);
          if (suspects.length) {
            ctx.stats.rangesDiffering++;
            await this.classify(c, suspects, 'local-to-atlas');
          }
        }
        if (!local.next) break;
        lo = local.next;
      }
    }
    ctx.stats.atlas = await this.atlas.collection(ctx.name).countDocuments();
  }

  /**
   * Fetches the suspect documents from both sides and records what differs.
   * A document equal on a second look (it was being synced) is not reported.
   */
  private async classify(
    ctx: Context,
    ids: unknown[],
    direction: 'both' | 'local-to-atlas',
  ): Promise<void> {
    for (let i = 0; i < ids.length; i += this.pageSize) {
      const batch = ids.slice(i, i + this.pageSize);
      const [local, atlas, pending] = await Promise.all([
        this.fetch(this.local, ctx.name, batch),
        this.fetch(this.atlas, ctx.name, batch),
        this.pendingFor(ctx.name, batch),
      ]);
      ctx.stats.fetched += local.size + atlas.size;
      for (const id of batch) {
        const key = idKeyOf(id);
        const l = local.get(key);
        const a = atlas.get(key);
        const localVersion = readStamp(l)?.v;
        const atlasVersion = readStamp(a)?.v;
        let mismatch: SyncMismatch;
        if (l && a) {
          if (documentHash(l, this.ignore) === documentHash(a, this.ignore)) continue;
          const order = compareVersions(localVersion, atlasVersion);
          // Not pulled: another writer's newer version on Atlas is expected to differ.
          if (direction === 'local-to-atlas' && order < 0) continue;
          mismatch = {
            collection: ctx.name,
            id,
            kind: 'different',
            fields: differingFields(l, a, this.ignore),
            localVersion,
            atlasVersion,
            newer: order > 0 ? 'local' : order < 0 ? 'atlas' : 'same',
          };
        } else if (l) {
          mismatch = { collection: ctx.name, id, kind: 'extra', localVersion };
        } else if (a && direction === 'both') {
          mismatch = { collection: ctx.name, id, kind: 'missing', atlasVersion };
        } else {
          continue;
        }
        const entry = pending.get(key);
        if (entry) mismatch.pending = entry;
        this.record(ctx, mismatch);
      }
    }
  }

  private record(ctx: Context, mismatch: SyncMismatch): void {
    const list = mismatch.pending ? this.pending : this.mismatches;
    if (mismatch.pending) ctx.stats.pending++;
    else ctx.stats[mismatch.kind]++;
    if (list.length < this.maxReported) list.push(mismatch);
    else this.truncated = true;
  }

  /** Reads up to `limit` documents of `[lo, hi)` in `_id` order, hashing each. */
  private async scan(
    db: Db,
    ctx: Context,
    lo: Bound | undefined,
    hi: Bound | undefined,
    limit: number,
  ): Promise<Scan> {
    const range: Document = { ...(ctx.bracket ?? {}) };
    if (lo) range.$gte = lo.id;
    if (hi) range.$lt = hi.id;
    const filter = Object.keys(range).length ? { _id: range } : {};
    const cursor = db.collection(ctx.name).find(filter, {
      sort: { _id: 1 },
      limit: limit + 1,
      batchSize: Math.min(limit + 1, MAX_SCAN_BATCH),
    });
    const entries: ScanEntry[] = [];
    let next: Bound | undefined;
    try {
      for await (const doc of cursor) {
        if (entries.length === limit) {
          next = { id: doc._id };
          break;
        }
        entries.push({ key: idKeyOf(doc._id), id: doc._id, hash: documentHash(doc, this.ignore) });
      }
    } finally {
      await cursor.close();
    }
    return { entries, next };
  }

  private async fetch(db: Db, name: string, ids: unknown[]): Promise<Map<string, Document>> {
    if (!ids.length) return new Map();
    const docs = await db
      .collection(name)
      .find({ _id: { $in: ids } } as Document)
      .toArray();
    return new Map(docs.map((d) => [idKeyOf(d._id), d]));
  }

  /** Outbox entries (unpushed local changes) of some documents. */
  private async pendingFor(
    name: string,
    ids: unknown[],
  ): Promise<Map<string, { op: string; v: string }>> {
    const entries = await this.local
      .collection(SYNC_COLLECTIONS.outbox)
      .find({ _id: { $in: ids.map((i) => documentKeyOf(name, i)) } } as Document, {
        projection: { i: 1, op: 1, v: 1 },
      })
      .toArray();
    return new Map(entries.map((e) => [idKeyOf(e.i), { op: e.op, v: e.v }]));
  }
}

/** Fingerprint of a range: its `_id`s and document hashes, in order. */
function rangeHash(entries: ScanEntry[]): string {
  const hash = createHash('sha256');
  for (const e of entries) hash.update(`${e.key}\t${e.hash}\n`);
  return hash.digest('base64url');
}
