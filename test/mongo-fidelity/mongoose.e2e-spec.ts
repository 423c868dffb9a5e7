import mongoose, { Connection, Schema } from 'mongoose';
import { useMongoServers, waitFor } from '../support/mongo-harness';
import { useClosers, useDbNames } from './fidelity-support';

/**
 * The Mongoose features the engine hooks into: connecting to the replica-set
 * URI, Model.watch(), document and query middleware, `$where` as an extra
 * save filter (optimistic concurrency) and writing a path the schema does not
 * declare (`_sync`).
 */
describe('mongo fidelity: mongoose 8', () => {
  const harness = useMongoServers(1, { name: 'fid-mongoose' });
  const dbName = useDbNames(harness);
  const closers = useClosers();
  let conn: Connection;
  const calls: string[] = [];

  const schema = new Schema({ name: String, ver: Number }, { strict: true });
  schema.pre('validate', function () {
    calls.push('pre validate');
  });
  schema.pre('save', function () {
    calls.push(`pre save (isNew=${this.isNew})`);
  });
  schema.pre('updateOne', { document: false, query: true }, function () {
    calls.push(`pre updateOne ${JSON.stringify(this.getUpdate())}`);
  });
  schema.pre('findOneAndUpdate', function () {
    calls.push(`pre findOneAndUpdate ${JSON.stringify(this.getUpdate())}`);
  });
  schema.pre('deleteOne', { document: false, query: true }, function () {
    calls.push(`pre deleteOne ${JSON.stringify(this.getFilter())}`);
  });

  beforeAll(async () => {
    // The harness URI (directConnection) plus a database name in the path.
    const uri = new URL(harness.servers[0].uri);
    uri.pathname = `/${dbName('mg')}`;
    conn = await mongoose.createConnection(uri.toString()).asPromise();
  });
  afterAll(async () => {
    await conn?.close();
  });
  beforeEach(() => {
    calls.length = 0;
  });

  const model = (name: string) => conn.model(name, schema.clone());

  it('connects to the replica-set URI and sees a writable primary', async () => {
    expect(conn.readyState).toBe(1);
    const hello = await conn.db!.admin().command({ hello: 1 });
    expect(hello.isWritablePrimary).toBe(true);
    expect(typeof hello.setName).toBe('string');
  });

  it('Model.watch() delivers insert, update and delete events', async () => {
    const Thing = model('WatchedThing');
    await Thing.createCollection();
    const hello = await conn.db!.admin().command({ hello: 1 });
    const stream = Thing.watch([], {
      fullDocument: 'updateLookup',
      startAtOperationTime: hello.lastWrite.opTime.ts,
    });
    closers.add(() => stream.close());
    const events: any[] = [];
    stream.on('change', (e) => events.push(e));

    const doc = await Thing.create({ name: 'a', ver: 1 });
    await Thing.updateOne({ _id: doc._id }, { $set: { name: 'b' } });
    await Thing.deleteOne({ _id: doc._id });

    const mine = await waitFor(
      () => {
        const own = events.filter((e) => String(e.documentKey?._id) === String(doc._id));
        return own.length >= 3 ? own : undefined;
      },
      { message: 'three change events from Model.watch()' },
    );
    expect(mine!.map((e) => e.operationType)).toEqual(['insert', 'update', 'delete']);
    expect(mine![0].fullDocument.name).toBe('a');
  });

  it('document middleware (pre validate, pre save) and query middleware (pre updateOne, findOneAndUpdate, deleteOne) fire', async () => {
    const Thing = model('HookedThing');
    const doc = new Thing({ name: 'x', ver: 1 });
    await doc.save();
    doc.name = 'y';
    await doc.save();
    await Thing.updateOne({ _id: doc._id }, { $set: { name: 'z' } });
    await Thing.findOneAndUpdate({ _id: doc._id }, { $set: { name: 'w' } });
    await Thing.deleteOne({ _id: doc._id });

    expect(calls).toEqual([
      'pre validate',
      'pre save (isNew=true)',
      'pre validate',
      'pre save (isNew=false)',
      'pre updateOne {"$set":{"name":"z"}}',
      'pre findOneAndUpdate {"$set":{"name":"w"}}',
      `pre deleteOne {"_id":"${String(doc._id)}"}`,
    ]);
  });

  it('doc.$where adds a filter to the save of an existing document: no match gives DocumentNotFoundError and writes nothing', async () => {
    const Thing = model('GuardedThing');
    const created = await Thing.create({ name: 'v1', ver: 1 });
    const doc = (await Thing.findById(created._id))!;

    doc.name = 'stale write';
    doc.$where = { ver: 0 };
    const err = await doc.save().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(mongoose.Error.DocumentNotFoundError);
    expect((await Thing.findById(created._id).lean())!.name).toBe('v1');

    doc.$where = { ver: 1 };
    doc.ver = 2;
    await doc.save();
    expect(await Thing.findById(created._id).lean()).toMatchObject({ name: 'stale write', ver: 2 });
  });

  it("doc.set('_sync', value, undefined, {strict: false}) persists a path a strict schema does not declare", async () => {
    const Thing = model('SyncedThing');
    const doc = new Thing({ name: 'a', ver: 1 });
    doc.set('_sync', { o: 'me', v: 3 }, undefined, { strict: false });
    // A plain assignment of an unknown path is dropped by the strict schema.
    doc.set('ignored', true);
    await doc.save();

    const raw = await conn
      .db!.collection(Thing.collection.collectionName)
      .findOne({ _id: doc._id as any });
    expect(raw).toMatchObject({ name: 'a', _sync: { o: 'me', v: 3 } });
    expect(raw).not.toHaveProperty('ignored');

    // And on an update of an existing document.
    const loaded = (await Thing.findById(doc._id))!;
    loaded.set('_sync', { o: 'peer', v: 4 }, undefined, { strict: false });
    await loaded.save();
    const raw2 = await conn
      .db!.collection(Thing.collection.collectionName)
      .findOne({ _id: doc._id as any });
    expect(raw2!._sync).toEqual({ o: 'peer', v: 4 });
  });
});
