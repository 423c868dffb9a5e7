import { Db, MongoClient, MongoServerError, ResumeToken } from 'mongodb';
import { useMongoServers } from '../support/mongo-harness';
import { AWAIT_MS, rejectionOf, StreamReader, useClosers, useDbNames } from './fidelity-support';

/**
 * What the streams emit when collections or databases disappear, so the engine
 * can tell "a peer dropped it" from "my stream is dead".
 */
describe('mongo fidelity: drop, rename and invalidate', () => {
  const harness = useMongoServers(1, { name: 'fid-ddl' });
  const dbName = useDbNames(harness);
  const closers = useClosers();
  let client: MongoClient;

  beforeAll(async () => {
    client = await harness.client(harness.servers[0]);
  });

  async function dbWith(prefix: string, ...collections: string[]): Promise<Db> {
    const db = client.db(dbName(prefix));
    for (const name of collections) await db.collection<any>(name).insertOne({ _id: name });
    return db;
  }

  const shape = (events: any[]) =>
    events.map((e) => ({ op: e.operationType, ns: e.ns, to: e.to }) as Record<string, unknown>);

  it('dropping a watched collection emits drop then invalidate and closes a collection-level stream', async () => {
    const db = await dbWith('drop', 'a');
    const reader = await StreamReader.open(
      db.collection('a').watch([], { maxAwaitTimeMS: AWAIT_MS }),
      closers,
    );
    await db.collection('a').drop();
    const events = (await reader.untilClosed()) as any[];

    expect(events.map((e) => e.operationType)).toEqual(['drop', 'invalidate']);
    expect(events[0].ns).toEqual({ db: db.databaseName, coll: 'a' });
    expect(events[1].ns).toBeUndefined();
    expect(reader.stream.closed).toBe(true);
  });

  it('renaming a watched collection emits rename (with `to`) then invalidate', async () => {
    const db = await dbWith('rename', 'a');
    const reader = await StreamReader.open(
      db.collection('a').watch([], { maxAwaitTimeMS: AWAIT_MS }),
      closers,
    );
    await db.collection('a').rename('a2');
    const events = (await reader.untilClosed()) as any[];

    expect(shape(events)).toEqual([
      {
        op: 'rename',
        ns: { db: db.databaseName, coll: 'a' },
        to: { db: db.databaseName, coll: 'a2' },
      },
      { op: 'invalidate', ns: undefined, to: undefined },
    ]);
  });

  it('after invalidate, startAfter(invalidate token) continues on the new collection; resumeAfter is refused with 260', async () => {
    const db = await dbWith('inv', 'a');
    const reader = await StreamReader.open(
      db.collection('a').watch([], { maxAwaitTimeMS: AWAIT_MS }),
      closers,
    );
    await db.collection('a').drop();
    const events = (await reader.untilClosed()) as any[];
    const invalidateToken = events[events.length - 1]._id as ResumeToken;
    await db.collection<any>('a').insertOne({ _id: 'reborn' });

    const after = await StreamReader.open(
      db.collection('a').watch([], { startAfter: invalidateToken, maxAwaitTimeMS: AWAIT_MS }),
      closers,
    );
    expect(((await after.one()) as any).documentKey).toEqual({ _id: 'reborn' });

    const err = await rejectionOf(async () => {
      const stream = db
        .collection('a')
        .watch([], { resumeAfter: invalidateToken, maxAwaitTimeMS: AWAIT_MS });
      closers.add(() => stream.close());
      await stream.tryNext();
    });
    expect(err).toBeInstanceOf(MongoServerError);
    expect(err.code).toBe(260);
    expect(err.codeName).toBe('InvalidResumeToken');
  });

  it('a database-level stream reports drop and rename without invalidating, and keeps streaming', async () => {
    const db = await dbWith('dbw', 'a', 'b');
    const reader = await StreamReader.open(db.watch([], { maxAwaitTimeMS: AWAIT_MS }), closers);
    await db.collection('a').drop();
    await db.collection('b').rename('b2');
    await db.collection<any>('b2').insertOne({ _id: 'still' });
    const events = (await reader.take(3)) as any[];

    expect(shape(events)).toEqual([
      { op: 'drop', ns: { db: db.databaseName, coll: 'a' }, to: undefined },
      {
        op: 'rename',
        ns: { db: db.databaseName, coll: 'b' },
        to: { db: db.databaseName, coll: 'b2' },
      },
      { op: 'insert', ns: { db: db.databaseName, coll: 'b2' }, to: undefined },
    ]);
    expect(reader.stream.closed).toBe(false);
  });

  it('dropDatabase emits one drop per collection, then dropDatabase, then invalidate, and closes a database-level stream', async () => {
    const db = await dbWith('dropdb', 'a', 'b', 'c');
    const reader = await StreamReader.open(db.watch([], { maxAwaitTimeMS: AWAIT_MS }), closers);
    await db.dropDatabase();
    const events = (await reader.untilClosed()) as any[];

    const drops = events.filter((e) => e.operationType === 'drop');
    expect(drops.map((e) => e.ns.coll).sort()).toEqual(['a', 'b', 'c']);
    expect(events.slice(-2).map((e) => e.operationType)).toEqual(['dropDatabase', 'invalidate']);
    expect(events[events.length - 2].ns).toEqual({ db: db.databaseName });
    expect(events).toHaveLength(5);
  });

  it('a stream on another database sees none of it', async () => {
    const watched = await dbWith('watched', 'w');
    const other = await dbWith('other', 'x');
    const reader = await StreamReader.open(
      watched.watch([], { maxAwaitTimeMS: AWAIT_MS }),
      closers,
    );
    await other.collection('x').rename('x2');
    await other.dropDatabase();
    await watched.collection<any>('w').insertOne({ _id: 'sentinel' });
    const event = (await reader.one()) as any;
    expect([event.operationType, event.documentKey]).toEqual(['insert', { _id: 'sentinel' }]);
  });
});
