import type { Db, Document, MongoClient } from 'mongodb';
import { RebaselineService } from '../../src/lib/initial-sync/rebaseline.service';
import { LocalChangeCaptureService } from '../../src/lib/capture/local-change-capture.service';
import {
  MongoHarness,
  TestMongoServer,
  describeUnless,
  needsEmbeddedServers,
  uniqueDbName,
  waitFor,
} from '../support/mongo-harness';
import { DeviceOptions, SyncDevice } from '../support/sync-device';

/** The smallest tombstone retention the engine accepts (ms). */
const TOMBSTONE_RETENTION_MS = 60_000;
/** Atlas's oplog keeps this much history (s); the devices' stop outlasts it. */
const ATLAS_OPLOG_RETENTION_S = 5;

/**
 * Issue 14, items 3 and 4: a device back from past the tombstone horizon, and
 * deletes made on Atlas without the module while no device streamed. Stamped
 * local documents that Atlas holds neither as documents nor as tombstones
 * were deleted there: the re-baseline deletes the unmodified ones locally,
 * and an edit made meanwhile wins over the delete, with a conflict recorded.
 */
describeUnless(needsEmbeddedServers)('deletes Atlas no longer remembers', () => {
  const harness = new MongoHarness();
  const atlasDbName = uniqueDbName('atlas');
  let atlasServer: TestMongoServer;
  let atlasClient: MongoClient;
  const options: DeviceOptions[] = [];
  const devices: SyncDevice[] = [];
  const atlas = (): Db => atlasClient.db(atlasDbName);
  const replicas = (): Db[] => [...devices.map((d) => d.db), atlas()];

  beforeAll(async () => {
    [atlasServer] = await harness.start(1, {
      name: 'horizon-atlas',
      oplogRetentionSeconds: ATLAS_OPLOG_RETENTION_S,
    });
    const locals = await harness.start(2, { name: 'horizon-local' });
    atlasClient = await harness.client(atlasServer);
    for (const [i, local] of locals.entries()) {
      options.push({
        localUri: local.uri,
        localDbName: uniqueDbName(`device${i}`),
        atlasUri: atlasServer.uri,
        atlasDbName,
        instanceId: `device-${'ab'[i]}`,
        options: { tombstoneRetention: TOMBSTONE_RETENTION_MS },
      });
      devices.push(await SyncDevice.start(options[i]));
    }
  }, 120_000);
  afterAll(async () => {
    await Promise.all(devices.map((d) => d.close().catch(() => undefined)));
    await harness.stopAll();
  });

  const ids = (docs: Document[]) => docs.map((d) => String(d._id)).sort();
  async function everywhere(collection: string, expected: string[], message: string) {
    await waitFor(
      async () => {
        await Promise.all(devices.map((d) => d.sync.flush()));
        const all = await Promise.all(
          replicas().map((db) => db.collection(collection).find().toArray()),
        );
        return all.every((docs) => JSON.stringify(ids(docs)) === JSON.stringify(expected));
      },
      { timeoutMs: 60_000, intervalMs: 250, message },
    ).catch(async (err: Error) => {
      const all = await Promise.all(
        replicas().map((db) => db.collection(collection).find().toArray()),
      );
      throw new Error(`${err.message}: ${JSON.stringify(all.map(ids))}`);
    });
  }
  const conflictsOf = async (device: SyncDevice, collection: string) =>
    (await device.db.collection('_sync_conflicts').find({ collection }).toArray())
      .map((c) => String(c.documentId))
      .sort();

  it('a device offline past the tombstone retention resurrects nothing; its offline edits win, as conflicts', async () => {
    const [a, b] = devices;
    const all = Array.from({ length: 8 }, (_, i) => `h${i}`);
    await a.db
      .collection('horizon')
      .insertMany(all.map((id) => ({ _id: id, w: 'seed' })) as Document[]);
    await everywhere('horizon', all, 'seeded everywhere');

    await b.sync.stop(); // B goes offline
    const deleted = all.slice(0, 5);
    await a.db.collection('horizon').deleteMany({ _id: { $in: deleted } } as Document);
    await waitFor(
      async () =>
        (await atlas().collection('horizon').countDocuments()) === 3 &&
        (await atlas().collection('_sync_tombstones').countDocuments({ c: 'horizon' })) === 5,
      { timeoutMs: 30_000, message: 'deletes and their tombstones on Atlas' },
    );

    // Offline edits on B: h3 queued in B's outbox (captured while Atlas was out
    // of reach: the capture runs, the push does not), h4 not captured at all.
    const capture = b.get(LocalChangeCaptureService);
    await b.db
      .collection('horizon')
      .updateOne({ _id: 'h3' } as Document, { $set: { w: 'offline edit, queued' } });
    capture.start();
    await capture.caughtUp();
    await capture.stop();
    expect(await b.db.collection('_sync_outbox').countDocuments({ c: 'horizon' })).toBe(1);
    await b.db
      .collection('horizon')
      .updateOne({ _id: 'h4' } as Document, { $set: { w: 'offline edit, uncaptured' } });

    // The retention passes: the tombstones' time is moved back past it and the
    // server's own TTL pass runs now (its sweeper runs every 60 s, like mongod's).
    await atlas()
      .collection('_sync_tombstones')
      .updateMany({ c: 'horizon' }, {
        $set: { deletedAt: new Date(Date.now() - TOMBSTONE_RETENTION_MS - 5000) },
      } as Document);
    await atlasClient.db('admin').command({ 'secantusAdmin.pruneTtl': 1 });
    expect(await atlas().collection('_sync_tombstones').countDocuments({ c: 'horizon' })).toBe(0);

    // B comes back and compares both sides, before its pushes run (a restart
    // would push the queued edit first, see the report).
    const rebaseline = b.get(RebaselineService);
    await rebaseline.rebaseline('test: back past the tombstone horizon');
    expect(rebaseline.progress).toMatchObject({ state: 'done', deletedLocally: 3 });
    await b.sync.start();

    await everywhere('horizon', ['h3', 'h4', 'h5', 'h6', 'h7'], 'no resurrection; edits back');
    for (const db of replicas()) {
      expect((await db.collection('horizon').findOne({ _id: 'h3' } as Document))?.w).toBe(
        'offline edit, queued',
      );
      expect((await db.collection('horizon').findOne({ _id: 'h4' } as Document))?.w).toBe(
        'offline edit, uncaptured',
      );
    }
    expect(await conflictsOf(b, 'horizon')).toEqual(['h3', 'h4']);
    const tombs = await b.db.collection('_sync_tombstones').find({ c: 'horizon' }).toArray();
    expect(tombs.map((t) => [String(t.i), t.src]).sort()).toEqual([
      ['h0', 'remote'],
      ['h1', 'remote'],
      ['h2', 'remote'],
    ]);
  }, 240_000);

  it('a delete made on Atlas without the module while no device streams is gone everywhere after the re-baseline; an emptied collection is pushed back', async () => {
    const [a] = devices;
    const direct = Array.from({ length: 6 }, (_, i) => `x${i}`);
    const emptied = ['e0', 'e1', 'e2'];
    await a.db.collection('direct').insertMany(direct.map((id) => ({ _id: id })) as Document[]);
    await a.db.collection('emptied').insertMany(emptied.map((id) => ({ _id: id })) as Document[]);
    await everywhere('direct', direct, 'direct seeded');
    await everywhere('emptied', emptied, 'emptied seeded');

    await Promise.all(devices.map((d) => d.close()));
    await atlas()
      .collection('direct')
      .deleteMany({ _id: { $in: ['x0', 'x1', 'x2'] } } as Document);
    await atlas().collection('emptied').deleteMany({});
    // Nobody streamed those deletes, and now nobody can: the oplog no longer holds them.
    await new Promise((r) => setTimeout(r, (ATLAS_OPLOG_RETENTION_S + 1) * 1000));
    const pruned = await atlasClient.db('admin').command({ 'secantusAdmin.pruneOplog': 1 });
    expect(pruned.pruned).toBeGreaterThan(0);
    const restarted = new Date();
    for (const [i, opts] of options.entries()) devices[i] = await SyncDevice.start(opts);

    await waitFor(
      async () =>
        devices.every((d) => {
          const r = d.get(RebaselineService).progress;
          return r.state === 'done' && !!r.startedAt && r.startedAt >= restarted;
        }),
      { timeoutMs: 60_000, message: 'both devices re-baselined after losing their Atlas history' },
    );
    await everywhere('direct', ['x3', 'x4', 'x5'], 'the direct deletes everywhere');
    await everywhere('emptied', emptied, 'the emptied collection pushed back');
    for (const d of devices) expect(await conflictsOf(d, 'direct')).toEqual([]);
  }, 240_000);
});
