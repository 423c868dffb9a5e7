import { Db, ObjectId } from 'mongodb';
import type { Model } from 'mongoose';
import { SYNC_COLLECTIONS } from '../../src/lib/bidirectional-sync.constants';
import { documentKeyOf } from '../../src/lib/common/sync-stamp';
import { SyncCaptureError } from '../../src/lib/errors/sync.errors';
import { serverFlavour } from '../mongo-fidelity/fidelity-support';
import {
  itUnless,
  needsEmbeddedServers,
  usingExternalServers,
  waitFor,
} from '../support/mongo-harness';
import { SyncCluster } from '../support/sync-cluster';
import { MenuItem } from '../support/sync-device';

/** Needs the embedded server's `--standalone` flag (external servers are replica sets). */
const itStandaloneServer: jest.It = itUnless(needsEmbeddedServers);

/**
 * Device 0's local MongoDB is a standalone server (no change streams): its
 * host applies syncCapturePlugin and the module captures model writes from
 * the plugin's dirty markers. Device 1 is a replica-set device as usual.
 * Against external servers (replica sets) device 0 forces the plugin mode.
 */
describe('standalone local server: capture through the Mongoose plugin', () => {
  const cluster = new SyncCluster();
  let Items: Model<MenuItem>;
  let local: Db;

  beforeAll(async () => {
    await cluster.start(
      2,
      (i) =>
        i === 0
          ? {
              capturePlugin: true,
              options: usingExternalServers ? { localCapture: 'mongoose-plugin' } : {},
            }
          : {},
      (i) => (i === 0 ? { standalone: true } : {}),
    );
    useDevice0();
  }, 120_000);
  afterAll(() => cluster.stop());

  function useDevice0(): void {
    Items = cluster.devices[0].connection.model<MenuItem>(MenuItem.name);
    local = cluster.devices[0].db;
  }

  const items = (db: Db) => db.collection('menuitems');
  const priceEverywhere = (id: unknown, price: number | undefined, message: string) =>
    cluster.everywhere(
      async (db) => (await items(db).findOne({ _id: id as ObjectId }))?.price === price,
      message,
    );
  const goneEverywhere = (ids: unknown[], message: string) =>
    cluster.everywhere(
      async (db) => (await items(db).countDocuments({ _id: { $in: ids as ObjectId[] } })) === 0,
      message,
    );
  /** Waits until device 0 has captured and pushed everything (no armed marker, empty outbox). */
  const settled = () =>
    waitFor(
      async () =>
        (await local.collection(SYNC_COLLECTIONS.dirty).countDocuments({ seen: false })) === 0 &&
        (await cluster.devices[0].sync.flush()) >= 0 &&
        (await local.collection(SYNC_COLLECTIONS.outbox).countDocuments()) === 0,
      { message: 'device 0 captured and pushed everything' },
    );

  itStandaloneServer(
    'the standalone server has no setName and refuses change streams (40573), so auto picks the plugin',
    async () => {
      const hello = await local.command({ hello: 1 });
      expect(hello.setName).toBeUndefined();
      expect(hello.isWritablePrimary).toBe(true);
      const stream = local.watch([], { maxAwaitTimeMS: 100 });
      await expect(stream.tryNext()).rejects.toMatchObject({ code: 40573 });
      await stream.close();

      // Healthy once the Atlas listener connected too.
      const a = await waitFor(
        async () => {
          const health = await cluster.devices[0].sync.checkBidirectionalHealth();
          return health.health === 'healthy' ? health : undefined;
        },
        { message: 'device 0 healthy' },
      );
      expect(a?.localCapture).toEqual({
        mode: 'mongoose-plugin',
        running: true,
        connected: true,
        lastError: null,
      });
      const b = await cluster.devices[1].sync.checkBidirectionalHealth();
      expect(b.localCapture).toMatchObject({ mode: 'change-stream', running: true });
    },
  );

  itStandaloneServer(
    'DIVERGENCE D8: a standalone SecantusDB runs multi-document transactions (mongod refuses them)',
    async () => {
      const client = await cluster.harness.client(cluster.localServers[0]);
      expect(await serverFlavour(client)).toBe('secantus');
      const session = client.startSession();
      try {
        const outcome = await session
          .withTransaction(() =>
            client.db(local.databaseName).collection('txn_probe').insertOne({}, { session }),
          )
          .then(
            () => 'committed',
            (err: { code?: number }) => err.code,
          );
        // mongod: 20 IllegalOperation "Transaction numbers are only allowed on a replica set member or mongos".
        expect(outcome).toBe('committed');
      } finally {
        await session.endSession();
      }
    },
  );

  it('captures save, create, insertOne and insertMany (with and without ids)', async () => {
    const saved = await new Items({ name: 'Latte', price: 3 }).save();
    const [created] = await Items.create([{ name: 'Mocha', price: 4 }]);
    const inserted = await Items.insertOne({ name: 'Flat white', price: 5 });
    const givenId = new ObjectId();
    const many = await Items.insertMany([
      { name: 'Tea', price: 1 },
      { _id: givenId, name: 'Chai', price: 2 },
    ]);
    const lean = await Items.insertMany([{ name: 'Lean', price: 6 }], { lean: true });
    await priceEverywhere(saved._id, 3, 'save everywhere');
    await priceEverywhere(created._id, 4, 'create everywhere');
    await priceEverywhere(inserted._id, 5, 'insertOne everywhere');
    await priceEverywhere(many[0]._id, 1, 'insertMany (id assigned by Mongoose) everywhere');
    await priceEverywhere(givenId, 2, 'insertMany (id given) everywhere');
    await priceEverywhere(lean[0]._id, 6, 'lean insertMany everywhere');

    saved.price = 30;
    await saved.save();
    await priceEverywhere(saved._id, 30, 'save of an existing document everywhere');
    const onAtlas = await items(cluster.atlas).findOne({ _id: saved._id });
    expect(onAtlas?._sync).toMatchObject({ o: 'device-a' });
  });

  it('captures updateOne, updateMany, findOneAndUpdate, findOneAndReplace and replaceOne', async () => {
    const docs = await Items.insertMany([
      { name: 'A', price: 1, category: 'u' },
      { name: 'B', price: 1, category: 'u' },
      { name: 'C', price: 1, category: 'u' },
      { name: 'D', price: 1, category: 'u' },
    ]);
    const [a, b, c, d] = docs.map((x) => x._id);
    await priceEverywhere(d, 1, 'inserted everywhere');
    await Items.updateOne({ _id: a }, { $set: { price: 10 } });
    await Items.updateMany({ category: 'u', _id: { $ne: a } }, { $set: { price: 20 } });
    await priceEverywhere(b, 20, 'updateMany everywhere');
    await Items.findOneAndUpdate({ _id: c }, { $inc: { price: 5 } });
    await Items.replaceOne({ _id: b }, { name: 'B2', price: 30 });
    await Items.findOneAndReplace({ _id: d }, { name: 'D2', price: 40 }, { new: true });
    await docs[0].updateOne({ $set: { category: 'doc-update' } });
    await priceEverywhere(a, 10, 'updateOne everywhere');
    await priceEverywhere(c, 25, 'updateMany then findOneAndUpdate everywhere');
    await priceEverywhere(b, 30, 'replaceOne everywhere');
    await priceEverywhere(d, 40, 'findOneAndReplace everywhere');
    await cluster.everywhere(
      async (db) => (await items(db).findOne({ _id: a }))?.category === 'doc-update',
      'document updateOne everywhere',
    );
    const replaced = await items(cluster.devices[1].db).findOne({ _id: b });
    expect(replaced).toMatchObject({ name: 'B2', price: 30 });
    expect(replaced).not.toHaveProperty('category');
  });

  it('captures upserts, by _id and with ids only known after the write', async () => {
    const byId = new ObjectId();
    await Items.updateOne(
      { _id: byId },
      { $set: { name: 'Upsert by id', price: 7 } },
      { upsert: true },
    );
    await Items.updateOne({ name: 'Upsert by name' }, { $set: { price: 8 } }, { upsert: true });
    await Items.findOneAndUpdate(
      { name: 'Upsert, old image' },
      { $set: { price: 9 } },
      { upsert: true, new: false },
    );
    await Items.replaceOne(
      { name: 'Upsert replace' },
      { name: 'Upsert replace', price: 11 },
      {
        upsert: true,
      },
    );
    await priceEverywhere(byId, 7, 'upsert by _id everywhere');
    for (const [name, price] of [
      ['Upsert by name', 8],
      ['Upsert, old image', 9],
      ['Upsert replace', 11],
    ] as const)
      await cluster.everywhere(
        async (db) => (await items(db).findOne({ name }))?.price === price,
        `${name} everywhere`,
      );
  });

  it('captures deleteOne, deleteMany, findOneAndDelete, document deleteOne and bulkWrite', async () => {
    const docs = await Items.insertMany([
      { name: 'D1', price: 1, category: 'd' },
      { name: 'D2', price: 1, category: 'd' },
      { name: 'D3', price: 1 },
      { name: 'D4', price: 1 },
      { name: 'D5', price: 1 },
      { name: 'D6', price: 1 },
    ]);
    const ids = docs.map((x) => x._id);
    await priceEverywhere(ids[5], 1, 'inserted everywhere');
    await Items.deleteOne({ _id: ids[2] });
    await Items.deleteMany({ category: 'd' });
    await Items.findOneAndDelete({ _id: ids[3] });
    await docs[4].deleteOne();
    await goneEverywhere(ids.slice(0, 5), 'deletes everywhere');

    const fresh = new ObjectId();
    const upserted = new ObjectId();
    await Items.bulkWrite([
      { insertOne: { document: { _id: fresh, name: 'Bulk', price: 7 } as any } },
      { insertOne: { document: { name: 'Bulk, id from Mongoose', price: 12 } as any } },
      { updateOne: { filter: { _id: ids[5] }, update: { $set: { price: 8 } } } },
      { updateMany: { filter: { name: 'Bulk' }, update: { $set: { category: 'bulk' } } } },
      {
        updateOne: {
          filter: { _id: upserted },
          update: { $set: { name: 'Bulk upsert', price: 13 } },
          upsert: true,
        },
      },
      { deleteOne: { filter: { name: 'Latte' } } },
    ]);
    await priceEverywhere(fresh, 7, 'bulk insert everywhere');
    await priceEverywhere(ids[5], 8, 'bulk update everywhere');
    await priceEverywhere(upserted, 13, 'bulk upsert everywhere');
    await cluster.everywhere(
      async (db) =>
        (await items(db).findOne({ name: 'Bulk, id from Mongoose' }))?.price === 12 &&
        (await items(db).findOne({ _id: fresh }))?.category === 'bulk' &&
        (await items(db).countDocuments({ name: 'Latte' })) === 0,
      'bulk insert without id, updateMany and deleteOne everywhere',
    );
    const markers = await local.collection(SYNC_COLLECTIONS.dirty).find().toArray();
    expect(markers.every((m) => m.c === 'menuitems')).toBe(true);
  });

  it('pushes nothing for a no-op or failed write', async () => {
    const doc = await Items.create({ name: 'Steady', price: 5 });
    await priceEverywhere(doc._id, 5, 'created everywhere');
    await settled();
    const before = (await items(cluster.atlas).findOne({ _id: doc._id }))?._sync;
    await Items.updateOne({ _id: doc._id }, { $set: { price: 5 } }); // no-op
    await Items.updateMany({ name: 'nothing matches this' }, { $set: { price: 1 } });
    await expect(Items.create({ price: -1 })).rejects.toThrow(/validation/i);
    await expect(Items.create({ _id: doc._id, name: 'Duplicate' })).rejects.toMatchObject({
      code: 11000,
    });
    await settled();
    expect(await local.collection(SYNC_COLLECTIONS.outbox).countDocuments()).toBe(0);
    expect((await items(cluster.atlas).findOne({ _id: doc._id }))?._sync).toEqual(before);
  });

  it('does not push back the remote changes the engine applies through the model', async () => {
    const doc = await Items.create({ name: 'Shared', price: 1 });
    await priceEverywhere(doc._id, 1, 'created everywhere');
    // Device 1 edits it; device 0 applies that through its model (the plugin sees the save).
    await items(cluster.devices[1].db).updateOne({ _id: doc._id }, { $set: { price: 2 } });
    await priceEverywhere(doc._id, 2, 'remote edit applied on device 0');
    const remote = (await items(cluster.atlas).findOne({ _id: doc._id }))?._sync;
    expect(remote).toMatchObject({ o: 'device-b' });
    await settled();
    // A restart settles every marker: the one of device 0's own create must not turn the applied state into a local edit.
    await cluster.restartDevice(0);
    useDevice0();
    await settled();
    for (const db of cluster.replicas)
      expect(await items(db).findOne({ _id: doc._id })).toMatchObject({ price: 2, _sync: remote });
  });

  it('does not capture writes made with the raw driver (the documented limitation)', async () => {
    // A document device 0 got from Atlas: no model write of its own marked it.
    const targetId = new ObjectId();
    await items(cluster.devices[1].db).insertOne({ _id: targetId, name: 'Raw target', price: 1 });
    await priceEverywhere(targetId, 1, 'created everywhere');
    const rawId = new ObjectId();
    await items(local).insertOne({ _id: rawId, name: 'Raw insert', price: 2 });
    await items(local).updateOne({ _id: targetId }, { $set: { price: 99 } });
    // A later model write is captured and pushed; the raw writes before it are not.
    const later = await Items.create({ name: 'After raw', price: 3 });
    await priceEverywhere(later._id, 3, 'the later model write everywhere');
    await settled();
    expect(await items(cluster.atlas).countDocuments({ _id: rawId })).toBe(0);
    expect((await items(cluster.atlas).findOne({ _id: targetId }))?.price).toBe(1);
    expect((await items(cluster.devices[1].db).findOne({ _id: targetId }))?.price).toBe(1);
    // Undo, so the next test's recovery scan does not pick the raw document up.
    await items(local).deleteOne({ _id: rawId });
    await items(local).updateOne({ _id: targetId }, { $set: { price: 1 } });
  });

  it('captures a write whose marker a crashed process left behind', async () => {
    const doc = await Items.create({ name: 'Before crash', price: 1 });
    await priceEverywhere(doc._id, 1, 'created everywhere');
    await settled();
    await cluster.devices[0].close();
    // What a process that died after the marker and the write (before its capture) leaves.
    const client = await cluster.harness.client(cluster.localServers[0]);
    const db = client.db(local.databaseName);
    await db
      .collection(SYNC_COLLECTIONS.dirty)
      .replaceOne(
        { _id: documentKeyOf('menuitems', doc._id) as any },
        { c: 'menuitems', i: doc._id, at: new Date() },
        { upsert: true },
      );
    await items(db).updateOne({ _id: doc._id }, { $set: { price: 2 } });
    // An insert whose id was unknown before the write, made before the process died.
    const lost = new ObjectId();
    await db.collection(SYNC_COLLECTIONS.dirty).updateOne(
      { _id: 'menuitems\u0000*' as any },
      {
        $set: { c: 'menuitems', at: new Date(), token: new ObjectId(), seen: true },
        $setOnInsert: { pendingInserts: true },
        $min: { from: ObjectId.createFromTime(Math.floor(Date.now() / 1000) - 60) },
      },
      { upsert: true },
    );
    await items(db).insertOne({ _id: lost, name: 'Inserted before crash', price: 3 });

    await cluster.restartDevice(0);
    useDevice0();
    await priceEverywhere(doc._id, 2, 'the marked write everywhere');
    await priceEverywhere(lost, 3, 'the insert found by the pending-inserts marker everywhere');
    await settled();
    expect(
      await local.collection(SYNC_COLLECTIONS.dirty).countDocuments({ pendingInserts: true }),
    ).toBe(0);
  });

  it('fails a model write whose marker cannot be recorded, instead of making it unrecorded', async () => {
    const id = new ObjectId();
    // A validator on _sync_dirty that refuses every marker stands in for a failing marker write.
    await local.command({
      collMod: SYNC_COLLECTIONS.dirty,
      validator: { $expr: { $eq: [1, 0] } },
      validationAction: 'error',
    });
    try {
      await expect(Items.create({ _id: id, name: 'Unrecorded', price: 1 })).rejects.toBeInstanceOf(
        SyncCaptureError,
      );
      expect(await items(local).countDocuments({ _id: id })).toBe(0);
    } finally {
      await local.command({
        collMod: SYNC_COLLECTIONS.dirty,
        validator: {},
        validationAction: 'error',
      });
    }
    await Items.create({ _id: id, name: 'Recorded', price: 1 });
    await priceEverywhere(id, 1, 'recorded once markers can be written');
  });
});
