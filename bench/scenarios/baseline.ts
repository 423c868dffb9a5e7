import type { AnyBulkWriteOperation, Db } from 'mongodb';
import { BenchContext } from '../lib/context';
import { makeDoc } from '../lib/docs';
import { runMixedLoad } from '../lib/load';
import { CpuMeter, CpuShare } from '../lib/proc';
import { BenchServer, dropDatabases, uniqueDbName } from '../lib/servers';
import { LatencySummary, median, medianSummary, summarize } from '../lib/stats';
import { VisibilityTracker } from '../lib/tracker';
import { DestinationWatcher } from '../lib/watch';

export interface BaselineRun {
  /** Unordered bulkWrite of 1 KiB inserts, docs/s, on the Atlas server and on a local server. */
  bulkWriteAtlas: number;
  bulkWriteLocal: number;
  /** CPU of the Atlas server (and the benchmark) during the Atlas bulkWrite. */
  bulkWriteCpu: Record<string, CpuShare>;
  /** CPU of the local server (and the benchmark) during the local bulkWrite. */
  bulkWriteLocalCpu?: Record<string, CpuShare>;
  /** Server CPU ms per document inserted by the raw bulkWrite, by server (`atlas`, `local`). */
  insertCpuMs?: Record<BaselineServer, number>;
  /** One insert at a time, each waiting for its event. */
  changeStreamIdle: LatencySummary;
  /** Write → event under the lag scenario's open-loop mixed loads, keyed by offered rate. */
  changeStreamLoaded: Record<string, LatencySummary>;
  /** Events/s a change stream delivers while bulk inserts go in as fast as they can. */
  changeStreamThroughput: number;
  /**
   * Atlas server CPU ms per event delivered in the flat-out change-stream
   * measurement: the insert that caused the event included.
   */
  changeStreamEventCpuMs?: number;
}

export type BaselineServer = 'atlas' | 'local';

export interface BaselineResult {
  runs: BaselineRun[];
  median: {
    bulkWriteAtlas: number;
    bulkWriteLocal: number;
    changeStreamIdle: LatencySummary;
    changeStreamLoaded: Record<string, LatencySummary>;
    changeStreamThroughput: number;
    insertCpuMs?: Record<BaselineServer, number>;
    changeStreamEventCpuMs?: number;
  };
}

export const BULK_DOCS = 20_000;
const BULK_BATCH = 1000;

/** `0.045 ms`, or `–` when the server process could not be metered (external servers). */
export function cpuMs(x: number | undefined): string {
  return x !== undefined && Number.isFinite(x) ? `${x.toFixed(3)} ms` : '–';
}

interface BulkWriteMeasure {
  rate: number;
  cpu: Record<string, CpuShare>;
  /** CPU ms of the process named `server` in `pids` per inserted document. */
  cpuMsPerDoc: number;
}

/** Raw bulkWrite inserts; `pids` names the processes whose CPU the inserts are metered on. */
async function bulkWriteRate(
  db: Db,
  collection: string,
  pids: Record<string, number | undefined>,
  server: BaselineServer,
): Promise<BulkWriteMeasure> {
  const coll = db.collection<any>(collection);
  await coll.insertOne(makeDoc('warmup', 0));
  const meter = new CpuMeter(pids).begin();
  const t0 = performance.now();
  for (let k = 0; k < BULK_DOCS; k += BULK_BATCH) {
    const ops: AnyBulkWriteOperation<any>[] = [];
    for (let i = k; i < k + BULK_BATCH; i++)
      ops.push({ insertOne: { document: makeDoc(`w${i.toString(36)}`, i) } });
    await coll.bulkWrite(ops, { ordered: false });
  }
  const rate = (BULK_DOCS * 1000) / (performance.now() - t0);
  const cpu = meter.end();
  return { rate, cpu, cpuMsPerDoc: perDocMs(cpu[server], BULK_DOCS) };
}

function perDocMs(cpu: CpuShare | undefined, docs: number): number {
  return cpu && docs > 0 ? (cpu.cpuSeconds * 1000) / docs : NaN;
}

async function idleLatency(db: Db): Promise<LatencySummary> {
  const tracker = new VisibilityTracker();
  const watcher = await DestinationWatcher.open(db, 'idle', tracker);
  try {
    const coll = db.collection<any>('idle');
    for (let k = 0; k < 300; k++) {
      const id = `i${k}`;
      tracker.issue(id, k, 'insert', performance.now());
      await coll.insertOne(makeDoc(id, k));
      await tracker.drained(2000, 0);
    }
  } finally {
    await watcher.close();
  }
  return summarize(tracker.results().map((r) => r.seenAt - r.issuedAt));
}

async function loadedLatency(db: Db, rate: number, seconds: number): Promise<LatencySummary> {
  const tracker = new VisibilityTracker();
  const coll = `loaded${rate}`;
  const watcher = await DestinationWatcher.open(db, coll, tracker);
  try {
    await runMixedLoad(db.collection(coll), tracker, {
      rate,
      durationMs: seconds * 1000,
      idPrefix: 'l',
    });
    await tracker.drained(10_000);
  } finally {
    await watcher.close();
  }
  return summarize(tracker.results().map((r) => r.seenAt - r.issuedAt));
}

/** Events/s, and server CPU ms per delivered event (inserts included) on the server `pid` runs. */
async function streamThroughput(
  db: Db,
  pid: number | undefined,
): Promise<{ rate: number; cpuMsPerEvent: number }> {
  const tracker = new VisibilityTracker();
  const watcher = await DestinationWatcher.open(db, 'cst', tracker);
  try {
    const coll = db.collection<any>('cst');
    const meter = new CpuMeter({ server: pid }).begin();
    const t0 = performance.now();
    for (let k = 0; k < BULK_DOCS; k += BULK_BATCH) {
      const docs = [];
      for (let i = k; i < k + BULK_BATCH; i++) {
        const id = `c${i.toString(36)}`;
        tracker.issue(id, i, 'insert', performance.now());
        docs.push(makeDoc(id, i));
      }
      await coll.insertMany(docs, { ordered: false });
    }
    await tracker.drained(60_000);
    const cpu = meter.end();
    const last = Math.max(...tracker.arrivals);
    return {
      rate: (tracker.delivered * 1000) / (last - t0),
      cpuMsPerEvent: perDocMs(cpu.server, tracker.delivered),
    };
  } finally {
    await watcher.close();
  }
}

export async function runBaseline(ctx: BenchContext): Promise<BaselineResult> {
  const runs: BaselineRun[] = [];
  for (let r = 0; r < ctx.args.runs; r++) {
    const dbs: [BenchServer, string][] = [
      [ctx.atlas, uniqueDbName(`base${r}`)],
      [ctx.localA, uniqueDbName(`base${r}`)],
    ];
    try {
      const atlasDb = ctx.atlas.client.db(dbs[0][1]);
      const atlasBulk = await bulkWriteRate(
        atlasDb,
        'bulk',
        { atlas: ctx.atlas.pid, bench: process.pid },
        'atlas',
      );
      const localBulk = await bulkWriteRate(
        ctx.localA.client.db(dbs[1][1]),
        'bulk',
        { local: ctx.localA.pid, bench: process.pid },
        'local',
      );
      const bulkWriteAtlas = atlasBulk.rate;
      const bulkWriteLocal = localBulk.rate;
      const insertCpuMs = { atlas: atlasBulk.cpuMsPerDoc, local: localBulk.cpuMsPerDoc };
      const changeStreamIdle = await idleLatency(atlasDb);
      const changeStreamLoaded: Record<string, LatencySummary> = {};
      for (const rate of ctx.args.lagRates)
        changeStreamLoaded[rate] = await loadedLatency(
          atlasDb,
          rate,
          Math.min(5, ctx.args.lagSeconds),
        );
      const stream = await streamThroughput(atlasDb, ctx.atlas.pid);
      const changeStreamThroughput = stream.rate;
      const run: BaselineRun = {
        bulkWriteAtlas,
        bulkWriteLocal,
        bulkWriteCpu: atlasBulk.cpu,
        bulkWriteLocalCpu: localBulk.cpu,
        insertCpuMs,
        changeStreamIdle,
        changeStreamLoaded,
        changeStreamThroughput,
        changeStreamEventCpuMs: stream.cpuMsPerEvent,
      };
      runs.push(run);
      ctx.log(
        `baseline run ${r + 1}: bulkWrite ${bulkWriteAtlas.toFixed(0)}/s (local ${bulkWriteLocal.toFixed(0)}/s), ` +
          `change stream idle p99 ${changeStreamIdle.p99.toFixed(1)} ms, ` +
          ctx.args.lagRates
            .map((rate) => `at ${rate}/s p99 ${changeStreamLoaded[rate].p99.toFixed(1)} ms`)
            .join(', ') +
          `, ${changeStreamThroughput.toFixed(0)} events/s`,
      );
      ctx.log(
        `baseline run ${r + 1}: server CPU per raw bulkWrite insert ${cpuMs(insertCpuMs.atlas)} (Atlas), ` +
          `${cpuMs(insertCpuMs.local)} (local); per raw change-stream event ${cpuMs(stream.cpuMsPerEvent)} ` +
          `(Atlas, its insert included)`,
      );
    } finally {
      await dropDatabases(dbs);
    }
  }
  return {
    runs,
    median: {
      bulkWriteAtlas: median(runs.map((r) => r.bulkWriteAtlas)),
      bulkWriteLocal: median(runs.map((r) => r.bulkWriteLocal)),
      changeStreamIdle: medianSummary(runs.map((r) => r.changeStreamIdle)),
      changeStreamLoaded: Object.fromEntries(
        ctx.args.lagRates.map((rate) => [
          rate,
          medianSummary(runs.map((r) => r.changeStreamLoaded[rate])),
        ]),
      ),
      changeStreamThroughput: median(runs.map((r) => r.changeStreamThroughput)),
      insertCpuMs: {
        atlas: median(runs.map((r) => r.insertCpuMs?.atlas ?? NaN)),
        local: median(runs.map((r) => r.insertCpuMs?.local ?? NaN)),
      },
      changeStreamEventCpuMs: median(runs.map((r) => r.changeStreamEventCpuMs ?? NaN)),
    },
  };
}
