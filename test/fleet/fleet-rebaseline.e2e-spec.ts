import type { JetStreamManager } from '@nats-io/jetstream';
import { Decimal128, Db, Document, MongoClient, ObjectId } from 'mongodb';
import { NatsConnectionService } from '../../src/lib/fleet';
import { FleetPositionRepository } from '../../src/lib/fleet/device';
import { RebaselineService } from '../../src/lib/initial-sync/rebaseline.service';
import { UNSTAMPED_ATLAS_STAMP } from '../../src/lib/initial-sync/atlas-rebaseline-reader';
import { MongoHarness, TestMongoServer, uniqueDbName, waitFor } from '../support/mongo-harness';
import { SyncDevice } from '../support/sync-device';
import { FleetTestServer } from './fleet-test-server';
import { RelayProcess } from './relay-process';

const PARTITIONS = 4;
/** More than one page (500) of documents that were on Atlas before any relay ran. */
const PRE_EXISTING = 1100;

/**
 * Re-baseline over NATS: a device in fleet mode, with no Atlas URI at all, gets Atlas's data
 * from the relays (request/reply) on its first start and after the changes stream's retention
 * passed its position, then consumes the stream from the sequence the relay returned.
 */
describe('fleet mode re-baseline through the relays (real nats-server, SecantusDB)', () => {
  const harness = new MongoHarness();
  let fleet: FleetTestServer;
  let atlasServer: TestMongoServer;
  let localServer: TestMongoServer;
  let atlasClient: MongoClient;
  let atlas: Db;
  let observer: NatsConnectionService;
  let jsm: JetStreamManager;
  const atlasDbName = uniqueDbName('atlas');
  const localDbName = uniqueDbName('device-1');
  let relay: RelayProcess | undefined;
  let device: SyncDevice | undefined;

  /** The first relay's leases outlive it by up to 12 s: a kill -9 leaves its pushes queued that long. */
  function startRelay(leaseTtlMs = 12_000): RelayProcess {
    relay = RelayProcess.start(
      fleet.relayEnv(
        { uri: atlasServer.uri, dbName: atlasDbName },
        { pushPartitions: PARTITIONS, leaseTtlMs: leaseTtlMs },
      ),
    );
    return relay;
  }

  /** device-1 in fleet mode: no atlasUri option at all. */
  async function startDevice(): Promise<SyncDevice> {
    device = await SyncDevice.start({
      localUri: localServer.uri,
      localDbName,
      atlasDbName,
      instanceId: 'device-1',
      fleet: fleet.deviceFleet('device-1', PARTITIONS),
    });
    return device;
  }

  /** `_id` → name of a collection (stamps aside). */
  async function contents(db: Db, collection = 'items'): Promise<Record<string, string>> {
    const docs = await db.collection(collection).find({}).toArray();
    return Object.fromEntries(docs.map((d) => [JSON.stringify(d._id), String(d.name)]));
  }

  async function converged(what: string): Promise<void> {
    let last: string[] = [];
    try {
      await waitFor(
        async () => {
          const [a, d] = await Promise.all([contents(atlas), contents(device!.db)]);
          last = Object.keys({ ...a, ...d }).filter((k) => a[k] !== d[k]);
          return last.length === 0;
        },
        { timeoutMs: 60_000, intervalMs: 250, message: what },
      );
    } catch (err) {
      const states = await Promise.all(
        last.slice(0, 3).map(async (k) => {
          const id = JSON.parse(k) as unknown;
          const tomb = { c: 'items', i: id };
          return {
            id,
            atlas: await atlas.collection('items').findOne({ _id: id } as Document),
            atlasTomb: await atlas.collection('_sync_tombstones').findOne(tomb),
            local: await device?.db.collection('items').findOne({ _id: id } as Document),
            localTomb: await device?.db.collection('_sync_tombstones').findOne(tomb),
          };
        }),
      );
      throw new Error(
        `${(err as Error).message}\n${last.length} differing ids, e.g. ${JSON.stringify(states)}\nre-baseline: ${JSON.stringify(device?.get<RebaselineService>(RebaselineService).progress)}\nrelay log:\n${relay?.log.slice(-3000)}`,
      );
    }
  }

  beforeAll(async () => {
    [fleet, [atlasServer, localServer]] = await Promise.all([
      FleetTestServer.start('fleet-rebaseline'),
      harness.start(2, { name: 'fleet-rebaseline' }),
    ]);
    atlasClient = await harness.client(atlasServer);
    atlas = atlasClient.db(atlasDbName);
    observer = fleet.relay();
    await observer.connect();
  }, 180_000);

  afterAll(async () => {
    await device?.close().catch(() => undefined);
    await relay?.kill9();
    await observer?.close();
    await fleet?.destroy();
    await harness.stopAll();
  }, 60_000);

  it('a fresh device without an Atlas URI receives what was on Atlas before the relay started, and keeps its own data', async () => {
    // On Atlas before any relay ran: unstamped documents of three _id types (three brackets).
    await atlas.collection('items').insertMany(
      Array.from({ length: PRE_EXISTING }, (_, i) => ({
        _id: `pre-${String(i).padStart(5, '0')}`,
        name: `pre ${i}`,
      })) as Document[],
    );
    const oid = new ObjectId();
    await atlas.collection('items').insertMany([
      { _id: 7, name: 'seven', price: Decimal128.fromString('12.30'), at: new Date(0) },
      { _id: oid, name: 'object id' },
    ] as Document[]);
    // And on the device before its first start: data of its own that Atlas never saw.
    const localClient = await harness.client(localServer);
    await localClient
      .db(localDbName)
      .collection('items')
      .insertMany(
        Array.from({ length: 5 }, (_, i) => ({ _id: `own-${i}`, name: `own ${i}` })) as Document[],
      );

    await startRelay().active();
    jsm = await observer.jetstreamManager();
    await startDevice();
    const d = device!;
    await waitFor(
      async () => d.get<RebaselineService>(RebaselineService).progress.state === 'done',
      {
        timeoutMs: 60_000,
        message: 'the first-start re-baseline to finish',
      },
    );
    await converged('the device and Atlas to agree after the first-start re-baseline');

    expect(Object.keys(await contents(d.db))).toHaveLength(PRE_EXISTING + 2 + 5);
    const seven = await d.db.collection('items').findOne({ _id: 7 } as Document);
    expect(seven?.price).toBeInstanceOf(Decimal128);
    expect(seven?.at).toEqual(new Date(0));
    // Adopted on Atlas by the relay: the device holds the same stamp as Atlas.
    const pre = await d.db.collection('items').findOne({ _id: 'pre-00000' } as Document);
    expect(pre?._sync).toMatchObject({ v: UNSTAMPED_ATLAS_STAMP.v, o: UNSTAMPED_ATLAS_STAMP.o });
    expect(d.get<RebaselineService>(RebaselineService).progress).toMatchObject({
      state: 'done',
      reason: expect.stringMatching(/no stored changes stream position/),
    });
    // The device consumes from the sequence the relay returned: a later Atlas write arrives.
    const position = await d
      .get<FleetPositionRepository>(FleetPositionRepository)
      .load('device-1', 'SYNC_CHANGES');
    expect(position).toEqual(expect.any(Number));
    await atlas.collection('items').insertOne({ _id: 'after-0', name: 'after' } as Document);
    await waitFor(
      async () => !!(await d.db.collection('items').findOne({ _id: 'after-0' } as Document)),
      {
        message: 'a write made after the re-baseline to arrive through the stream',
      },
    );
    // Health: NATS, no Atlas connection, the atlas ping says so instead of failing.
    const { transport } = await d.sync.checkBidirectionalHealth();
    expect(transport).toMatchObject({ mode: 'nats', nats: { state: 'connected' } });
    await localClient.close();
  }, 180_000);

  it('a device whose position the stream no longer holds re-baselines by itself and converges, keeping its offline writes', async () => {
    const d = device!;
    await waitFor(async () => (await d.db.collection('_sync_outbox').countDocuments()) === 0, {
      message: 'the outbox to drain',
    });
    const before = await d
      .get<FleetPositionRepository>(FleetPositionRepository)
      .load('device-1', 'SYNC_CHANGES');
    await d.close();
    device = undefined;

    // Offline: Atlas changes (insert, update, delete), and local host writes on the device.
    await atlas.collection('items').insertMany(
      Array.from({ length: 20 }, (_, i) => ({
        _id: `late-${i}`,
        name: `late ${i}`,
      })) as Document[],
    );
    await atlas
      .collection('items')
      .updateOne({ _id: 'pre-00001' } as Document, { $set: { name: 'changed on Atlas' } });
    await atlas.collection('items').deleteOne({ _id: 'pre-00002' } as Document);
    const localClient = await harness.client(localServer);
    await localClient
      .db(localDbName)
      .collection('items')
      .insertOne({ _id: 'offline-0', name: 'written offline' } as Document);
    // The relay adopted every offline Atlas change (so published it); then retention drops
    // the whole stream (a purge stands for max_age / max_bytes).
    await waitFor(
      async () =>
        !!(await atlas.collection('_sync_tombstones').findOne({ c: 'items', i: 'pre-00002' })) &&
        (await atlas
          .collection('items')
          .countDocuments({ _id: /^late-/, _sync: { $exists: true } })) === 20 &&
        !!(await atlas.collection('items').findOne({
          _id: 'pre-00001',
          name: 'changed on Atlas',
          '_sync.v': { $ne: UNSTAMPED_ATLAS_STAMP.v },
        } as Document)),
      { message: 'the relay to adopt the offline Atlas changes' },
    );
    await new Promise((r) => setTimeout(r, 1000));
    await jsm.streams.purge('SYNC_CHANGES');
    const info = await jsm.streams.info('SYNC_CHANGES');
    expect(info.state.messages).toBe(0);
    expect(info.state.first_seq).toBeGreaterThan((before ?? 0) + 1);

    await startDevice();
    await waitFor(
      async () => device!.get<RebaselineService>(RebaselineService).progress.state === 'done',
      { timeoutMs: 60_000, message: 'the automatic re-baseline to finish' },
    );
    await converged('the device and Atlas to agree after the automatic re-baseline');
    const contentsNow = await contents(device!.db);
    expect(contentsNow[JSON.stringify('late-19')]).toBe('late 19');
    expect(contentsNow[JSON.stringify('pre-00001')]).toBe('changed on Atlas');
    expect(contentsNow[JSON.stringify('pre-00002')]).toBeUndefined();
    expect((await contents(atlas))[JSON.stringify('offline-0')]).toBe('written offline');
    expect(device!.get<RebaselineService>(RebaselineService).progress).toMatchObject({
      state: 'done',
      reason: expect.stringMatching(/retention passed position/),
    });
    const after = await device!
      .get<FleetPositionRepository>(FleetPositionRepository)
      .load('device-1', 'SYNC_CHANGES');
    expect(after).toBeGreaterThanOrEqual(info.state.last_seq);
    // And the stream goes on from there.
    await atlas.collection('items').insertOne({ _id: 'after-1', name: 'after again' } as Document);
    await converged('a write after the second re-baseline to arrive');
    await localClient.close();
  }, 180_000);

  it("keeps the device's own writes still in the push stream when it re-baselines (they are not Atlas deletes)", async () => {
    const d = device!;
    // No relay: the device's pushes stay in SYNC_PUSH (its outbox entries are gone on the PubAck).
    await relay!.kill9();
    await d.db.collection('items').insertMany(
      Array.from({ length: 3 }, (_, i) => ({
        _id: `flight-${i}`,
        name: `in flight ${i}`,
      })) as Document[],
    );
    await waitFor(
      async () =>
        (await d.db.collection('_sync_outbox').countDocuments()) === 0 &&
        (await jsm.streams.info('SYNC_PUSH')).state.messages >= 3,
      { message: 'the pushes to be in the push stream, not on Atlas' },
    );
    expect(await atlas.collection('items').findOne({ _id: 'flight-0' } as Document)).toBeNull();
    await d.close();
    device = undefined;
    // Its stream position forgotten (as on a first start with local data): it re-baselines.
    const localClient = await harness.client(localServer);
    await localClient
      .db(localDbName)
      .collection('_sync_metadata')
      .deleteOne({ _id: 'fleet:device-1:SYNC_CHANGES' } as Document);
    // The new relay answers at once; it applies pushes only once the dead relay's partition
    // leases expired (up to 12 s), so the pushes are still queued when the device compares
    // its documents, and a device that did not wait for them would take them for deletes.
    await startDevice();
    startRelay(3000);
    await waitFor(
      async () => device!.get<RebaselineService>(RebaselineService).progress.state === 'done',
      { timeoutMs: 90_000, message: 'the re-baseline to finish' },
    );
    expect(device!.get<RebaselineService>(RebaselineService).progress).toMatchObject({
      deletedLocally: 0,
      reason: expect.stringMatching(/no stored changes stream position/),
    });
    await converged('the in-flight writes to be on Atlas and still on the device');
    for (let i = 0; i < 3; i++)
      expect((await contents(device!.db))[JSON.stringify(`flight-${i}`)]).toBe(`in flight ${i}`);
    await localClient.close();
  }, 180_000);
});
