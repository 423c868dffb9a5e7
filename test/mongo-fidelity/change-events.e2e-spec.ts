import {
  Binary,
  ChangeStreamDocument,
  ChangeStreamInsertDocument,
  ChangeStreamReplaceDocument,
  ChangeStreamUpdateDocument,
  Db,
  Decimal128,
  Long,
  MongoClient,
  ObjectId,
  Timestamp,
} from 'mongodb';
import { useMongoServers } from '../support/mongo-harness';
import { AWAIT_MS, StreamReader, useClosers, useDbNames } from './fidelity-support';

/**
 * Shape of the CRUD change events the sync engine turns into replication ops:
 * namespace, document key, cluster/wall time, update descriptions, lookups,
 * transactions and BSON fidelity.
 */
describe('mongo fidelity: CRUD change events', () => {
  const harness = useMongoServers(1, { name: 'fid-events' });
  const dbName = useDbNames(harness);
  const closers = useClosers();
  let client: MongoClient;

  beforeAll(async () => {
    client = await harness.client(harness.servers[0]);
  });

  async function freshDb(prefix: string, ...collections: string[]): Promise<Db> {
    const db = client.db(dbName(prefix));
    for (const name of collections) await db.createCollection(name);
    return db;
  }

  it('insert, update, replace and delete events carry ns, documentKey, clusterTime (Timestamp) and wallTime (Date)', async () => {
    const db = await freshDb('crud', 'items');
    const items = db.collection<{ _id: string; n?: number }>('items');
    const reader = await StreamReader.open(db.watch([], { maxAwaitTimeMS: AWAIT_MS }), closers);

    await items.insertOne({ _id: 'a', n: 1 });
    await items.updateOne({ _id: 'a' }, { $set: { n: 2 } });
    await items.replaceOne({ _id: 'a' }, { n: 3 });
    await items.deleteOne({ _id: 'a' });
    const events = await reader.take(4);

    expect(events.map((e) => e.operationType)).toEqual(['insert', 'update', 'replace', 'delete']);
    for (const e of events as any[]) {
      expect(e.ns).toEqual({ db: db.databaseName, coll: 'items' });
      expect(e.documentKey).toEqual({ _id: 'a' });
      expect(e.clusterTime).toBeInstanceOf(Timestamp);
      expect(e.wallTime).toBeInstanceOf(Date);
      expect(e._id).toEqual(expect.objectContaining({ _data: expect.any(String) }));
    }
    // clusterTime strictly increases across separate writes.
    const times = events.map((e: any) => (e.clusterTime as Timestamp).toBigInt());
    for (let i = 1; i < times.length; i++) expect(times[i] > times[i - 1]).toBe(true);

    const [insert, update, replace, del] = events as [
      ChangeStreamInsertDocument,
      ChangeStreamUpdateDocument,
      ChangeStreamReplaceDocument,
      ChangeStreamDocument,
    ];
    expect(insert.fullDocument).toEqual({ _id: 'a', n: 1 });
    // Without fullDocument options an update has no fullDocument; a replace always has one.
    expect(update.fullDocument).toBeUndefined();
    expect(update.updateDescription).toEqual({
      updatedFields: { n: 2 },
      removedFields: [],
      truncatedArrays: [],
    });
    expect(replace.fullDocument).toEqual({ _id: 'a', n: 3 });
    expect((del as any).fullDocument).toBeUndefined();
  });

  it('updateDescription reports dotted updatedFields, removedFields, whole arrays for $pop and truncatedArrays for a shrinking pipeline update', async () => {
    const db = await freshDb('upd', 'docs');
    const docs = db.collection<any>('docs');
    await docs.insertOne({
      _id: 1,
      nested: { x: 1, y: 2 },
      gone: true,
      tags: ['p', 'q', 'r'],
      arr: ['foo', { a: 'bar' }, 1, 2, 3],
    });
    const reader = await StreamReader.open(
      docs.watch<any, ChangeStreamUpdateDocument>([], { maxAwaitTimeMS: AWAIT_MS }),
      closers,
    );

    await docs.updateOne({ _id: 1 }, { $set: { 'nested.x': 5 }, $unset: { gone: '' } });
    await docs.updateOne({ _id: 1 }, { $push: { tags: 's' } } as any);
    await docs.updateOne({ _id: 1 }, { $pop: { tags: 1 } });
    await docs.updateOne({ _id: 1 }, [{ $set: { arr: ['foo', { a: 'bar' }] } }]);
    const [setUnset, push, pop, pipeline] = await reader.take(4);

    expect(setUnset.updateDescription).toEqual({
      updatedFields: { 'nested.x': 5 },
      removedFields: ['gone'],
      truncatedArrays: [],
    });
    expect(push.updateDescription.updatedFields).toEqual({ 'tags.3': 's' });
    // $pop is logged by MongoDB's modifier path as the whole new array, not as a truncation.
    expect(pop.updateDescription.updatedFields).toEqual({ tags: ['p', 'q', 'r'] });
    expect(pop.updateDescription.truncatedArrays).toEqual([]);
    // A computed (pipeline) update that shrinks an array reports truncatedArrays.
    expect(pipeline.operationType).toBe('update');
    expect(pipeline.updateDescription).toEqual({
      updatedFields: {},
      removedFields: [],
      truncatedArrays: [{ field: 'arr', newSize: 2 }],
    });
  });

  it("fullDocument 'updateLookup' returns the CURRENT document at read time, not the one at event time", async () => {
    const db = await freshDb('lookup', 'docs');
    const docs = db.collection<any>('docs');
    await docs.insertMany([
      { _id: 1, v: 0 },
      { _id: 2, v: 0 },
    ]);
    const reader = await StreamReader.open(
      docs.watch<any, ChangeStreamUpdateDocument>([], {
        fullDocument: 'updateLookup',
        maxAwaitTimeMS: AWAIT_MS,
      }),
      closers,
    );

    await docs.updateOne({ _id: 1 }, { $set: { v: 1 } });
    await docs.updateOne({ _id: 1 }, { $set: { v: 2 } });
    await docs.updateOne({ _id: 2 }, { $set: { v: 1 } });
    await docs.deleteOne({ _id: 2 });
    const [first, second, third] = await reader.take(3);

    // The first event's delta says v=1 but its looked-up document already has v=2.
    expect(first.updateDescription.updatedFields).toEqual({ v: 1 });
    expect(first.fullDocument).toEqual({ _id: 1, v: 2 });
    expect(second.fullDocument).toEqual({ _id: 1, v: 2 });
    // Deleted before the event was read: the lookup finds nothing and yields null.
    expect(third.fullDocument).toBeNull();
  });

  it('an update that changes nothing writes no oplog entry and emits no change event', async () => {
    const db = await freshDb('noop', 'docs');
    const docs = db.collection<any>('docs');
    await docs.insertOne({ _id: 1, v: 1, o: { a: 1 } });
    const reader = await StreamReader.open(docs.watch([], { maxAwaitTimeMS: AWAIT_MS }), closers);

    const same = await docs.updateOne({ _id: 1 }, { $set: { v: 1, 'o.a': 1 } });
    expect(same.matchedCount).toBe(1);
    expect(same.modifiedCount).toBe(0);
    const replaceSame = await docs.replaceOne({ _id: 1 }, { v: 1, o: { a: 1 } });
    expect(replaceSame.modifiedCount).toBe(0);
    await docs.insertOne({ _id: 'sentinel' });

    // The next event is the sentinel: neither no-op produced one.
    const next = await reader.one();
    expect(next.operationType).toBe('insert');
    expect((next as any).documentKey).toEqual({ _id: 'sentinel' });
  });

  it('events of a multi-document transaction share one clusterTime and carry lsid and txnNumber', async () => {
    const db = await freshDb('txn', 'a', 'b');
    const reader = await StreamReader.open(db.watch([], { maxAwaitTimeMS: AWAIT_MS }), closers);

    const session = client.startSession();
    try {
      await session.withTransaction(async () => {
        await db.collection<any>('a').insertOne({ _id: 1 }, { session });
        await db.collection<any>('b').insertOne({ _id: 2 }, { session });
        await db.collection<any>('a').updateOne({ _id: 1 }, { $set: { x: 1 } }, { session });
      });
    } finally {
      await session.endSession();
    }
    await db.collection<any>('a').insertOne({ _id: 3 });
    const events = (await reader.take(4)) as any[];

    expect(events.map((e) => [e.operationType, e.ns.coll])).toEqual([
      ['insert', 'a'],
      ['insert', 'b'],
      ['update', 'a'],
      ['insert', 'a'],
    ]);
    const txn = events.slice(0, 3);
    const times = new Set(txn.map((e) => (e.clusterTime as Timestamp).toString()));
    expect(times.size).toBe(1);
    for (const e of txn) {
      expect(e.lsid).toEqual({ id: expect.any(Binary) });
      expect(e.lsid).toEqual(txn[0].lsid);
      expect(Number(e.txnNumber)).toBeGreaterThan(0);
      expect(e.txnNumber).toEqual(txn[0].txnNumber);
    }
    // Each event has its own resume token even inside one transaction.
    expect(new Set(txn.map((e) => JSON.stringify(e._id))).size).toBe(3);
    // A write outside a transaction carries neither field.
    expect(events[3].lsid).toBeUndefined();
    expect(events[3].txnNumber).toBeUndefined();
  });

  it('BSON types survive a round trip through insert and update events (promoteLongs: false)', async () => {
    const db = await freshDb('bson', 'docs');
    const docs = db.collection<any>('docs');
    const reader = await StreamReader.open(
      docs.watch<any, any>([], { maxAwaitTimeMS: AWAIT_MS, promoteLongs: false }),
      closers,
    );
    const original = {
      _id: new ObjectId(),
      at: new Date(1_700_000_000_123),
      price: Decimal128.fromString('1234.5678901234567890'),
      small: Long.fromNumber(5),
      big: Long.fromString('9007199254740993'),
      bin: new Binary(Buffer.from([0, 1, 2, 255]), 0),
      uuid: new Binary(Buffer.alloc(16, 7), Binary.SUBTYPE_UUID),
      matrix: [[1, 2], [3, [4, [5]]], []],
      nothing: null,
      deep: { a: { b: { c: 'd', list: [{ e: 1 }] } } },
      ratio: 1.5,
      flag: false,
    };
    await docs.insertOne(original);
    await docs.updateOne(
      { _id: original._id },
      { $set: { big: Long.fromString('-9007199254740995'), 'deep.a.b.c': null } },
    );
    const [insert, update] = await reader.take(2);

    const full = insert.fullDocument;
    expect(full._id).toBeInstanceOf(ObjectId);
    expect(full._id.equals(original._id)).toBe(true);
    expect(full.at).toBeInstanceOf(Date);
    expect(full.at.getTime()).toBe(1_700_000_000_123);
    expect(full.price).toBeInstanceOf(Decimal128);
    expect(full.price.toString()).toBe('1234.5678901234567890');
    expect(full.small).toBeInstanceOf(Long);
    expect(full.small.toString()).toBe('5');
    expect(full.big.toString()).toBe('9007199254740993');
    expect(Buffer.from(full.bin.buffer).equals(Buffer.from([0, 1, 2, 255]))).toBe(true);
    expect(full.uuid.sub_type).toBe(Binary.SUBTYPE_UUID);
    expect(full.matrix).toEqual([[1, 2], [3, [4, [5]]], []]);
    expect(full).toHaveProperty('nothing', null);
    expect(full.deep).toEqual({ a: { b: { c: 'd', list: [{ e: 1 }] } } });
    expect(full.ratio).toBe(1.5);
    expect(full.flag).toBe(false);

    const fields = update.updateDescription.updatedFields;
    expect(fields.big).toBeInstanceOf(Long);
    expect(fields.big.toString()).toBe('-9007199254740995');
    expect(fields).toHaveProperty(['deep.a.b.c'], null);
  });

  it('useBigInt64 turns every int64 of a change event into a bigint', async () => {
    const db = await freshDb('bigint', 'docs');
    const docs = db.collection<any>('docs');
    const reader = await StreamReader.open(
      docs.watch<any, any>([], { maxAwaitTimeMS: AWAIT_MS, useBigInt64: true }),
      closers,
    );
    await docs.insertOne({ _id: 1, small: Long.fromNumber(5), big: Long.fromBigInt(2n ** 60n) });
    const { fullDocument } = await reader.one();
    expect(fullDocument.small).toBe(5n);
    expect(fullDocument.big).toBe(2n ** 60n);
  });
});
