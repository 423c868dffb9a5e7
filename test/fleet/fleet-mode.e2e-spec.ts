import type { JetStreamManager } from '@nats-io/jetstream';
import type { Db, Document, MongoClient } from 'mongodb';
import {
  decodeFleetMessage,
  encodeFleetMessage,
  NatsConnectionService,
  NatsPermissionError,
  pushPartition,
  pushSubject,
  toNatsPermissionError,
} from '../../src/lib/fleet';
import { ListenerService } from '../../src/lib/listener/listener.service';
import { MongoHarness, TestMongoServer, uniqueDbName, waitFor } from '../support/mongo-harness';
import { SyncDevice } from '../support/sync-device';
import { FleetTestServer } from './fleet-test-server';
import { RelayProcess } from './relay-process';

const PARTITIONS = 4;

function sameContents(a: Record<string, string>, b: Record<string, string>): boolean {
  const sorted = (o: Record<string, string>) => JSON.stringify(Object.entries(o).sort());
  return sorted(a) === sorted(b);
}
/** Devices in fleet mode get an Atlas URI nothing listens on: they must not need Atlas. */
const NO_ATLAS = 'mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=300';

describe('fleet mode end to end: two devices, one Atlas, relays on a real nats-server', () => {
  const harness = new MongoHarness();
  let fleet: FleetTestServer;
  let atlasServer: TestMongoServer;
  let localServer: TestMongoServer;
  let atlasClient: MongoClient;
  let atlas: Db;
  let observer: NatsConnectionService;
  let jsm: JetStreamManager;
  const atlasDbName = uniqueDbName('atlas');
  const relays: RelayProcess[] = [];
  const devices: SyncDevice[] = [];

  function startRelay(): RelayProcess {
    const relay = RelayProcess.start(
      fleet.relayEnv(
        { uri: atlasServer.uri, dbName: atlasDbName },
        { pushPartitions: PARTITIONS, leaseTtlMs: 3000 },
      ),
    );
    relays.push(relay);
    return relay;
  }

  async function startDevice(id: 'device-1' | 'device-2'): Promise<SyncDevice> {
    const device = await SyncDevice.start({
      localUri: localServer.uri,
      localDbName: uniqueDbName(id),
      atlasUri: NO_ATLAS,
      atlasDbName,
      instanceId: id,
      fleet: fleet.deviceFleet(id, PARTITIONS),
    });
    devices.push(device);
    return device;
  }

  /** `_id` → name in a database's menuitems (stamps aside). */
  async function contents(db: Db): Promise<Record<string, string>> {
    const docs = await db.collection('items').find({}).sort({ _id: 1 }).toArray();
    return Object.fromEntries(docs.map((d) => [String(d._id), String(d.name)]));
  }

  async function converged(expected: Record<string, string>): Promise<void> {
    let last: Record<string, string>[] = [];
    try {
      await waitFor(
        async () => {
          last = await Promise.all([atlas, ...devices.map((d) => d.db)].map(contents));
          return last.every((c) => sameContents(c, expected));
        },
        { timeoutMs: 40_000, intervalMs: 200, message: 'Atlas and both devices to agree' },
      );
    } catch (err) {
      const missing = last.map((c) =>
        Object.keys({ ...expected, ...c }).filter((k) => c[k] !== expected[k]),
      );
      throw new Error(
        `${(err as Error).message}\ndiffering ids (Atlas, device-1, device-2): ${JSON.stringify(missing)}\ndevice listeners: ${JSON.stringify(devices.map((d) => d.get(ListenerService).status))}\ndead letters: ${JSON.stringify(await Promise.all(devices.map((d) => d.db.collection('_sync_dead_letters').find().limit(2).toArray())))}\nrelay log:\n${relays.map((r) => r.log.slice(-3000)).join('\n---\n')}`,
      );
    }
  }

  beforeAll(async () => {
    [fleet, [atlasServer, localServer]] = await Promise.all([
      FleetTestServer.start('fleet-mode'),
      harness.start(2, { name: 'fleet-mode' }),
    ]);
    atlasClient = await harness.client(atlasServer);
    atlas = atlasClient.db(atlasDbName);
    await startRelay().active();
    observer = fleet.relay();
    await observer.connect();
    jsm = await observer.jetstreamManager();
    await startDevice('device-1');
    await startDevice('device-2');
  }, 180_000);

  afterAll(async () => {
    for (const d of devices) await d.close().catch(() => undefined);
    for (const r of relays) await r.kill9();
    await fleet?.destroy();
    await harness.stopAll();
  }, 60_000);

  const expected: Record<string, string> = {};

  it('writes on each device and on Atlas converge everywhere', async () => {
    const [d1, d2] = devices;
    for (let i = 0; i < 5; i++) {
      await d1.db.collection('items').insertOne({ _id: `d1-${i}`, name: `one ${i}` } as Document);
      await d2.db.collection('items').insertOne({ _id: `d2-${i}`, name: `two ${i}` } as Document);
      await atlas.collection('items').insertOne({ _id: `at-${i}`, name: `atlas ${i}` } as Document);
      Object.assign(expected, {
        [`d1-${i}`]: `one ${i}`,
        [`d2-${i}`]: `two ${i}`,
        [`at-${i}`]: `atlas ${i}`,
      });
    }
    await converged(expected);
    // Updates and deletes too, each from a different side.
    await d2.db
      .collection('items')
      .updateOne({ _id: 'd1-0' } as Document, { $set: { name: 'two was here' } });
    await d1.db.collection('items').deleteOne({ _id: 'd2-0' } as Document);
    await atlas
      .collection('items')
      .updateOne({ _id: 'd1-1' } as Document, { $set: { name: 'atlas was here' } });
    expected['d1-0'] = 'two was here';
    delete expected['d2-0'];
    expected['d1-1'] = 'atlas was here';
    await converged(expected);
    // Acknowledged on Atlas: the work queue is empty; the outboxes are too.
    expect((await jsm.streams.info('SYNC_PUSH')).state.messages).toBe(0);
    for (const d of devices) expect(await d.db.collection('_sync_outbox').countDocuments()).toBe(0);
    // Health reports the transport: NATS connected, the applied sequence, nothing pending.
    for (const d of devices) {
      const { transport } = await d.sync.checkBidirectionalHealth();
      expect(transport).toMatchObject({ mode: 'nats', nats: { state: 'connected' } });
      expect(transport.changesSequence).toBeGreaterThan(0);
      expect(transport.changesPending).toBe(0);
    }
  }, 150_000);

  it('a device cannot push for another device: refused on its subject, rejected by origin', async () => {
    const device1 = fleet.device('device-1');
    await device1.connect();
    const forged = { v: `${String(Date.now()).padStart(15, '0')}-000000-device-2`, o: 'device-2' };
    const message = encodeFleetMessage({
      collection: 'items',
      id: 'forged',
      op: 'upsert',
      stamp: forged,
      document: { _id: 'forged', name: 'forged', _sync: forged },
      base: null,
    });
    const partition = pushPartition('items', 'forged', PARTITIONS);
    // On device-2's subject: the server refuses it.
    const refused = await device1
      .jetstream()
      .publish(pushSubject('device-2', partition), message.data, { msgID: message.msgId })
      .then(
        () => undefined,
        (err: unknown) => toNatsPermissionError(err),
      );
    expect(refused).toBeInstanceOf(NatsPermissionError);
    // On its own subject with device-2's origin: stored, then terminated by the relay.
    await device1
      .jetstream()
      .publish(pushSubject('device-1', partition), message.data, { msgID: message.msgId });
    await waitFor(async () => (await jsm.streams.info('SYNC_PUSH')).state.messages === 0, {
      message: 'the relay to take the forged push off the queue',
    });
    await new Promise((r) => setTimeout(r, 1000));
    expect(await atlas.collection('items').findOne({ _id: 'forged' } as Document)).toBeNull();
    for (const d of devices)
      expect(await d.db.collection('items').findOne({ _id: 'forged' } as Document)).toBeNull();
    await device1.close();
  });

  it('kill -9 of the relay while everyone writes, then another relay: nothing lost, nothing duplicated', async () => {
    const [d1, d2] = devices;
    const write = async (round: number) => {
      await d1.db
        .collection('items')
        .insertOne({ _id: `k1-${round}`, name: `k1 ${round}` } as Document);
      await d2.db
        .collection('items')
        .insertOne({ _id: `k2-${round}`, name: `k2 ${round}` } as Document);
      await atlas
        .collection('items')
        .insertOne({ _id: `ka-${round}`, name: `ka ${round}` } as Document);
      Object.assign(expected, {
        [`k1-${round}`]: `k1 ${round}`,
        [`k2-${round}`]: `k2 ${round}`,
        [`ka-${round}`]: `ka ${round}`,
      });
    };
    for (let round = 0; round < 5; round++) await write(round);
    await relays[0].kill9();
    for (let round = 5; round < 10; round++) await write(round);
    const next = startRelay();
    await next.active();
    for (let round = 10; round < 15; round++) await write(round);
    await converged(expected);
    expect((await jsm.streams.info('SYNC_PUSH')).state.messages).toBe(0);

    // Every state is on the changes stream once: no (collection, id, version) twice.
    const info = await jsm.streams.info('SYNC_CHANGES');
    const seen = new Map<string, number>();
    for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
      const stored = await jsm.streams.getMessage('SYNC_CHANGES', { seq });
      if (!stored) continue;
      const m = decodeFleetMessage(stored.data);
      const key = `${m.collection}/${String(m.id)}/${m.stamp.v}`;
      seen.set(key, (seen.get(key) ?? 0) + 1);
    }
    const duplicated = [...seen].filter(([, n]) => n > 1);
    expect(duplicated).toEqual([]);
    // And nothing lost on the stream: every document's current Atlas version is on it.
    const onAtlas = await atlas.collection('items').find({}).toArray();
    for (const doc of onAtlas)
      expect(seen.has(`items/${String(doc._id)}/${doc._sync.v}`)).toBe(true);
  }, 180_000);
});
