import type { Db } from 'mongodb';
import { prng, seedFrom } from '../support/prng';
import { SyncCluster } from '../support/sync-cluster';

const SEED = seedFrom('SYNC_TEST_SEED');
const OPERATIONS = Number(process.env.SYNC_TEST_OPERATIONS ?? 240);
const IDS = 16;

describe(`randomized convergence (seed ${SEED}; replay with SYNC_TEST_SEED=${SEED})`, () => {
  const cluster = new SyncCluster();
  beforeAll(() => cluster.start(3), 120_000);
  afterAll(() => cluster.stop());

  it('ends with identical replicas, and the last acknowledged write of each document wins', async () => {
    console.log(
      `randomized convergence seed: ${SEED} (replay: SYNC_TEST_SEED=${SEED} npx jest test/sync/randomized)`,
    );
    const random = prng(SEED);
    const pick = <T>(list: T[]): T => list[Math.floor(random() * list.length)];
    const writers: { name: string; db: Db }[] = [
      ...cluster.devices.map((d, i) => ({ name: `device-${i}`, db: d.db })),
      { name: 'atlas-direct', db: cluster.atlas },
    ];
    const log: string[] = [];
    for (let n = 0; n < OPERATIONS; n++) {
      const writer = pick(writers);
      const id = `doc-${Math.floor(random() * IDS)}`;
      const token = `${writer.name}#${n}`;
      const c = writer.db.collection('fuzz');
      const roll = random();
      if (roll < 0.35) {
        await c.updateOne(
          { _id: id as any },
          { $set: { w: token, group: n % 3 } },
          { upsert: true },
        );
      } else if (roll < 0.7) {
        await c.updateOne({ _id: id as any }, { $set: { w: token, [`f${n % 4}`]: n } });
      } else if (roll < 0.85) {
        await c.deleteOne({ _id: id as any });
      } else {
        await c.updateMany({ group: n % 3 }, { $set: { w: token, bulk: n } });
      }
      log.push(`${token} ${id} ${roll.toFixed(2)}`);
      if (random() < 0.3) await new Promise((r) => setTimeout(r, Math.floor(random() * 20)));
    }

    // Quiet period, then one last write per document by a random writer: it
    // happens after everything else, so it must be what every replica holds.
    await Promise.all(cluster.devices.map((d) => d.sync.flush()));
    await new Promise((r) => setTimeout(r, 1500));
    const expected = new Map<string, string | null>();
    for (let i = 0; i < IDS; i++) {
      const id = `doc-${i}`;
      const writer = pick(writers);
      const token = `${writer.name}#final-${i}`;
      if (random() < 0.2) {
        await writer.db.collection('fuzz').deleteOne({ _id: id as any });
        expected.set(id, null);
      } else {
        await writer.db
          .collection('fuzz')
          .updateOne({ _id: id as any }, { $set: { w: token } }, { upsert: true });
        expected.set(id, token);
      }
    }
    const final = await cluster.converged('fuzz', 60_000).catch(async (err) => {
      console.log(`writers' log:\n${log.join('\n')}`);
      throw new Error(`${err.message}\n${await cluster.dump()}`);
    });
    for (const [id, token] of expected) {
      const doc = final.find((d) => d._id === id);
      if (token === null) expect(doc).toBeUndefined();
      else expect(doc?.w).toBe(token);
    }
    expect(log.length).toBe(OPERATIONS);
  }, 180_000);
});
