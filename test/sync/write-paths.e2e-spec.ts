import { ObjectId } from 'mongodb';
import type { Model } from 'mongoose';
import { MonitorService } from '../../src/lib/monitor/monitor.service';
import { SyncCluster } from '../support/sync-cluster';
import { MenuItem } from '../support/sync-device';

/** Every way a host can write locally reaches Atlas and the other device. */
describe('local write capture', () => {
  const cluster = new SyncCluster();
  let Items: Model<MenuItem>;

  beforeAll(async () => {
    await cluster.start(2);
    Items = cluster.devices[0].connection.model<MenuItem>(MenuItem.name);
  }, 120_000);
  afterAll(() => cluster.stop());

  const price = (id: ObjectId) => async (db: import('mongodb').Db) =>
    (await db.collection('menuitems').findOne({ _id: id }))?.price;
  const hasPrice = (id: ObjectId, value: number | undefined, message: string) =>
    cluster.everywhere(async (db) => (await price(id)(db)) === value, message);
  const gone = (ids: ObjectId[], message: string) =>
    cluster.everywhere(
      async (db) => (await db.collection('menuitems').countDocuments({ _id: { $in: ids } })) === 0,
      message,
    );

  it('captures save, create and insertMany', async () => {
    const saved = await new Items({ name: 'Latte', price: 3 }).save();
    const [created] = await Items.create([{ name: 'Mocha', price: 4 }]);
    const many = await Items.insertMany([
      { name: 'Tea', price: 1 },
      { name: 'Chai', price: 2 },
    ]);
    await hasPrice(saved._id, 3, 'save everywhere');
    await hasPrice(created._id, 4, 'create everywhere');
    await hasPrice(many[1]._id, 2, 'insertMany everywhere');
  });

  it('captures updateOne, updateMany, findOneAndUpdate and replaceOne', async () => {
    const docs = await Items.insertMany([
      { name: 'A', price: 1, category: 'u' },
      { name: 'B', price: 1, category: 'u' },
      { name: 'C', price: 1, category: 'u' },
    ]);
    const [a, b, c] = docs.map((d) => d._id);
    await hasPrice(c, 1, 'inserted everywhere');
    await Items.updateOne({ _id: a }, { $set: { price: 10 } });
    await Items.updateMany({ category: 'u', _id: { $ne: a } }, { $set: { price: 20 } });
    await Items.findOneAndUpdate({ _id: c }, { $inc: { price: 5 } });
    await Items.replaceOne({ _id: b }, { name: 'B2', price: 30 });
    await hasPrice(a, 10, 'updateOne everywhere');
    await hasPrice(c, 25, 'updateMany then findOneAndUpdate everywhere');
    await hasPrice(b, 30, 'replaceOne everywhere');
    const replaced = await cluster.devices[1].db.collection('menuitems').findOne({ _id: b });
    expect(replaced).toMatchObject({ name: 'B2', price: 30 });
    expect(replaced).not.toHaveProperty('category');
  });

  it('captures deleteOne, deleteMany and bulkWrite', async () => {
    const docs = await Items.insertMany([
      { name: 'D1', price: 1, category: 'd' },
      { name: 'D2', price: 1, category: 'd' },
      { name: 'D3', price: 1 },
      { name: 'D4', price: 1 },
    ]);
    const ids = docs.map((d) => d._id);
    await hasPrice(ids[3], 1, 'inserted everywhere');
    await Items.deleteOne({ _id: ids[2] });
    await Items.deleteMany({ category: 'd' });
    await gone(ids.slice(0, 3), 'deletes everywhere');
    const fresh = new ObjectId();
    await Items.bulkWrite([
      { insertOne: { document: { _id: fresh, name: 'Bulk', price: 7 } } },
      { updateOne: { filter: { _id: ids[3] }, update: { $set: { price: 8 } } } },
    ]);
    await hasPrice(fresh, 7, 'bulk insert everywhere');
    await hasPrice(ids[3], 8, 'bulk update everywhere');
  });

  it('captures writes made with the raw driver', async () => {
    const id = new ObjectId();
    await cluster.devices[0].db
      .collection('menuitems')
      .insertOne({ _id: id, name: 'Raw', price: 9 });
    await hasPrice(id, 9, 'raw insert everywhere');
    await cluster.devices[0].db.collection('menuitems').deleteOne({ _id: id });
    await gone([id], 'raw delete everywhere');
  });

  it('runs the host model hooks and validators on replicated data, and dead-letters invalid documents', async () => {
    const { hookRuns } = await import('../support/sync-device');
    const before = hookRuns.save;
    const id = new ObjectId();
    // Written on Atlas by another device: the receiving devices apply it through their model.
    await cluster.atlas.collection('menuitems').insertOne({
      _id: id,
      name: 'Via Atlas',
      price: 5,
      _sync: { v: '001000000000000-000000-device-z', o: 'device-z' },
    });
    await cluster.everywhere(
      async (db) => (await db.collection('menuitems').countDocuments({ _id: id })) === 1,
      'atlas insert on devices',
    );
    expect(hookRuns.save - before).toBeGreaterThanOrEqual(2);

    const invalid = new ObjectId();
    await cluster.atlas.collection('menuitems').insertOne({
      _id: invalid,
      price: -1,
      _sync: { v: '001000000000001-000000-device-z', o: 'device-z' },
    });
    const after = new ObjectId();
    await cluster.atlas.collection('menuitems').insertOne({
      _id: after,
      name: 'After',
      price: 1,
      _sync: { v: '001000000000002-000000-device-z', o: 'device-z' },
    });
    await cluster.everywhere(
      async (db) =>
        db.databaseName === cluster.atlasDbName ||
        (await db.collection('menuitems').countDocuments({ _id: after })) === 1,
      'stream goes on after an invalid document',
    );
    for (const device of cluster.devices) {
      expect(await device.db.collection('menuitems').countDocuments({ _id: invalid })).toBe(0);
      const letter = await device.db
        .collection('_sync_dead_letters')
        .findOne({ documentId: invalid });
      expect(letter).toMatchObject({ collection: 'menuitems', errorName: 'ValidationError' });
      expect(letter?.error).toMatch(/name/);
    }
    // Counted, and the listener is still streaming: the rejection did not stop sync.
    for (const device of cluster.devices) {
      expect(
        device.get(MonitorService).getDirectionalMetrics().deadLettered,
      ).toBeGreaterThanOrEqual(1);
      const health = await device.sync.checkBidirectionalHealth();
      expect(health.atlasListener).toMatchObject({ running: true, connected: true });
      expect(health.health).not.toBe('unhealthy');
    }
  });
});
