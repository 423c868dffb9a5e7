import { BSON, Db, MongoClient, MongoServerError, ResumeToken, Timestamp } from 'mongodb';
import { useMongoServers, waitFor } from '../support/mongo-harness';
import {
  AWAIT_MS,
  itEmbeddedOnly,
  rejectionOf,
  StreamReader,
  useClosers,
  useDbNames,
} from './fidelity-support';

const { EJSON } = BSON;

/**
 * How the engine persists its position and picks up again: resume tokens
 * stored by another process, start times, postBatchResumeToken on an idle
 * stream, and what the server answers when the history is gone.
 */
describe('mongo fidelity: resuming change streams', () => {
  describe('resume tokens and start times (default server, noop heartbeat every 1 s)', () => {
    const harness = useMongoServers(1, { name: 'fid-resume' });
    const dbName = useDbNames(harness);
    const closers = useClosers();
    let client: MongoClient;

    beforeAll(async () => {
      client = await harness.client(harness.servers[0]);
    });

    /** A second process: a brand-new client that only knows what was stored. */
    const otherClient = () => harness.client(harness.servers[0]);

    async function storeToken(db: Db, token: ResumeToken): Promise<void> {
      await db.collection<any>('_tokens').insertOne({
        _id: 'stream',
        ejson: EJSON.stringify(token, { relaxed: false }),
        doc: token,
      });
    }

    it.each(['resumeAfter', 'startAfter'] as const)(
      '%s with a token stored by another client (as EJSON text and as a plain sub-document) continues after that event',
      async (option) => {
        const db = client.db(dbName('tok'));
        await db.createCollection('items');
        const items = db.collection<any>('items');
        const reader = await StreamReader.open(db.watch([], { maxAwaitTimeMS: AWAIT_MS }), closers);
        await items.insertOne({ _id: 1 });
        const first = await reader.one();
        await storeToken(db, first._id);
        await reader.stream.close();
        await items.insertMany([{ _id: 2 }, { _id: 3 }]);

        const other = await otherClient();
        const stored = await other.db(db.databaseName).collection<any>('_tokens').findOne();
        for (const token of [EJSON.parse(stored.ejson, { relaxed: false }), stored.doc]) {
          const resumed = await StreamReader.open(
            other.db(db.databaseName).watch([], { [option]: token, maxAwaitTimeMS: AWAIT_MS }),
            closers,
          );
          // The stored-token write itself (ns _tokens) is an event too.
          const events = (await resumed.take(3)) as any[];
          expect(events.map((e) => [e.ns.coll, e.documentKey._id])).toEqual([
            ['_tokens', 'stream'],
            ['items', 2],
            ['items', 3],
          ]);
          await resumed.stream.close();
        }
      },
    );

    it('startAtOperationTime is inclusive: starting at an event’s clusterTime replays that event', async () => {
      const db = client.db(dbName('sat'));
      await db.createCollection('items');
      const items = db.collection<any>('items');
      const reader = await StreamReader.open(db.watch([], { maxAwaitTimeMS: AWAIT_MS }), closers);
      await items.insertOne({ _id: 'x' });
      await items.insertOne({ _id: 'y' });
      const [x] = (await reader.take(2)) as any[];
      expect(x.clusterTime).toBeInstanceOf(Timestamp);

      const other = await otherClient();
      const replay = await StreamReader.open(
        other.db(db.databaseName).watch([], {
          startAtOperationTime: x.clusterTime,
          maxAwaitTimeMS: AWAIT_MS,
        }),
        closers,
      );
      const events = (await replay.take(2)) as any[];
      expect(events.map((e) => e.documentKey._id)).toEqual(['x', 'y']);
      expect(events[0]._id).toEqual(x._id);
    });

    it('an idle stream’s resume token (postBatchResumeToken) advances with the heartbeat, and resuming from it misses nothing', async () => {
      const db = client.db(dbName('pbrt'));
      await db.createCollection('items');
      const reader = await StreamReader.open(db.watch([], { maxAwaitTimeMS: AWAIT_MS }), closers);
      const initial = JSON.stringify(reader.resumeToken);
      expect(reader.resumeToken).toBeDefined();
      let tokenChanges = 0;
      reader.stream.on('resumeTokenChanged', () => tokenChanges++);

      // MongoDB's own noop writer runs every 10 s; SecantusDB's every 1 s here.
      const advanced = await waitFor(
        async () => {
          const event = await reader.stream.tryNext();
          if (event) throw new Error(`unexpected event ${JSON.stringify(event)}`);
          const now = JSON.stringify(reader.resumeToken);
          return now !== initial ? reader.resumeToken : undefined;
        },
        { timeoutMs: 25_000, message: 'the idle resume token to advance' },
      );
      expect(tokenChanges).toBeGreaterThan(0);
      await reader.stream.close();

      await db.collection<any>('items').insertOne({ _id: 'after' });
      const other = await otherClient();
      const resumed = await StreamReader.open(
        other.db(db.databaseName).watch([], {
          resumeAfter: advanced as ResumeToken,
          maxAwaitTimeMS: AWAIT_MS,
        }),
        closers,
      );
      expect(((await resumed.one()) as any).documentKey).toEqual({ _id: 'after' });
    }, 40_000);

    it('a garbage resume token fails the open with FailedToParse (9) and no ResumableChangeStreamError label', async () => {
      const db = client.db(dbName('bad'));
      await db.createCollection('items');
      const err = await rejectionOf(async () => {
        const stream = db.watch([], { resumeAfter: { _data: 'not-hex!' } });
        closers.add(() => stream.close());
        await stream.tryNext();
      });
      expect(err).toBeInstanceOf(MongoServerError);
      expect(err.code).toBe(9);
      expect(err.hasErrorLabel('ResumableChangeStreamError')).toBe(false);

      // Other malformed shapes are refused too (codes differ between servers).
      for (const token of [{ _data: 'aa' }, { notData: 1 }]) {
        const other = await rejectionOf(async () => {
          const stream = db.watch([], { resumeAfter: token });
          closers.add(() => stream.close());
          await stream.tryNext();
        });
        expect(other).toBeInstanceOf(MongoServerError);
      }
    });

    it('a database-level stream resumes from an idle token minted after DDL in that database', async () => {
      const db = client.db(dbName('ddl'));
      await db.createCollection('items');
      const reader = await StreamReader.open(db.watch([], { maxAwaitTimeMS: AWAIT_MS }), closers);
      await db.createCollection('later');
      await reader.idleTokens(3);
      const token = reader.resumeToken as ResumeToken;
      await reader.stream.close();
      await db.collection<any>('items').insertOne({ _id: 'next' });

      const resumed = await StreamReader.open(
        db.watch([], { resumeAfter: token, maxAwaitTimeMS: AWAIT_MS }),
        closers,
      );
      expect(((await resumed.one()) as any).documentKey).toEqual({ _id: 'next' });
    });
  });

  describe('without the noop heartbeat (noopHeartbeatSeconds: 0)', () => {
    const harness = useMongoServers(1, { name: 'fid-noheartbeat', noopHeartbeatSeconds: 0 });
    const dbName = useDbNames(harness);
    const closers = useClosers();
    let client: MongoClient;

    beforeAll(async () => {
      client = await harness.client(harness.servers[0]);
    });

    itEmbeddedOnly(
      'an idle stream’s resume token stays put until some write lands anywhere on the server (needs a server option; skipped on external servers)',
      async () => {
        const db = client.db(dbName('quiet'));
        await db.createCollection('items');
        const reader = await StreamReader.open(db.watch([], { maxAwaitTimeMS: AWAIT_MS }), closers);
        const initial = JSON.stringify(reader.resumeToken);

        // ~1.6 s of empty getMores: nothing is written, nothing moves.
        expect(await reader.idleTokens(8)).toEqual([initial]);

        // A write to an unrelated database moves the oplog, and with it the token.
        await client.db(dbName('elsewhere')).collection<any>('x').insertOne({ _id: 1 });
        await waitFor(
          async () => {
            await reader.idleTokens(1);
            return JSON.stringify(reader.resumeToken) !== initial;
          },
          { timeoutMs: 5_000, message: 'the token to move after an unrelated write' },
        );
      },
    );

    it('events dropped by the $match still advance the resume token, so a resume does not replay them', async () => {
      const db = client.db(dbName('filtered'));
      await db.createCollection('items');
      const reader = await StreamReader.open(
        db.watch([{ $match: { 'ns.coll': 'nothing-matches' } }], { maxAwaitTimeMS: AWAIT_MS }),
        closers,
      );
      const initial = JSON.stringify(reader.resumeToken);
      await db.collection<any>('items').insertMany([{ _id: 1 }, { _id: 2 }]);
      await waitFor(
        async () => {
          await reader.idleTokens(1);
          return JSON.stringify(reader.resumeToken) !== initial;
        },
        { timeoutMs: 5_000, message: 'the token to move past filtered events' },
      );
      const token = reader.resumeToken as ResumeToken;
      await db.collection<any>('items').insertOne({ _id: 'sentinel' });

      const unfiltered = await StreamReader.open(
        db.watch([], { resumeAfter: token, maxAwaitTimeMS: AWAIT_MS }),
        closers,
      );
      expect(((await unfiltered.one()) as any).documentKey).toEqual({ _id: 'sentinel' });
    });

    itEmbeddedOnly(
      'DIVERGENCE: a COLLECTION-level idle token minted right after DDL elsewhere in the database cannot be resumed on SecantusDB (13 Unauthorized) until another oplog entry lands',
      async () => {
        const db = client.db(dbName('collddl'));
        await db.createCollection('items');
        const items = db.collection<any>('items');
        const reader = await StreamReader.open(
          items.watch([], { maxAwaitTimeMS: AWAIT_MS }),
          closers,
        );
        await db.createCollection('other');
        await reader.idleTokens(2);
        const token = reader.resumeToken as ResumeToken;
        await items.insertOne({ _id: 'next' });

        const resume = async () => {
          const stream = items.watch([], { resumeAfter: token, maxAwaitTimeMS: AWAIT_MS });
          closers.add(() => stream.close());
          return ((await (await StreamReader.open(stream)).one()) as any).documentKey;
        };
        // The token names the `<db>.$cmd` namespace of the DDL oplog entry,
        // which SecantusDB's collection-scope check rejects. mongod resumes.
        const err = await rejectionOf(resume);
        expect(err).toBeInstanceOf(MongoServerError);
        expect(err.code).toBe(13);
        expect(err.codeName).toBe('Unauthorized');

        // Once any later entry is scanned (here the insert) the token is normal again.
        await reader.one();
        const healed = reader.resumeToken as ResumeToken;
        await db.collection<any>('items').insertOne({ _id: 'after' });
        const again = await StreamReader.open(
          items.watch([], { resumeAfter: healed, maxAwaitTimeMS: AWAIT_MS }),
          closers,
        );
        expect(((await again.one()) as any).documentKey).toEqual({ _id: 'after' });
      },
    );
  });

  describe('history loss (oplogMaxEntries: 10, no heartbeat)', () => {
    const harness = useMongoServers(1, {
      name: 'fid-tinyoplog',
      oplogMaxEntries: 10,
      noopHeartbeatSeconds: 0,
    });
    const dbName = useDbNames(harness);
    const closers = useClosers();
    let client: MongoClient;

    beforeAll(async () => {
      client = await harness.client(harness.servers[0]);
    });

    async function tokenOfFirstInsert(db: Db): Promise<{ token: ResumeToken; time: Timestamp }> {
      await db.createCollection('items');
      const reader = await StreamReader.open(db.watch([], { maxAwaitTimeMS: AWAIT_MS }), closers);
      await db.collection<any>('items').insertOne({ _id: 'first' });
      const event = (await reader.one()) as any;
      await reader.stream.close();
      return { token: event._id, time: event.clusterTime };
    }

    const resumeError = (db: Db, options: object) =>
      rejectionOf(async () => {
        const stream = db.watch([], { ...options, maxAwaitTimeMS: AWAIT_MS });
        closers.add(() => stream.close());
        await stream.tryNext();
      });

    const thousandInserts = (db: Db) =>
      db.collection<any>('bulk').insertMany(
        Array.from({ length: 1000 }, (_, i) => ({ _id: i })),
        { ordered: false },
      );

    // Must run first: the server prunes once per 1000 oplog entries since it started.
    itEmbeddedOnly(
      'the entry cap is not enforced on every write: a token 20 entries behind a 10-entry oplog still resumes (SecantusDB prunes every 1000 oplog writes)',
      async () => {
        const db = client.db(dbName('cap'));
        const { token } = await tokenOfFirstInsert(db);
        for (let i = 0; i < 20; i++) await db.collection<any>('items').insertOne({ _id: i });
        const reader = await StreamReader.open(
          db.watch([], { resumeAfter: token, maxAwaitTimeMS: AWAIT_MS }),
          closers,
        );
        expect(((await reader.one()) as any).documentKey).toEqual({ _id: 0 });
      },
    );

    itEmbeddedOnly(
      'resuming from a pruned token fails with 286 ChangeStreamHistoryLost; SecantusDB sends no error label (DIVERGENCE: mongod adds NonResumableChangeStreamError)',
      async () => {
        const db = client.db(dbName('lost'));
        const { token } = await tokenOfFirstInsert(db);
        await thousandInserts(db); // crosses a 1000-entry boundary: the prune runs

        for (const option of ['resumeAfter', 'startAfter']) {
          const err = await resumeError(db, { [option]: token });
          expect(err).toBeInstanceOf(MongoServerError);
          expect(err.code).toBe(286);
          expect(err.codeName).toBe('ChangeStreamHistoryLost');
          expect(err.errorLabels).toEqual([]);
          expect(err.hasErrorLabel('ResumableChangeStreamError')).toBe(false);
        }
      },
    );

    itEmbeddedOnly(
      "the SecantusDB admin command {'secantusAdmin.pruneOplog': 1} prunes at once",
      async () => {
        const db = client.db(dbName('admin'));
        const { token } = await tokenOfFirstInsert(db);
        for (let i = 0; i < 12; i++) await db.collection<any>('items').insertOne({ _id: i });
        const reply = await client.db('admin').command({ 'secantusAdmin.pruneOplog': 1 });
        expect(reply.pruned).toBeGreaterThan(0);
        expect((await resumeError(db, { resumeAfter: token })).code).toBe(286);
      },
    );

    itEmbeddedOnly(
      'DIVERGENCE: startAtOperationTime before the oplog floor silently starts at the floor on SecantusDB (mongod fails with 286)',
      async () => {
        const db = client.db(dbName('satlost'));
        const { time } = await tokenOfFirstInsert(db);
        await thousandInserts(db);
        await client.db('admin').command({ 'secantusAdmin.pruneOplog': 1 });

        const reader = await StreamReader.open(
          db.watch([], { startAtOperationTime: time, maxAwaitTimeMS: AWAIT_MS }),
          closers,
        );
        const event = (await reader.one()) as any;
        // No error, and the 'first' insert the caller asked to start at is gone.
        expect(event.documentKey._id).not.toBe('first');
      },
    );

    itEmbeddedOnly(
      'DIVERGENCE: an open stream whose position is pruned skips the lost events silently on SecantusDB (mongod fails the cursor)',
      async () => {
        const db = client.db(dbName('gap'));
        await db.createCollection('items');
        const reader = await StreamReader.open(db.watch([], { maxAwaitTimeMS: AWAIT_MS }), closers);
        await db.collection<any>('items').insertOne({ _id: 'before-gap' });
        await thousandInserts(db);
        await client.db('admin').command({ 'secantusAdmin.pruneOplog': 1 });

        const event = (await reader.one()) as any;
        expect(event.operationType).toBe('insert');
        expect(event.documentKey._id).not.toBe('before-gap');
        expect(reader.stream.closed).toBe(false);
      },
    );
  });
});
