import type { AnyBulkWriteOperation, Db, Document } from 'mongodb';
import { BenchContext } from '../lib/context';
import { makeDoc } from '../lib/docs';
import { dropDatabases, uniqueDbName } from '../lib/servers';

/**
 * How the server's cost per operation grows with collection size for the
 * filter shapes the engine sends (and for alternatives). Cost that grows
 * in proportion to the collection means the server scans instead of using
 * the `_id` index: the operation is O(n), a batch O(n·batch).
 */
export interface ShapeCost {
  shape: string;
  usedBy: string;
  /** ms per operation at each collection size. */
  msPerOp: Record<string, number>;
  /** msPerOp at the largest size / at the smallest. */
  growth: number;
}

export interface PlannerResult {
  sizes: number[];
  opsPerShape: number;
  shapes: ShapeCost[];
}

const SIZES = [200, 1000];
const OPS = 200;

interface Shape {
  shape: string;
  usedBy: string;
  /** Document of the prefilled collection with key `i`. */
  seed: (id: string) => Document;
  /** The measured operations against the first OPS keys (bulkWrite ops, or one find). */
  run: (db: Db, coll: string, ids: string[]) => Promise<unknown>;
}

const key = (id: string) => ({ c: 'coll', i: id });
const bulk =
  (ops: (id: string) => AnyBulkWriteOperation<any>) => (db: Db, coll: string, ids: string[]) =>
    db.collection<any>(coll).bulkWrite(ids.map(ops), { ordered: false });

const SHAPES: Shape[] = [
  {
    shape: 'updateOne {_id: scalar} $set',
    usedBy: 'reference (index hit)',
    seed: (id) => makeDoc(id, 0),
    run: bulk((id) => ({ updateOne: { filter: { _id: id }, update: { $set: { n: 1 } } } })),
  },
  {
    shape: 'updateOne {_id: {c, i}, v: {$lt}} upsert',
    usedBy: 'outbox enqueue (capture)',
    seed: (id) => ({ _id: key(id), v: 'v1', doc: makeDoc(id, 0) }),
    run: bulk((id) => ({
      updateOne: {
        filter: { _id: key(id), v: { $lt: 'v2' } },
        update: { $set: { v: 'v2' } },
        upsert: true,
      },
    })),
  },
  {
    shape: 'deleteOne {_id: {c, i}, v}',
    usedBy: 'outbox acknowledge (drainer)',
    seed: (id) => ({ _id: key(id), v: 'v1', doc: makeDoc(id, 0) }),
    run: bulk((id) => ({ deleteOne: { filter: { _id: key(id), v: 'v1' } } })),
  },
  {
    shape: 'find {_id: {$in: [{c, i} x200]}}',
    usedBy: 'tombstones.find / outbox.pendingFor',
    seed: (id) => ({ _id: key(id), v: 'v1' }),
    run: (db, coll, ids) =>
      db
        .collection(coll)
        .find({ _id: { $in: ids.map(key) } } as Document)
        .toArray(),
  },
  {
    shape: "replaceOne {_id, '_sync.v': v} upsert",
    usedBy: 'push to Atlas (drainer, compare-and-set)',
    seed: (id) => ({ ...makeDoc(id, 0), _sync: { v: 'v1', o: 'x' } }),
    run: bulk((id) => ({
      replaceOne: {
        filter: { _id: id, '_sync.v': 'v1' },
        replacement: { ...makeDoc(id, 1), _sync: { v: 'v2', o: 'x' } },
        upsert: true,
      },
    })),
  },
  {
    shape: 'updateOne {_id: "c:i" string, v: {$lt}} upsert',
    usedBy: 'alternative outbox/tombstone key',
    seed: (id) => ({ _id: `coll:${id}`, v: 'v1', doc: makeDoc(id, 0) }),
    run: bulk((id) => ({
      updateOne: {
        filter: { _id: `coll:${id}`, v: { $lt: 'v2' } },
        update: { $set: { v: 'v2' } },
        upsert: true,
      },
    })),
  },
  {
    shape: 'find {_id: {$in: [scalar x200]}}',
    usedBy: 'drainer read of Atlas, findLocal (processor)',
    seed: (id) => makeDoc(id, 0),
    run: (db, coll, ids) =>
      db
        .collection(coll)
        .find({ _id: { $in: ids } } as Document)
        .toArray(),
  },
];

export async function runPlanner(ctx: BenchContext): Promise<PlannerResult> {
  const dbName = uniqueDbName('planner');
  const db = ctx.atlas.client.db(dbName);
  const shapes: ShapeCost[] = [];
  try {
    for (const [s, shape] of SHAPES.entries()) {
      const msPerOp: Record<string, number> = {};
      for (const size of SIZES) {
        const coll = `s${s}_${size}`;
        const ids = Array.from({ length: size }, (_, i) => `p${i}`);
        for (let k = 0; k < size; k += 1000)
          await db
            .collection(coll)
            .insertMany(ids.slice(k, k + 1000).map(shape.seed), { ordered: false });
        const t0 = performance.now();
        await shape.run(db, coll, ids.slice(0, OPS));
        msPerOp[size] = (performance.now() - t0) / OPS;
      }
      const cost = {
        shape: shape.shape,
        usedBy: shape.usedBy,
        msPerOp,
        growth: msPerOp[SIZES[SIZES.length - 1]] / msPerOp[SIZES[0]],
      };
      shapes.push(cost);
      ctx.log(
        `planner: ${shape.shape}: ${SIZES.map((n) => `${msPerOp[n].toFixed(3)} ms/op at ${n}`).join(', ')} (x${cost.growth.toFixed(1)})`,
      );
    }
  } finally {
    await dropDatabases([[ctx.atlas, dbName]]);
  }
  return { sizes: SIZES, opsPerShape: OPS, shapes };
}
