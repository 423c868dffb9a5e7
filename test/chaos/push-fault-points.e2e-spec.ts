import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Document, MongoClient } from 'mongodb';
import { FAULT_POINT_NAMES } from '../../src/lib/common/fault-points';
import { ensureServiceBuilt } from '../support/service-command';
import { MongoHarness, TestMongoServer, uniqueDbName, waitFor } from '../support/mongo-harness';
import { SyncProcess } from './sync-process';

/**
 * The Local -> Atlas hot path killed between every two of its steps: the
 * service (`node dist/main.js`, as users run it) is started with a fault
 * point armed, host writes reach it, the process dies at that point
 * (SIGKILL), and after a restart every acknowledged host write must be on
 * Atlas, with no conflict recorded for this device's own edits.
 */
describe('push path killed at every step', () => {
  const harness = new MongoHarness();
  let workDir: string;
  let atlasServer: TestMongoServer;
  let localServer: TestMongoServer;
  let atlas: MongoClient;
  let local: MongoClient;
  const db = uniqueDbName('faults');
  let device: SyncProcess;

  beforeAll(async () => {
    ensureServiceBuilt();
    workDir = mkdtempSync(join(tmpdir(), 'sync-faults-'));
    [atlasServer, localServer] = await harness.start(2, { name: 'faults' });
    atlas = await harness.client(atlasServer);
    local = await harness.client(localServer);
    device = new SyncProcess({
      name: 'device',
      workDir,
      env: {
        LOCAL_MONGODB_URI: localServer.uri,
        LOCAL_DB_NAME: db,
        ATLAS_MONGODB_URI: atlasServer.uri,
        ATLAS_DB_NAME: db,
        SYNC_INSTANCE_ID: 'fault-device',
        BIDIRECTIONAL_SYNC_ENABLED: 'true',
        SYNC_OUTBOX_DRAIN_INTERVAL: '100',
        SYNC_LEASE_TTL: '2000',
        SYNC_LEASE_RENEW_INTERVAL: '500',
      },
    });
  }, 240_000);

  afterAll(async () => {
    await device?.close();
    await atlas?.close(true).catch(() => undefined);
    await local?.close(true).catch(() => undefined);
    await harness.stopAll();
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  }, 120_000);

  /** Inserts, updates and deletes of a round's documents, each acknowledged by the local server. */
  async function hostWrites(round: string): Promise<void> {
    const items = local.db(db).collection('items');
    await items.insertMany(
      Array.from({ length: 20 }, (_, i) => ({ _id: `${round}-${i}`, n: i, round })) as Document[],
    );
    await items.updateMany({ round, n: { $lt: 5 } } as Document, { $set: { edited: true } });
    await items.deleteMany({ round, n: { $gte: 18 } } as Document);
  }

  /** The round's documents without their stamps, by id. */
  async function contents(client: MongoClient, round: string): Promise<string> {
    const docs = await client
      .db(db)
      .collection('items')
      .find({ round } as Document, { projection: { _sync: 0 } })
      .sort({ _id: 1 })
      .toArray();
    return JSON.stringify(docs);
  }

  it.each(FAULT_POINT_NAMES)(
    'killed at %s: every host write reaches Atlas after a restart',
    async (point) => {
      const round = point.replace(/[^a-z]+/g, '-');
      device.setEnv('SYNC_FAULT_POINT', point);
      await device.start();
      await hostWrites(round);
      // The write path reaches the armed point and the process dies there.
      expect(await device.exitedWithin(30_000)).toBe(true);

      device.setEnv('SYNC_FAULT_POINT', undefined);
      await device.start();
      const expected = await contents(local, round);
      expect(JSON.parse(expected)).toHaveLength(18);
      await waitFor(async () => (await contents(atlas, round)) === expected, {
        timeoutMs: 30_000,
        intervalMs: 200,
        message: `Atlas holding every write of ${round}`,
      });
      // Replaying its own pushes is not a conflict with itself.
      const conflicts = await local
        .db(db)
        .collection('_sync_conflicts')
        .countDocuments({ documentId: { $regex: `^${round}-` } } as Document);
      expect(conflicts).toBe(0);
      await device.stop();
    },
    120_000,
  );
});
