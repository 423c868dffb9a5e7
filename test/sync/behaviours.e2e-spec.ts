import { Binary, Decimal128, Document, Long, ObjectId, Timestamp } from 'mongodb';
import { ATLAS_ORIGIN } from '../../src/lib/bidirectional-sync.constants';
import { versionFromClusterTime } from '../../src/lib/common/hybrid-logical-clock';
import { matchesStampDigest } from '../../src/lib/common/content-digest';
import { LocalChangeCaptureService } from '../../src/lib/capture/local-change-capture.service';
import { tombstoneOf } from '../../src/lib/common/engine-writes';
import { TombstoneRepository } from '../../src/lib/outbox/tombstone.repository';
import { AtlasDirectWriteAdopter } from '../../src/lib/processor/atlas-direct-write-adopter.service';
import { SyncCluster } from '../support/sync-cluster';

describe('excluded collections, the enabled switch, restarts, echoes and BSON types', () => {
  const cluster = new SyncCluster();
  beforeAll(() => cluster.start(2), 120_000);
  afterAll(() => cluster.stop());

  it('syncs excluded collections Local → Atlas only', async () => {
    const [a, b] = cluster.devices;
    await a.db.collection('logs').insertOne({ _id: 'log-a' as any, line: 'from a' });
    await cluster.atlas
      .collection('logs')
      .insertOne({ _id: 'log-atlas' as any, line: 'from atlas' });
    await cluster.everywhere(
      async (db) =>
        db !== cluster.atlas ||
        (await db.collection('logs').countDocuments({ _id: 'log-a' as any })) === 1,
      'pushed to Atlas',
    );
    await a.db.collection('orders').insertOne({ _id: 'marker-excl' as any });
    await cluster.everywhere(
      async (db) =>
        (await db.collection('orders').countDocuments({ _id: 'marker-excl' as any })) === 1,
      'a later change arrived',
    );
    expect(await b.db.collection('logs').countDocuments()).toBe(0);
    expect(await a.db.collection('logs').countDocuments({ _id: 'log-atlas' as any })).toBe(0);
  });

  it('stops pulling when disabled, keeps pushing, and resumes with nothing missed', async () => {
    const [a, b] = cluster.devices;
    await b.sync.setEnabled(false);
    await cluster.atlas.collection('orders').insertOne({
      _id: 'while-off' as any,
      _sync: { v: '001000000000100-000000-device-z', o: 'device-z' },
    });
    await b.db.collection('orders').insertOne({ _id: 'pushed-while-off' as any });
    await cluster.everywhere(
      async (db) =>
        (await db.collection('orders').countDocuments({ _id: 'pushed-while-off' as any })) === 1,
      'push continues while off',
    );
    expect(await b.db.collection('orders').countDocuments({ _id: 'while-off' as any })).toBe(0);
    await b.sync.setEnabled(true);
    await cluster.everywhere(
      async (db) =>
        (await db.collection('orders').countDocuments({ _id: 'while-off' as any })) === 1,
      'resumed losslessly',
    );
    expect(a.sync.isEnabled()).toBe(true);
  });

  it('resumes from the stored token after a restart, with no loss and no duplicate application', async () => {
    await cluster.restartDevice(1);
    const b = cluster.devices[1];
    const applied: string[] = [];
    const { EventEmitter2 } = await import('@nestjs/event-emitter');
    const { SyncEvents } = await import('../../src/lib/events/sync-events');
    b.get(EventEmitter2).on(
      SyncEvents.changeApplied,
      (e: { direction: string; documentId: string }) => {
        if (e.direction === 'atlasToLocal') applied.push(String(e.documentId));
      },
    );
    await b.sync.stop();
    for (let i = 0; i < 20; i++)
      await cluster.devices[0].db.collection('orders').insertOne({ _id: `restart-${i}` as any, i });
    await cluster.everywhere(
      async (db) =>
        db === b.db ||
        (await db.collection('orders').countDocuments({ i: { $exists: true } })) === 20,
      'on Atlas',
    );
    await cluster.restartDevice(1);
    const b2 = cluster.devices[1];
    b2.get(EventEmitter2).on(
      SyncEvents.changeApplied,
      (e: { direction: string; documentId: string }) => {
        if (e.direction === 'atlasToLocal') applied.push(String(e.documentId));
      },
    );
    await cluster.everywhere(
      async (db) => (await db.collection('orders').countDocuments({ i: { $exists: true } })) === 20,
      'caught up after restart',
    );
    await cluster.converged('orders');
    const restarts = applied.filter((id) => id.startsWith('restart-'));
    expect(new Set(restarts).size).toBe(restarts.length); // each applied once at most
    const health = await b2.sync.checkBidirectionalHealth();
    expect(health.rebaseline.state).toBe('idle'); // resumed from the token, no re-baseline
  });

  it('writes each logical change at most once per replica (no echo)', async () => {
    const [a, b] = cluster.devices;
    const atlasWrites: string[] = [];
    const watch = cluster.atlas.collection('echo').watch([], { fullDocument: 'updateLookup' });
    const localWrites: string[] = [];
    const watchB = b.db.collection('echo').watch([]);
    watch.on('change', (e: any) => atlasWrites.push(`${e.operationType}:${e.documentKey._id}`));
    watchB.on('change', (e: any) => localWrites.push(`${e.operationType}:${e.documentKey._id}`));
    try {
      await new Promise((r) => setTimeout(r, 300));
      for (let i = 0; i < 10; i++)
        await a.db.collection('echo').insertOne({ _id: `e${i}` as any, n: 0 });
      for (let i = 0; i < 10; i++)
        await a.db.collection('echo').updateOne({ _id: `e${i}` as any }, { $set: { n: 1 } });
      await cluster.everywhere(
        async (db) => (await db.collection('echo').countDocuments({ n: 1 })) === 10,
        'burst everywhere',
      );
      await cluster.converged('echo');
      await new Promise((r) => setTimeout(r, 1000)); // let any echo show up
    } finally {
      await watch.close();
      await watchB.close();
    }
    // Atlas: at most one insert and one update per document (the device coalesces, never echoes back).
    for (let i = 0; i < 10; i++) {
      expect(atlasWrites.filter((w) => w.endsWith(`:e${i}`)).length).toBeLessThanOrEqual(2);
      expect(localWrites.filter((w) => w.endsWith(`:e${i}`)).length).toBeLessThanOrEqual(2);
    }
    expect(atlasWrites.length).toBeGreaterThanOrEqual(10);
  });

  it('keeps BSON types through the round trip (Date, ObjectId, Decimal128, Long, Binary)', async () => {
    const [a, b] = cluster.devices;
    const value = {
      _id: new ObjectId(),
      at: new Date('2025-11-30T10:00:05.123Z'),
      ref: new ObjectId(),
      price: Decimal128.fromString('19.99'),
      big: Long.fromString('9007199254740993'),
      blob: new Binary(Buffer.from([1, 2, 3, 255])),
      nested: { list: [[1, 2], [new Date(0)]], none: null },
    };
    await a.db.collection('typed').insertOne(value);
    await cluster.everywhere(
      async (db) => (await db.collection('typed').countDocuments({ _id: value._id })) === 1,
      'typed everywhere',
    );
    const copy = await b.db
      .collection('typed')
      .findOne({ _id: value._id }, { promoteLongs: false });
    expect(copy?.at).toEqual(value.at);
    expect(copy?.ref).toEqual(value.ref);
    expect(copy?.price).toBeInstanceOf(Decimal128);
    expect(copy?.price.toString()).toBe('19.99');
    expect(copy?.big).toBeInstanceOf(Long);
    expect(copy?.big.toString()).toBe('9007199254740993');
    expect(Buffer.from(copy?.blob.buffer)).toEqual(Buffer.from([1, 2, 3, 255]));
    expect(copy?.nested).toEqual(value.nested);
  });

  it('adopts writes made on Atlas without the module, on every device', async () => {
    await cluster.atlas.collection('orders').insertOne({ _id: 'direct' as any, total: 1 });
    await cluster.everywhere(
      async (db) => (await db.collection('orders').findOne({ _id: 'direct' as any }))?.total === 1,
      'direct insert everywhere',
    );
    await cluster.atlas
      .collection('orders')
      .updateOne({ _id: 'direct' as any }, { $set: { total: 2 } });
    await cluster.everywhere(
      async (db) => (await db.collection('orders').findOne({ _id: 'direct' as any }))?.total === 2,
      'direct update everywhere',
    );
    await cluster.atlas.collection('orders').deleteOne({ _id: 'direct' as any });
    await cluster.everywhere(
      async (db) => (await db.collection('orders').countDocuments({ _id: 'direct' as any })) === 0,
      'direct delete everywhere',
    );
  });

  it('an adoption that lost its compare-and-set to one of an earlier content adopts the content Atlas holds', async () => {
    const [a, b] = cluster.devices;
    const orders = cluster.atlas.collection('orders');
    const id = 'adopt-race' as never;
    await orders.insertOne({ _id: id, total: 1 });
    await cluster.everywhere(
      async (db) => (await db.collection('orders').findOne({ _id: id }))?.total === 1,
      'adopted everywhere',
    );
    // The devices stop pulling, and the race is played by hand, in its bad order:
    // two direct updates keep the first adoption's stamp; the event of the first
    // is adopted only after the second landed (its compare-and-set still matches).
    await Promise.all([a.sync.setEnabled(false), b.sync.setEnabled(false)]);
    const adopted = (await orders.findOne({ _id: id }))!;
    await orders.updateOne({ _id: id }, { $set: { total: 2 } });
    await orders.updateOne({ _id: id }, { $set: { total: 3 } });
    const event = (total: number) => ({
      event: {
        operationType: 'update' as const,
        ns: { db: cluster.atlas.databaseName, coll: 'orders' },
        documentKey: { _id: id },
        fullDocument: { ...adopted, total } as Document,
      } as never,
    });
    const adopter = a.get(AtlasDirectWriteAdopter);
    await adopter.adoptWrites([event(2)]);
    expect(matchesStampDigest((await orders.findOne({ _id: id }))!)).toBe(false);
    // The second event was read with the same old stamp: its compare-and-set fails.
    await adopter.adoptWrites([event(3)]);
    const now = (await orders.findOne({ _id: id }))!;
    expect(now.total).toBe(3);
    expect(matchesStampDigest(now)).toBe(true);
    await Promise.all([a.sync.setEnabled(true), b.sync.setEnabled(true)]);
    await cluster.everywhere(
      async (db) => (await db.collection('orders').findOne({ _id: id }))?.total === 3,
      'the later content everywhere',
    );
  });

  it("a late adoption that stamped a later replace's content with its own older version is re-stamped by that replace's event", async () => {
    const [a, b] = cluster.devices;
    const orders = cluster.atlas.collection('orders');
    const id = 'adopt-late' as never;
    await orders.insertOne({ _id: id, total: 1 });
    await cluster.everywhere(
      async (db) => (await db.collection('orders').findOne({ _id: id }))?.total === 1,
      'adopted everywhere',
    );
    await Promise.all([a.sync.setEnabled(false), b.sync.setEnabled(false)]);
    // A direct update, then a direct replace (which drops the stamp). The
    // update's event is adopted only after the replace landed: its looked-up
    // post-image is the replace's content, stamped with the update's version.
    await orders.updateOne({ _id: id }, { $set: { total: 2 } });
    await orders.replaceOne({ _id: id }, { total: 3 });
    const seconds = Math.floor(Date.now() / 1000);
    const updatedAt = new Timestamp({ t: seconds + 10, i: 1 });
    const replacedAt = new Timestamp({ t: seconds + 20, i: 1 });
    const event = (operationType: 'update' | 'replace', clusterTime: Timestamp) => ({
      event: {
        operationType,
        ns: { db: cluster.atlas.databaseName, coll: 'orders' },
        documentKey: { _id: id },
        clusterTime,
        fullDocument: { _id: id, total: 3 } as Document,
      } as never,
    });
    const adopter = a.get(AtlasDirectWriteAdopter);
    await adopter.adoptWrites([event('update', updatedAt)]);
    const stampOf = async () => (await orders.findOne({ _id: id }))!._sync;
    expect((await stampOf()).v).toBe(versionFromClusterTime(updatedAt, ATLAS_ORIGIN));
    // The replace's event: its compare-and-set (no stamp yet) misses, and the
    // document found is stamped for its content, but under the older version.
    await b.get(AtlasDirectWriteAdopter).adoptWrites([event('replace', replacedAt)]);
    expect((await stampOf()).v).toBe(versionFromClusterTime(replacedAt, ATLAS_ORIGIN));
    expect(matchesStampDigest((await orders.findOne({ _id: id }))!)).toBe(true);
    await Promise.all([a.sync.setEnabled(true), b.sync.setEnabled(true)]);
    await cluster.everywhere(
      async (db) => (await db.collection('orders').findOne({ _id: id }))?.total === 3,
      'the replaced content everywhere',
    );
  });
  it('an engine delete read by the capture only after an apply re-created the document is not pushed', async () => {
    const [a] = cluster.devices;
    const id = 'reapplied' as never;
    const stamp = (ms: number) => ({ v: `00${ms}-000000-device-z`, o: 'device-z' });
    await cluster.atlas
      .collection('orders')
      .insertOne({ _id: id, total: 1, _sync: stamp(1000000000200) });
    await cluster.everywhere(
      async (db) => (await db.collection('orders').findOne({ _id: id }))?.total === 1,
      'the first state everywhere',
    );
    // While the capture lags, what the apply of a remote delete and then of a
    // remote re-creation leave behind: the re-creation removed the delete's
    // remote tombstone before the capture read the delete.
    const capture = a.get(LocalChangeCaptureService);
    await capture.stop();
    const tombstones = a.get(TombstoneRepository);
    const orders = a.db.collection('orders');
    await tombstones.upsert(a.db, [tombstoneOf('orders', id, stamp(1000000000300), 'remote')]);
    await orders.deleteOne({ _id: id });
    await orders.insertOne({ _id: id, total: 2, _sync: stamp(1000000000400) });
    await tombstones.remove(a.db, 'orders', [{ id, upTo: stamp(1000000000300).v }]);
    capture.start();
    await capture.caughtUp();
    expect(await a.db.collection('_sync_outbox').countDocuments({ op: 'delete' })).toBe(0);
    expect((await tombstones.find(a.db, 'orders', [id])).size).toBe(0);
    expect((await orders.findOne({ _id: id }))?.total).toBe(2);
  });
});
