import type { AnyBulkWriteOperation, Collection, MongoBulkWriteError } from 'mongodb';
import { BenchDoc, makeDoc, PeerStamper, prng } from './docs';
import type { OpKind, VisibilityTracker } from './tracker';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface LoadReport {
  /** Operations the schedule called for. */
  scheduled: number;
  /** Writes acknowledged. */
  acknowledged: number;
  failed: number;
  /** Worst delay between an operation's scheduled instant and its send (generator health). */
  lateMaxMs: number;
  elapsedMs: number;
  /** Acknowledged writes per second over the window. */
  achievedRate: number;
  mix: Record<OpKind, number>;
}

export interface MixedLoadOptions {
  rate: number;
  durationMs: number;
  /** Fractions of insert / update / delete (default 0.6 / 0.3 / 0.1). */
  mix?: [number, number, number];
  /** Prefix of generated ids (unique per run). */
  idPrefix: string;
  seed?: number;
  /** Operations due within one tick go to the server as one unordered bulkWrite (default 10 ms). */
  tickMs?: number;
  maxBatchesInFlight?: number;
}

interface PlannedOp {
  k: number;
  id: string;
  op: OpKind;
  due: number;
}

/**
 * Open-loop load: operation k is due at t0 + k/rate and its lag is measured
 * from that instant, so a generator falling behind cannot hide latency
 * (no coordinated omission). The operations due in each tick are sent as
 * one unordered bulkWrite (a single-process Python server cannot take
 * 1,000 separate write commands per second next to a change stream; the
 * batching adds at most one tick to every lag, raw baseline included).
 * Updates and deletes pick a random document whose insert was acknowledged
 * and that has no operation in flight, so each document's operations reach
 * the server in order.
 */
export async function runMixedLoad(
  coll: Collection<any>,
  tracker: VisibilityTracker,
  opts: MixedLoadOptions,
): Promise<LoadReport> {
  const [pInsert, pUpdate] = opts.mix ?? [0.6, 0.3, 0.1];
  const random = prng(opts.seed ?? 42);
  const tickMs = opts.tickMs ?? 10;
  const maxInFlight = opts.maxBatchesInFlight ?? 32;
  const total = Math.round((opts.rate * opts.durationMs) / 1000);
  const live: string[] = [];
  const inFlight = new Set<Promise<void>>();
  const report: LoadReport = {
    scheduled: total,
    acknowledged: 0,
    failed: 0,
    lateMaxMs: 0,
    elapsedMs: 0,
    achievedRate: 0,
    mix: { insert: 0, update: 0, delete: 0 },
  };
  let nextId = 0;

  const plan = (k: number, due: number): PlannedOp => {
    const r = random();
    let op: OpKind = r < pInsert ? 'insert' : r < pInsert + pUpdate ? 'update' : 'delete';
    if (op !== 'insert' && live.length < 20) op = 'insert';
    report.mix[op]++;
    let id: string;
    if (op === 'insert') id = `${opts.idPrefix}${(nextId++).toString(36)}`;
    else {
      const i = Math.floor(random() * live.length);
      id = live[i];
      live[i] = live[live.length - 1];
      live.pop();
    }
    tracker.issue(id, k, op, due);
    return { k, id, op, due };
  };

  const send = (batch: PlannedOp[]): void => {
    const ops: AnyBulkWriteOperation<any>[] = batch.map((p) =>
      p.op === 'insert'
        ? { insertOne: { document: makeDoc(p.id, p.k) } }
        : p.op === 'update'
          ? {
              updateOne: {
                filter: { _id: p.id },
                update: { $set: { seq: p.k, n: p.k, t: new Date() } },
              },
            }
          : { deleteOne: { filter: { _id: p.id } } },
    );
    const settle = (failedIndexes: Set<number>) => {
      batch.forEach((p, i) => {
        if (failedIndexes.has(i)) {
          report.failed++;
          tracker.cancel(p.id, p.k);
        } else {
          report.acknowledged++;
          if (p.op !== 'delete') live.push(p.id);
        }
      });
    };
    const w = coll
      .bulkWrite(ops, { ordered: false })
      .then(() => settle(new Set()))
      .catch((err: MongoBulkWriteError) => {
        const list = err.writeErrors
          ? Array.isArray(err.writeErrors)
            ? err.writeErrors
            : [err.writeErrors]
          : undefined;
        settle(list ? new Set(list.map((e) => e.index)) : new Set(batch.map((_, i) => i)));
      })
      .finally(() => inFlight.delete(w));
    inFlight.add(w);
  };

  const t0 = performance.now();
  let k = 0;
  let nextTick = t0;
  while (k < total) {
    const wait = nextTick - performance.now();
    if (wait > 0) await sleep(wait);
    nextTick += tickMs;
    if (inFlight.size >= maxInFlight) continue;
    const now = performance.now();
    const dueCount = Math.min(total, Math.floor(((now - t0) * opts.rate) / 1000) + 1);
    const batch: PlannedOp[] = [];
    for (; k < dueCount; k++) {
      const due = t0 + (k * 1000) / opts.rate;
      report.lateMaxMs = Math.max(report.lateMaxMs, now - due);
      batch.push(plan(k, due));
    }
    if (batch.length) send(batch);
  }
  await Promise.all([...inFlight]);
  report.elapsedMs = performance.now() - t0;
  report.achievedRate = (report.acknowledged * 1000) / report.elapsedMs;
  return report;
}

export interface InsertLoadOptions {
  rate: number;
  durationMs: number;
  idPrefix: string;
  /** Stamp documents as a peer device's pushes (writes to Atlas). */
  stamper?: PeerStamper;
}

/** Open-loop inserts in micro-batches (one insertMany per ~2 ms tick), for loads above what single writes reach. */
export async function runInsertLoad(
  coll: Collection<any>,
  tracker: VisibilityTracker,
  opts: InsertLoadOptions,
): Promise<LoadReport> {
  const total = Math.round((opts.rate * opts.durationMs) / 1000);
  const inFlight = new Set<Promise<void>>();
  const report: LoadReport = {
    scheduled: total,
    acknowledged: 0,
    failed: 0,
    lateMaxMs: 0,
    elapsedMs: 0,
    achievedRate: 0,
    mix: { insert: 0, update: 0, delete: 0 },
  };
  const t0 = performance.now();
  let k = 0;
  while (k < total) {
    const dueCount = Math.min(total, Math.floor(((performance.now() - t0) * opts.rate) / 1000) + 1);
    if (k < dueCount && inFlight.size < 64) {
      const docs: BenchDoc[] = [];
      for (; k < dueCount; k++) {
        const due = t0 + (k * 1000) / opts.rate;
        report.lateMaxMs = Math.max(report.lateMaxMs, performance.now() - due);
        const id = `${opts.idPrefix}${k.toString(36)}`;
        tracker.issue(id, k, 'insert', due);
        const doc = makeDoc(id, k);
        docs.push(opts.stamper ? opts.stamper.stamp(doc) : doc);
      }
      report.mix.insert += docs.length;
      const p = coll
        .insertMany(docs, { ordered: false })
        .then((r) => {
          report.acknowledged += r.insertedCount;
        })
        .catch(() => {
          report.failed += docs.length;
          for (const d of docs) tracker.cancel(d._id, d.seq);
        })
        .finally(() => inFlight.delete(p));
      inFlight.add(p);
    }
    await sleep(1);
  }
  await Promise.all([...inFlight]);
  report.elapsedMs = performance.now() - t0;
  report.achievedRate = (report.acknowledged * 1000) / report.elapsedMs;
  return report;
}

export interface SaturationOptions {
  durationMs: number;
  idPrefix: string;
  /** Documents written but not yet seen at the destination, at most. */
  backlogCap: number;
  batch?: number;
  stamper?: PeerStamper;
}

/**
 * Closed-loop saturation: keeps about `backlogCap` documents in flight
 * through the sync pipeline (bulk inserts of `batch`), so the pipeline
 * never idles and its queues stay bounded. Returns documents written.
 */
export async function runSaturation(
  coll: Collection<any>,
  tracker: VisibilityTracker,
  opts: SaturationOptions,
): Promise<number> {
  const batch = opts.batch ?? 500;
  const end = performance.now() + opts.durationMs;
  let k = 0;
  while (performance.now() < end) {
    if (tracker.outstanding + batch > opts.backlogCap) {
      await sleep(2);
      continue;
    }
    const at = performance.now();
    const docs: BenchDoc[] = [];
    for (let i = 0; i < batch; i++, k++) {
      const id = `${opts.idPrefix}${k.toString(36)}`;
      tracker.issue(id, k, 'insert', at);
      const doc = makeDoc(id, k);
      docs.push(opts.stamper ? opts.stamper.stamp(doc) : doc);
    }
    await coll.insertMany(docs, { ordered: false });
  }
  return k;
}
