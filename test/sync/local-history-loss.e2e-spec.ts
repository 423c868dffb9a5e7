import type { Document, MongoClient } from 'mongodb';
import { waitFor } from '../support/mongo-harness';
import { SyncCluster } from '../support/sync-cluster';
import { LocalChangeCaptureService } from '../../src/lib/capture/local-change-capture.service';

/** Device A's local oplog keeps this much history (s); the stop outlasts it. */
const LOCAL_OPLOG_RETENTION_S = 2;
const SEEDED = 1000;

/**
 * Issue 14, item 2: the sync is stopped, the application keeps writing with
 * the raw driver, and the local oplog is pruned past the capture's token.
 * On restart the capture finds its history gone and re-scans: every write
 * made in the gap reaches Atlas and the other device.
 */
describe('local history loss: the re-scan pushes the writes the capture missed', () => {
  const cluster = new SyncCluster();
  let localA: MongoClient;
  beforeAll(async () => {
    await cluster.start(
      2,
      () => ({}),
      (i) => (i === 0 ? { oplogRetentionSeconds: LOCAL_OPLOG_RETENTION_S } : {}),
    );
    localA = await cluster.harness.client(cluster.localServers[0]);
  }, 120_000);
  afterAll(() => cluster.stop());

  it('captures updates, inserts and replaces made while the oplog rolled; says what a delete does', async () => {
    const [a, b] = cluster.devices;
    const items = () => a.db.collection('gapitems');
    await items().insertMany(
      Array.from({ length: SEEDED }, (_, i) => ({ _id: `d${i}`, n: i, w: 'seed' })) as Document[],
    );
    await cluster.converged('gapitems', 120_000);

    await a.sync.stop();
    // The application keeps writing; nothing captures it.
    const updated = Array.from({ length: 200 }, (_, i) => `d${i * 5}`);
    for (const id of updated)
      await items().updateOne({ _id: id } as Document, { $set: { w: `gap-update-${id}` } });
    const inserted = Array.from({ length: 50 }, (_, i) => `new${i}`);
    await items().insertMany(
      inserted.map((id) => ({ _id: id, w: `gap-insert-${id}` })) as Document[],
    );
    const replaced = ['d1', 'd2', 'd3'];
    for (const id of replaced)
      await items().replaceOne({ _id: id } as Document, { w: `gap-replace-${id}` });
    const deleted = ['d7', 'd8'];
    await items().deleteMany({ _id: { $in: deleted } } as Document);

    // Past the retention, then pruned: the capture's token is gone from the oplog.
    await new Promise((r) => setTimeout(r, (LOCAL_OPLOG_RETENTION_S + 1) * 1000));
    const pruned = await localA.db('admin').command({ 'secantusAdmin.pruneOplog': 1 });
    expect(pruned.pruned).toBeGreaterThan(0);

    // The re-scan is cut short once, on its second page (as by a crash): it
    // continues from its checkpoint.
    const capture = a.get(LocalChangeCaptureService);
    const captureBatch = capture.captureBatch.bind(capture);
    let rescanPages = 0;
    const spy = jest.spyOn(capture, 'captureBatch').mockImplementation(async (events) => {
      if ((events[0]?._id as { rescan?: boolean })?.rescan && ++rescanPages === 2)
        throw new Error('simulated failure during the re-scan');
      return captureBatch(events);
    });
    const restarted = Date.now();
    await a.sync.start();
    const expected = new Map<string, string>([
      ...updated.map((id): [string, string] => [id, `gap-update-${id}`]),
      ...inserted.map((id): [string, string] => [id, `gap-insert-${id}`]),
      ...replaced.map((id): [string, string] => [id, `gap-replace-${id}`]),
    ]);
    for (const db of [cluster.atlas, b.db]) {
      await waitFor(
        async () => {
          const docs = await db
            .collection('gapitems')
            .find({ _id: { $in: [...expected.keys()] } } as Document)
            .toArray();
          return (
            docs.length === expected.size && docs.every((d) => d.w === expected.get(String(d._id)))
          );
        },
        { timeoutMs: 120_000, intervalMs: 250, message: 'every gap write on Atlas and device B' },
      );
    }
    spy.mockRestore();
    const health = await a.sync.checkBidirectionalHealth();
    const rescan = health.localRescan;
    console.log(
      `local re-scan: ${rescan.scanned} documents scanned, ${rescan.pushed} uncaptured writes pushed, ` +
        `${rescan.docsPerSecond} documents/s; all on Atlas and device B ${Date.now() - restarted} ms after restart`,
    );
    expect(rescanPages).toBeGreaterThan(2);
    expect(rescan).toMatchObject({ state: 'done', resumed: true, pushed: expected.size });
    expect(rescan.scanned).toBe(SEEDED + inserted.length - deleted.length);
    // Checkpoint gone, capture streaming again from the position recorded before the scan.
    expect(
      await a.db.collection('_sync_metadata').findOne({ _id: /^rescan:/ } as Document),
    ).toBeNull();
    await items().updateOne({ _id: 'd4' } as Document, { $set: { w: 'after-restart' } });
    await cluster.everywhere(
      async (db) =>
        (await db.collection('gapitems').findOne({ _id: 'd4' } as Document))?.w === 'after-restart',
      'a write after the re-scan captured as usual',
    );
    // A delete leaves nothing to scan: it is not pushed. Atlas and B keep the
    // documents; A gets them back at its next re-baseline or their next change on Atlas.
    for (const id of deleted) {
      expect(
        await cluster.atlas.collection('gapitems').findOne({ _id: id } as Document),
      ).not.toBeNull();
      expect(await b.db.collection('gapitems').findOne({ _id: id } as Document)).not.toBeNull();
    }
    await cluster.atlas
      .collection('gapitems')
      .updateOne({ _id: deleted[0] } as Document, { $set: { w: 'changed on Atlas' } });
    await waitFor(
      async () =>
        (await items().findOne({ _id: deleted[0] } as Document))?.w === 'changed on Atlas',
      {
        timeoutMs: 30_000,
        message: 'a document deleted in the gap comes back with its next Atlas change',
      },
    );
  }, 300_000);
});
