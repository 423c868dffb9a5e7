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
 * made in the gap reaches Atlas and the other device. Deletes made in the gap
 * leave nothing to scan; the gap check finds them as absences and tells them
 * from documents new on Atlas by what the Atlas stream delivers next.
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

  it('pushes updates, inserts, replaces and deletes made while the oplog rolled; an edit made elsewhere wins over a gap delete, as a conflict', async () => {
    const [a, b] = cluster.devices;
    const items = () => a.db.collection('gapitems');
    await items().insertMany(
      Array.from({ length: SEEDED }, (_, i) => ({ _id: `d${i}`, n: i, w: 'seed' })) as Document[],
    );
    await cluster.converged('gapitems', 120_000);

    // A's listener position before A deletes and re-creates d11, put back before the restart:
    // the Atlas stream then delivers A's own earlier delete of d11 again (its own re-creation it
    // skips), which must not hide the delete of d11 made in the gap.
    const tokenId = 'resume:device-a:atlas';
    const metadata = a.db.collection<{ _id: string }>('_sync_metadata');
    const listenerPosition = await metadata.findOne({ _id: tokenId });
    expect(listenerPosition).not.toBeNull();
    await items().deleteOne({ _id: 'd11' } as Document);
    await cluster.everywhere(
      async (db) => !(await db.collection('gapitems').findOne({ _id: 'd11' } as Document)),
      "A's delete of d11",
    );
    await items().insertOne({ _id: 'd11', n: 11, w: 're-created' } as Document);
    await cluster.everywhere(
      async (db) =>
        (await db.collection('gapitems').findOne({ _id: 'd11' } as Document))?.w === 're-created',
      "A's re-creation of d11",
    );

    await a.sync.stop();
    await metadata.replaceOne({ _id: tokenId }, listenerPosition!);
    // Meanwhile on device B: an edit of a document A deletes in the gap, and a new document.
    await b.db
      .collection('gapitems')
      .updateOne({ _id: 'd9' } as Document, { $set: { w: 'edited on B' } });
    await b.db.collection('gapitems').insertOne({ _id: 'fromB', w: 'new on B' } as Document);
    await waitFor(
      async () =>
        (await cluster.atlas.collection('gapitems').countDocuments({
          _id: { $in: ['d9', 'fromB'] },
          w: { $in: ['edited on B', 'new on B'] },
        } as Document)) === 2,
      { timeoutMs: 30_000, message: "B's writes on Atlas" },
    );
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
    const deleted = ['d7', 'd8', 'd11'];
    const deletedAndEditedOnB = 'd9';
    await items().deleteMany({ _id: { $in: [...deleted, deletedAndEditedOnB] } } as Document);

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
    expect(rescan.scanned).toBe(SEEDED + inserted.length - deleted.length - 1);
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
    // The deletes made in the gap reach Atlas and B; the one B had edited meanwhile comes back
    // with B's edit, as a recorded conflict; B's new document is not taken for a delete.
    await cluster.everywhere(
      async (db) =>
        (await db.collection('gapitems').countDocuments({ _id: { $in: deleted } } as Document)) ===
        0,
      'the deletes made in the gap, everywhere',
    );
    await cluster.everywhere(
      async (db) =>
        (await db.collection('gapitems').findOne({ _id: deletedAndEditedOnB } as Document))?.w ===
        'edited on B',
      "B's edit of a document deleted in the gap, everywhere",
    );
    await cluster.everywhere(
      async (db) =>
        (await db.collection('gapitems').findOne({ _id: 'fromB' } as Document))?.w === 'new on B',
      "B's new document, everywhere",
    );
    await waitFor(
      async () => (await a.sync.checkBidirectionalHealth()).localRescan.gapDeletes.state === 'done',
      { timeoutMs: 30_000, message: 'gap check done' },
    );
    const gap = (await a.sync.checkBidirectionalHealth()).localRescan.gapDeletes;
    console.log(`gap check: ${JSON.stringify(gap)}`);
    expect(gap).toMatchObject({ state: 'done', pushed: deleted.length, lostToEdits: 1 });
    expect(
      await a.db
        .collection('_sync_conflicts')
        .countDocuments({ collection: 'gapitems', documentId: deletedAndEditedOnB } as Document),
    ).toBe(1);
    expect(
      await a.db.collection('_sync_metadata').findOne({ _id: /^gap-deletes:/ } as Document),
    ).toBeNull();
  }, 300_000);
});
