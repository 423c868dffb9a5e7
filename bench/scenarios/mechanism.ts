import { BSON, type AnyBulkWriteOperation, type Db, type Document } from 'mongodb';
import { contentDigest } from '../../src/lib/common/content-digest';
import {
  casFilter,
  issuedStamp,
  stamped,
  stateUpdate,
  unchangedFilter,
} from '../../src/lib/common/engine-writes';
import { HybridLogicalClock } from '../../src/lib/common/hybrid-logical-clock';
import type { SyncStamp } from '../../src/lib/common/sync-stamp';
import type { BenchContext } from '../lib/context';
import { makeDoc } from '../lib/docs';
import { CpuMeter } from '../lib/proc';
import { dropDatabases, uniqueDbName } from '../lib/servers';
import { median } from '../lib/stats';
import { measureRescan, RESCAN_CHANGED_FRACTION, RESCAN_DOCS, RescanRun } from './mechanism-rescan';

/**
 * What issue 14's mechanism costs per change: the digest every stamp carries
 * (`_sync.h`, CPU and bytes), the apply's compare-and-set on the exact
 * content read (`unchangedFilter`) against the stamp-only one (`casFilter`),
 * and the local re-scan after history loss. Each figure has a baseline
 * measured in the same run: `BSON.serialize` of the same document, the
 * stamp without `h`, the stamp-only filter, a raw full-collection find.
 */

/** The two documents measured: the benchmark's 1 KiB one and a many-field one. */
export type DocShape = 'doc1k' | 'wide';

export interface DigestRun {
  /** µs per `contentDigest` and per `BSON.serialize` of the same document. */
  digestUs: Record<DocShape, number>;
  serializeUs: Record<DocShape, number>;
}

export interface CasRun {
  /** ms per `updateOne` statement (unordered bulkWrite of CAS_BATCH), by filter. */
  contentMs: Record<DocShape, number>;
  stampMs: Record<DocShape, number>;
  /** Local-server CPU ms per statement, by filter (NaN when the server is not metered). */
  contentCpuMs: Record<DocShape, number>;
  stampCpuMs: Record<DocShape, number>;
}

export interface ShapeInfo {
  /** BSON bytes of the document with its stamp (`h` included). */
  docBytes: number;
  fields: number;
  /** BSON bytes the `_sync` element takes in the document, without and with `h`. */
  stampBytes: number;
  stampBytesWithDigest: number;
}

export interface MechanismResult {
  /** Which run produced these figures (a `--only mechanism` run replaces only this section). */
  producedBy?: {
    engineCommit: string;
    command: string;
    startedAt: string;
    servers: string;
    loadAvgStart: number;
  };
  runs: number;
  digestIterations: number;
  casDocs: number;
  casBatch: number;
  rescanDocs: number;
  rescanChangedFraction: number;
  shapes: Record<DocShape, ShapeInfo>;
  digest: DigestRun[];
  cas: CasRun[];
  rescan: RescanRun[];
  median: {
    digestUs: Record<DocShape, number>;
    serializeUs: Record<DocShape, number>;
    contentMs: Record<DocShape, number>;
    stampMs: Record<DocShape, number>;
    contentCpuMs: Record<DocShape, number>;
    stampCpuMs: Record<DocShape, number>;
    rescanDocsPerSecond: number;
    findDocsPerSecond: number;
    pagedReadDocsPerSecond: number;
    pushedToAtlasMs: number;
    /** Medians of each run's ratio to its own baseline. */
    digestRatio: Record<DocShape, number>;
    casRatio: Record<DocShape, number>;
    rescanRatio: number;
  };
}

export const SHAPES: DocShape[] = ['doc1k', 'wide'];
const DIGEST_ITERATIONS = 4000;
const CAS_DOCS = 500;
const CAS_BATCH = 100;
/** A generated instance id's length (`dev-` and 12 hex digits), as the stamps of a real device carry. */
const ORIGIN = 'dev-0123456789ab';

/** A many-field document (~2.7 KiB): 60 top-level fields of mixed types, some nested. */
export function makeWideDoc(id: string, seq: number): Document {
  const doc: Document = { _id: id, seq };
  for (let i = 0; i < 60; i++) {
    const k = `field${String(i).padStart(2, '0')}`;
    switch (i % 5) {
      case 0:
        doc[k] = i * 1.5 + seq;
        break;
      case 1:
        doc[k] = `value ${i} of ${id} `.repeat(3);
        break;
      case 2:
        doc[k] = new Date(1_700_000_000_000 + i * 1000);
        break;
      case 3:
        doc[k] = { a: i, b: `nested ${i}`, c: [i, i + 1, i + 2] };
        break;
      default:
        doc[k] = [`tag${i}`, `tag${i + 1}`, i % 2 === 0];
    }
  }
  return doc;
}

const makers: Record<DocShape, (id: string, seq: number) => Document> = {
  doc1k: (id, seq) => ({ ...makeDoc(id, seq) }),
  wide: makeWideDoc,
};

/** A document as the engine leaves it: stamped, with the digest of its content. */
function stampedDoc(content: Document, clock: HybridLogicalClock): Document {
  const stamp: SyncStamp = { v: clock.tick(), o: ORIGIN };
  return stamped(content, content._id, issuedStamp(content, content._id, stamp));
}

/** Bytes the `_sync` element takes in a document (type byte, name, embedded document). */
function stampElementBytes(stamp: SyncStamp): number {
  return BSON.calculateObjectSize({ _sync: stamp }) - BSON.calculateObjectSize({});
}

function shapeInfo(shape: DocShape): ShapeInfo {
  const doc = stampedDoc(makers[shape]('d0000001', 1), new HybridLogicalClock(ORIGIN));
  const { h: _h, ...withoutDigest } = doc._sync as SyncStamp;
  return {
    docBytes: BSON.calculateObjectSize(doc),
    fields: Object.keys(doc).length,
    stampBytes: stampElementBytes(withoutDigest),
    stampBytesWithDigest: stampElementBytes(doc._sync as SyncStamp),
  };
}

/** µs per call of `fn`, in `blocks` slices alternated with the baseline's by the caller. */
function timeUs(fn: () => unknown, iterations: number): number {
  let sink = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) sink ^= (fn() as { length: number }).length;
  const us = Number(process.hrtime.bigint() - t0) / 1000 / iterations;
  return sink === -1 ? NaN : us;
}

function measureDigest(): DigestRun {
  const clock = new HybridLogicalClock(ORIGIN);
  const run: DigestRun = { digestUs: {} as never, serializeUs: {} as never };
  for (const shape of SHAPES) {
    const doc = stampedDoc(makers[shape]('d0000001', 1), clock);
    const digest = () => contentDigest(doc);
    const serialize = () => BSON.serialize(doc);
    timeUs(digest, 500); // warm-up
    timeUs(serialize, 500);
    // Alternating slices, so a burst of load on the shared machine hits both.
    const slices = 8;
    let d = 0;
    let s = 0;
    for (let k = 0; k < slices; k++) {
      d += timeUs(digest, DIGEST_ITERATIONS / slices);
      s += timeUs(serialize, DIGEST_ITERATIONS / slices);
    }
    run.digestUs[shape] = d / slices;
    run.serializeUs[shape] = s / slices;
  }
  return run;
}

type Filter = 'content' | 'stamp';

/**
 * One round of the apply's write on every document of the collection: the
 * next state (new content, new stamp) as `stateUpdate` of the state read,
 * under either filter. Every statement must match (both filters do the
 * same work when nothing raced), or the comparison would be void.
 */
async function casRound(
  db: Db,
  coll: string,
  shape: DocShape,
  filter: Filter,
  clock: HybridLogicalClock,
  serverPid: number | undefined,
): Promise<{ ms: number; cpuMs: number }> {
  const read = await db.collection(coll).find({}).toArray();
  const ops: AnyBulkWriteOperation<Document>[] = read.map((doc) => {
    const next = stampedDoc(makers[shape](String(doc._id), doc.seq + 1), clock);
    return {
      updateOne: {
        filter:
          filter === 'content'
            ? unchangedFilter(doc)
            : casFilter(doc._id, (doc._sync as SyncStamp).v),
        update: stateUpdate(doc, next),
      },
    };
  });
  const meter = new CpuMeter({ local: serverPid }).begin();
  const t0 = performance.now();
  let matched = 0;
  for (let k = 0; k < ops.length; k += CAS_BATCH)
    matched += (
      await db.collection(coll).bulkWrite(ops.slice(k, k + CAS_BATCH), { ordered: false })
    ).matchedCount;
  const ms = (performance.now() - t0) / ops.length;
  const cpu = meter.end().local;
  if (matched !== ops.length)
    throw new Error(`mechanism: ${filter} filter matched ${matched} of ${ops.length} statements`);
  return { ms, cpuMs: cpu ? (cpu.cpuSeconds * 1000) / ops.length : NaN };
}

async function measureCas(ctx: BenchContext, r: number): Promise<CasRun> {
  const dbName = uniqueDbName(`mech${r}`);
  const db = ctx.localA.client.db(dbName);
  const clock = new HybridLogicalClock(ORIGIN);
  const run: CasRun = {
    contentMs: {} as never,
    stampMs: {} as never,
    contentCpuMs: {} as never,
    stampCpuMs: {} as never,
  };
  try {
    for (const shape of SHAPES) {
      const coll = `cas_${shape}`;
      await db
        .collection(coll)
        .insertMany(
          Array.from({ length: CAS_DOCS }, (_, i) =>
            stampedDoc(makers[shape](`d${String(i).padStart(7, '0')}`, 1), clock),
          ),
        );
      // ABBA (BAAB on odd runs): each filter gets an early and a late round.
      const order: Filter[] = r % 2 ? ['stamp', 'content'] : ['content', 'stamp'];
      const rounds = [...order, ...[...order].reverse()];
      const sums = { content: { ms: 0, cpuMs: 0 }, stamp: { ms: 0, cpuMs: 0 } };
      for (const f of rounds) {
        const x = await casRound(db, coll, shape, f, clock, ctx.localA.pid);
        sums[f].ms += x.ms / 2;
        sums[f].cpuMs += x.cpuMs / 2;
      }
      run.contentMs[shape] = sums.content.ms;
      run.stampMs[shape] = sums.stamp.ms;
      run.contentCpuMs[shape] = sums.content.cpuMs;
      run.stampCpuMs[shape] = sums.stamp.cpuMs;
    }
  } finally {
    await dropDatabases([[ctx.localA, dbName]]);
  }
  return run;
}

const pickMedian = <T>(runs: T[], get: (x: T) => Record<DocShape, number>) =>
  Object.fromEntries(SHAPES.map((s) => [s, median(runs.map((x) => get(x)[s]))])) as Record<
    DocShape,
    number
  >;

/** Median over runs of each run's measured / baseline, per shape. */
const ratios = (pairs: [Record<DocShape, number>, Record<DocShape, number>][]) =>
  Object.fromEntries(SHAPES.map((s) => [s, median(pairs.map(([m, b]) => m[s] / b[s]))])) as Record<
    DocShape,
    number
  >;

export async function runMechanism(ctx: BenchContext): Promise<MechanismResult> {
  const shapes = Object.fromEntries(SHAPES.map((s) => [s, shapeInfo(s)])) as Record<
    DocShape,
    ShapeInfo
  >;
  for (const s of SHAPES)
    ctx.log(
      `mechanism: ${s} ${shapes[s].docBytes} B, ${shapes[s].fields} fields: stamp ${shapes[s].stampBytes} B, ` +
        `${shapes[s].stampBytesWithDigest} B with h (+${shapes[s].stampBytesWithDigest - shapes[s].stampBytes} B)`,
    );
  const digest: DigestRun[] = [];
  const cas: CasRun[] = [];
  const rescan: RescanRun[] = [];
  for (let r = 0; r < ctx.args.runs; r++) {
    const d = measureDigest();
    digest.push(d);
    ctx.log(
      `mechanism run ${r + 1}: contentDigest ` +
        SHAPES.map(
          (s) =>
            `${s} ${d.digestUs[s].toFixed(1)} µs (BSON.serialize ${d.serializeUs[s].toFixed(1)} µs, ×${(d.digestUs[s] / d.serializeUs[s]).toFixed(1)})`,
        ).join(', '),
    );
    const c = await measureCas(ctx, r);
    cas.push(c);
    ctx.log(
      `mechanism run ${r + 1}: apply updateOne ` +
        SHAPES.map(
          (s) =>
            `${s} exact-content ${c.contentMs[s].toFixed(3)} ms vs stamp-only ${c.stampMs[s].toFixed(3)} ms (×${(c.contentMs[s] / c.stampMs[s]).toFixed(2)})`,
        ).join(', '),
    );
    const x = await measureRescan(ctx, r);
    rescan.push(x);
    ctx.log(
      `mechanism run ${r + 1}: local re-scan of ${x.scanned} documents (${x.pushed} changed without the engine) ` +
        `${x.docsPerSecond.toFixed(0)} documents/s, raw find ${x.findDocsPerSecond.toFixed(0)} documents/s, ` +
        `its paged read alone ${x.pagedReadDocsPerSecond.toFixed(0)} documents/s; ` +
        `all pushed on Atlas ${x.pushedToAtlasMs.toFixed(0)} ms after the restart`,
    );
  }
  return {
    runs: ctx.args.runs,
    digestIterations: DIGEST_ITERATIONS,
    casDocs: CAS_DOCS,
    casBatch: CAS_BATCH,
    rescanDocs: RESCAN_DOCS,
    rescanChangedFraction: RESCAN_CHANGED_FRACTION,
    shapes,
    digest,
    cas,
    rescan,
    median: {
      digestUs: pickMedian(digest, (x) => x.digestUs),
      serializeUs: pickMedian(digest, (x) => x.serializeUs),
      contentMs: pickMedian(cas, (x) => x.contentMs),
      stampMs: pickMedian(cas, (x) => x.stampMs),
      contentCpuMs: pickMedian(cas, (x) => x.contentCpuMs),
      stampCpuMs: pickMedian(cas, (x) => x.stampCpuMs),
      rescanDocsPerSecond: median(rescan.map((x) => x.docsPerSecond)),
      findDocsPerSecond: median(rescan.map((x) => x.findDocsPerSecond)),
      pagedReadDocsPerSecond: median(rescan.map((x) => x.pagedReadDocsPerSecond)),
      pushedToAtlasMs: median(rescan.map((x) => x.pushedToAtlasMs)),
      digestRatio: ratios(digest.map((x) => [x.digestUs, x.serializeUs])),
      casRatio: ratios(cas.map((x) => [x.contentMs, x.stampMs])),
      rescanRatio: median(rescan.map((x) => x.docsPerSecond / x.findDocsPerSecond)),
    },
  };
}
