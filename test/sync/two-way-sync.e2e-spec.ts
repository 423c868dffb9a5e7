import { MongoClient, ObjectId } from 'mongodb';
import { MongoHarness, uniqueDbName, waitFor } from '../support/mongo-harness';
import { SyncDevice } from '../support/sync-device';

describe('bidirectional sync between three devices and Atlas', () => {
  const harness = new MongoHarness();
  let atlas: MongoClient;
  const atlasDbName = uniqueDbName('atlas');
  const devices: SyncDevice[] = [];

  beforeAll(async () => {
    const [atlasServer, ...locals] = await harness.start(4, { name: 'sync' });
    atlas = await harness.client(atlasServer);
    for (const [i, local] of locals.entries()) {
      devices.push(
        await SyncDevice.start({
          localUri: local.uri,
          localDbName: uniqueDbName(`dev${i}`),
          atlasUri: atlasServer.uri,
          atlasDbName,
          instanceId: `device-${'abc'[i]}`,
        }),
      );
    }
  }, 120_000);

  afterAll(async () => {
    await Promise.all(devices.map((d) => d.close()));
    await harness.stopAll();
  });

  const everywhere = (check: (db: import('mongodb').Db) => Promise<boolean>, message: string) =>
    waitFor(
      async () =>
        (await Promise.all([...devices.map((d) => d.db), atlas.db(atlasDbName)].map(check))).every(
          Boolean,
        ),
      { message },
    );

  it('propagates a create, an update and a delete from any device to every other device', async () => {
    const [a, b, c] = devices;
    const id = new ObjectId();
    await a.db.collection('menuitems').insertOne({ _id: id, name: 'Cappuccino', price: 25 });
    await everywhere(
      async (db) => (await db.collection('menuitems').findOne({ _id: id }))?.price === 25,
      'insert everywhere',
    );

    await b.db.collection('menuitems').updateOne({ _id: id }, { $set: { price: 30 } });
    await everywhere(
      async (db) => (await db.collection('menuitems').findOne({ _id: id }))?.price === 30,
      'update everywhere',
    );

    await c.db.collection('menuitems').deleteOne({ _id: id });
    await everywhere(
      async (db) => (await db.collection('menuitems').countDocuments({ _id: id })) === 0,
      'delete everywhere',
    );
  });

  it('syncs collections without a Mongoose model through the driver, with any _id type', async () => {
    const [a, b] = devices;
    await b.db.collection('orders').insertOne({ _id: 'order-1' as any, total: 12 });
    await everywhere(
      async (db) =>
        (await db.collection('orders').findOne({ _id: 'order-1' as any }))?.total === 12,
      'order everywhere',
    );
    await a.db
      .collection('orders')
      .updateOne({ _id: 'order-1' as any }, { $unset: { total: '' }, $set: { status: 'paid' } });
    await everywhere(async (db) => {
      const doc = await db.collection('orders').findOne({ _id: 'order-1' as any });
      return doc?.status === 'paid' && !('total' in doc);
    }, 'removed field everywhere');
  });
});
