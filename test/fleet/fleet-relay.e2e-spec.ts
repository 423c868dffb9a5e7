import { INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { Consumer } from '@nats-io/jetstream';
import type { Db, Document, MongoClient } from 'mongodb';
import {
  decodeFleetMessage,
  encodeFleetMessage,
  ensureDeviceConsumer,
  FleetChangeMessage,
  NatsConnectionService,
  pushPartition,
  pushSubject,
} from '../../src/lib/fleet';
import { RelayModule, RelayService } from '../../src/lib/fleet/relay';
import { MongoHarness, TestMongoServer, uniqueDbName, waitFor } from '../support/mongo-harness';
import { FleetTestServer } from './fleet-test-server';

const PARTITIONS = 4;
let versionCounter = 0;
/** A fresh version of `origin`, later than every one made before in this suite. */
function version(origin: string): string {
  return `${String(Date.now()).padStart(15, '0')}-${String(++versionCounter).padStart(6, '0')}-${origin}`;
}

describe('the fleet relay between Atlas and JetStream (real nats-server, SecantusDB)', () => {
  const harness = new MongoHarness();
  let fleet: FleetTestServer;
  let atlasServer: TestMongoServer;
  let atlasClient: MongoClient;
  let atlas: Db;
  const atlasDbName = uniqueDbName('atlas');
  const relays: INestApplicationContext[] = [];
  let device1: NatsConnectionService;
  let changes: Consumer;
  let lastApplied = 0;

  async function startRelay(): Promise<INestApplicationContext> {
    const app = await NestFactory.createApplicationContext(
      RelayModule.forRoot({
        atlasUri: atlasServer.uri,
        atlasDbName,
        fleet: {
          servers: [fleet.server.url],
          user: 'relay',
          password: fleet.passwords.relay,
          pushPartitions: PARTITIONS,
          reconnectTimeWait: 100,
        },
        sync: { reconnectInterval: 200, maxReconnectInterval: 1000, leaseTtl: 3000 },
      }),
      { logger: process.env.SYNC_TEST_LOGS ? undefined : false, abortOnError: false },
    );
    await app.init();
    relays.push(app);
    return app;
  }

  /** What device-1 reads from the changes stream after what it read before. */
  async function readChanges(atLeast: number): Promise<FleetChangeMessage[]> {
    const read: FleetChangeMessage[] = [];
    await waitFor(
      async () => {
        const batch = await changes.fetch({ max_messages: 100, expires: 1000 });
        for await (const msg of batch) {
          read.push(decodeFleetMessage(msg.data));
          lastApplied = msg.seq;
          await msg.ackAck();
        }
        return read.length >= atLeast;
      },
      { timeoutMs: 20_000, message: `${atLeast} changes on the stream` },
    );
    return read;
  }

  async function push(
    device: NatsConnectionService,
    subjectDevice: string,
    message: FleetChangeMessage,
  ): Promise<void> {
    const encoded = encodeFleetMessage(message);
    await device
      .jetstream()
      .publish(
        pushSubject(subjectDevice, pushPartition(message.collection, message.id, PARTITIONS)),
        encoded.data,
        { msgID: encoded.msgId, headers: encoded.headers },
      );
  }

  beforeAll(async () => {
    [fleet, [atlasServer]] = await Promise.all([
      FleetTestServer.start('relay'),
      harness.start(1, { name: 'relay-atlas' }),
    ]);
    atlasClient = await harness.client(atlasServer);
    atlas = atlasClient.db(atlasDbName);
    await startRelay();
    device1 = fleet.device('device-1');
    await device1.connect();
    await ensureDeviceConsumer(await device1.jetstreamManager(), 'SYNC_CHANGES', 'device-1', 0);
    changes = await device1.jetstream().consumers.get('SYNC_CHANGES', 'device-1');
  }, 120_000);

  afterAll(async () => {
    for (const app of relays) await app.close().catch(() => undefined);
    await fleet?.destroy();
    await harness.stopAll();
  });

  it('adopts a direct Atlas write and publishes the stamped state, then a stamped one as it is', async () => {
    await atlas.collection('menuitems').insertOne({ _id: 'direct-1', name: 'Soup' } as Document);
    const [adopted] = await readChanges(1);
    expect(adopted).toMatchObject({ collection: 'menuitems', id: 'direct-1', op: 'upsert' });
    expect(adopted.stamp.o).toBe('atlas');
    expect(adopted.document).toMatchObject({ name: 'Soup', _sync: { v: adopted.stamp.v } });
    // The adoption's stamp is on Atlas too: the relay wrote it.
    expect(
      (await atlas.collection('menuitems').findOne({ _id: 'direct-1' } as Document))?._sync,
    ).toMatchObject({ v: adopted.stamp.v, o: 'atlas' });

    const stamp = { v: version('device-9'), o: 'device-9' };
    await atlas
      .collection('menuitems')
      .insertOne({ _id: 'stamped-1', name: 'Tea', _sync: stamp } as Document);
    const [forwarded] = await readChanges(1);
    expect(forwarded).toMatchObject({ id: 'stamped-1', stamp, document: { name: 'Tea' } });
  });

  it('a document deleted, re-created and deleted again on Atlas directly: both deletes are published', async () => {
    const items = atlas.collection('menuitems');
    const states = async (n: number) =>
      (await readChanges(n)).filter((m) => m.id === 'lives').map((m) => m.op);
    await items.insertOne({ _id: 'lives', name: 'first life' } as Document);
    expect(await states(1)).toEqual(['upsert']);
    await items.deleteOne({ _id: 'lives' } as Document);
    expect(await states(1)).toEqual(['delete']);
    await items.insertOne({ _id: 'lives', name: 'second life' } as Document);
    expect(await states(1)).toEqual(['upsert']);
    // The adoption of the re-creation removed the first delete's tombstone...
    expect(
      await atlas.collection('_sync_tombstones').countDocuments({ i: 'lives' } as Document),
    ).toBe(0);
    // ...so the second delete is known as made without the module, though the relay holds no copy.
    await items.deleteOne({ _id: 'lives' } as Document);
    expect(await states(1)).toEqual(['delete']);
  });

  it("applies a device's push to Atlas with the compare-and-set, and acknowledges it", async () => {
    const stamp = { v: version('device-1'), o: 'device-1' };
    await push(device1, 'device-1', {
      collection: 'menuitems',
      id: 'pushed-1',
      op: 'upsert',
      stamp,
      document: { _id: 'pushed-1', name: 'Bread', price: 3, _sync: stamp },
      base: null,
    });
    const onAtlas = await waitFor(
      () => atlas.collection('menuitems').findOne({ _id: 'pushed-1' } as Document),
      { message: 'the push on Atlas' },
    );
    expect(onAtlas).toMatchObject({ name: 'Bread', price: 3, _sync: { v: stamp.v } });
    // The relay forwards the new Atlas state too (device-1 skips it by origin).
    const forwarded = await readChanges(1);
    expect(forwarded.map((m) => m.stamp.v)).toEqual([stamp.v]);
    // Acknowledged only after Atlas: nothing is left in the work queue.
    const observer = fleet.relay();
    await observer.connect();
    const jsm = await observer.jetstreamManager();
    await waitFor(async () => (await jsm.streams.info('SYNC_PUSH')).state.messages === 0, {
      message: 'an empty push stream',
    });
  });

  it('applies a pushed delete (the tombstone reaches the changes stream)', async () => {
    const base = (await atlas.collection('menuitems').findOne({ _id: 'pushed-1' } as Document))!
      ._sync.v as string;
    const deleteStamp = { v: version('device-1'), o: 'device-1' };
    await push(device1, 'device-1', {
      collection: 'menuitems',
      id: 'pushed-1',
      op: 'delete',
      stamp: deleteStamp,
      base,
    });
    await waitFor(
      async () => !(await atlas.collection('menuitems').findOne({ _id: 'pushed-1' } as Document)),
      { message: 'the delete on Atlas' },
    );
    const [tombstone] = await readChanges(1);
    expect(tombstone).toMatchObject({ id: 'pushed-1', op: 'delete' });
  });

  it('terminates a push whose stamp names another device, and Atlas never sees it', async () => {
    const forged = { v: version('device-2'), o: 'device-2' };
    await push(device1, 'device-1', {
      collection: 'menuitems',
      id: 'forged-1',
      op: 'upsert',
      stamp: forged,
      document: { _id: 'forged-1', name: 'Forged', _sync: forged },
      base: null,
    });
    const relay = relays[0].get(RelayService);
    await waitFor(() => relay.status().pushes.rejected === 1, { message: 'the rejection' });
    expect(await atlas.collection('menuitems').findOne({ _id: 'forged-1' } as Document)).toBeNull();
  });

  it('a relay that takes over after another stopped publishes what came meanwhile, once', async () => {
    await relays[0].close();
    relays.shift();
    const stamp = { v: version('device-9'), o: 'device-9' };
    await atlas
      .collection('menuitems')
      .insertOne({ _id: 'meanwhile-1', name: 'Cake', _sync: stamp } as Document);
    const next = await startRelay();
    await waitFor(() => next.get(RelayService).status().role === 'active', {
      message: 'the new relay active',
    });
    const read = await readChanges(1);
    expect(read.map((m) => m.id)).toEqual(['meanwhile-1']);
    // Nothing else arrives: the resume token was saved after the earlier batches.
    const batch = await changes.fetch({ max_messages: 10, expires: 1500 });
    const extra: unknown[] = [];
    for await (const msg of batch) extra.push(decodeFleetMessage(msg.data).id);
    expect(extra).toEqual([]);
    expect(lastApplied).toBeGreaterThan(0);
  });

  it("two relays: each partition worked by exactly one (its lease), one document's pushes applied in order with no conflict", async () => {
    const second = await startRelay();
    const [a, b] = relays.map((r) => r.get(RelayService));
    await waitFor(
      () => {
        const owned = [...a.status().pushes.owned, ...b.status().pushes.owned].sort();
        return JSON.stringify(owned) === JSON.stringify([...Array(PARTITIONS).keys()]);
      },
      { message: 'every partition owned by exactly one relay' },
    );
    // A chain of edits of one document, each made on the one before, published back to back.
    let base: string | null = null;
    let last = '';
    for (let n = 0; n < 20; n++) {
      const stamp = { v: version('device-1'), o: 'device-1' };
      await push(device1, 'device-1', {
        collection: 'menuitems',
        id: 'chain-1',
        op: 'upsert',
        stamp,
        document: { _id: 'chain-1', name: `edit ${n}`, _sync: stamp },
        base,
      });
      base = last = stamp.v;
    }
    await waitFor(
      async () =>
        (await atlas.collection('menuitems').findOne({ _id: 'chain-1' } as Document))?._sync?.v ===
        last,
      { message: 'the last edit on Atlas' },
    );
    // In order: every edit was a fast-forward, none a conflict.
    const conflicts = await atlasClient
      .db(`${atlasDbName}_relay`)
      .collection('_sync_conflicts')
      .countDocuments({ documentId: 'chain-1' });
    expect(conflicts).toBe(0);
    await second.close();
    relays.pop();
  });
});
