import type { Document } from 'mongodb';
import { prng, seedFrom } from '../support/prng';
import { SyncCluster } from '../support/sync-cluster';
import { waitFor } from '../support/mongo-harness';

const SEED = seedFrom('SYNC_TEST_SEED');
const ROUNDS = Number(process.env.SYNC_TEST_RACE_ROUNDS ?? 200);
const PARALLEL = 8;

/**
 * Host writes (raw driver, on device A) racing the apply of remote writes
 * (made on device B) to the same documents, timed around the moment A
 * applies them. Checked write by write: each host write either survives, or
 * a conflict is recorded for its document. A silent overwrite fails.
 */
describe(`host writes racing applies (seed ${SEED}; replay with SYNC_TEST_SEED=${SEED})`, () => {
  const cluster = new SyncCluster();
  beforeAll(() => cluster.start(2), 120_000);
  afterAll(() => cluster.stop());

  it('loses no host write silently', async () => {
    console.log(
      `apply race seed: ${SEED} (replay: SYNC_TEST_SEED=${SEED} npx jest test/sync/apply-race)`,
    );
    const random = prng(SEED);
    const [a, b] = cluster.devices;
    const ids = Array.from({ length: ROUNDS }, (_, r) => `race-${r}`);
    await b.db
      .collection('race')
      .insertMany(ids.map((id) => ({ _id: id, w: 'initial' })) as Document[]);
    await cluster.converged('race', 60_000);

    // How long a write on B takes to be applied on A: the host writes aim at that moment.
    const probe = async (id: string): Promise<number> => {
      const started = Date.now();
      await b.db
        .collection('race')
        .updateOne({ _id: id } as Document, { $set: { w: `probe-${started}` } }, { upsert: true });
      await waitFor(
        async () =>
          (await a.db.collection('race').findOne({ _id: id } as Document))?.w ===
          `probe-${started}`,
        { timeoutMs: 10_000, intervalMs: 2, message: 'probe applied on A' },
      );
      return Date.now() - started;
    };
    const latencies = [
      await probe('race-probe'),
      await probe('race-probe'),
      await probe('race-probe'),
    ];
    const applyMs = latencies.sort((x, y) => x - y)[1];

    const delays = ids.map(() => Math.floor(applyMs * (0.3 + random() * 1.2)));
    const replaces = ids.map(() => random() < 0.5);
    for (let start = 0; start < ids.length; start += PARALLEL) {
      await Promise.all(
        ids.slice(start, start + PARALLEL).map(async (id, k) => {
          const round = start + k;
          await b.db
            .collection('race')
            .updateOne({ _id: id } as Document, { $set: { w: `b-${round}` } });
          await new Promise((r) => setTimeout(r, delays[round]));
          // A replace strips the stamp, an update keeps the old one: both must fail the apply's compare-and-set.
          if (replaces[round])
            await a.db.collection('race').replaceOne({ _id: id } as Document, { w: `a-${round}` });
          else
            await a.db
              .collection('race')
              .updateOne({ _id: id } as Document, { $set: { w: `a-${round}` } });
        }),
      );
    }
    const final = await cluster.converged('race', 60_000);
    const conflicted = new Set<unknown>();
    for (const device of cluster.devices)
      for (const c of await device.db.collection('_sync_conflicts').find().toArray())
        conflicted.add(c.documentId);
    const outcome = { survived: 0, conflict: 0, silent: [] as string[] };
    ids.forEach((id, round) => {
      const doc = final.find((d) => d._id === id);
      if (doc?.w === `a-${round}`) outcome.survived++;
      else if (conflicted.has(id)) outcome.conflict++;
      else outcome.silent.push(`${id}: ${doc?.w} (host write ${delays[round]} ms after B's)`);
    });
    console.log(
      `apply race: ${ROUNDS} host writes, apply ~${applyMs} ms: ${outcome.survived} survived, ` +
        `${outcome.conflict} lost to a recorded conflict, ${outcome.silent.length} silently overwritten`,
    );
    expect(outcome.silent).toEqual([]);
    // The rounds did race: some host writes were concurrent with the remote write.
    expect(conflicted.size).toBeGreaterThan(0);
  }, 240_000);
});
