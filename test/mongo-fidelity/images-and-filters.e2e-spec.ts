import { ChangeStreamDocument, Db, MongoClient, MongoServerError } from 'mongodb';
import { useMongoServers } from '../support/mongo-harness';
import {
  AWAIT_MS,
  rejectionOf,
  serverFlavour,
  ServerFlavour,
  StreamReader,
  useClosers,
  useDbNames,
} from './fidelity-support';

/**
 * Pre/post-images and the server-side `$match` of a database-level watch, the
 * two ways the engine can learn what a document looks like and skip its own
 * echoes without a round trip.
 */
describe('mongo fidelity: pre/post-images and filtered database watches', () => {
  const harness = useMongoServers(1, { name: 'fid-images' });
  const dbName = useDbNames(harness);
  const closers = useClosers();
  let client: MongoClient;
  let flavour: ServerFlavour;

  beforeAll(async () => {
    client = await harness.client(harness.servers[0]);
    flavour = await serverFlavour(client);
  });

  describe('pre- and post-images (changeStreamPreAndPostImages)', () => {
    let db: Db;
    beforeAll(async () => {
      db = client.db(dbName('img'));
      await db.createCollection('created', { changeStreamPreAndPostImages: { enabled: true } });
      await db.createCollection('modded');
      await db.createCollection('plain');
      await db.command({ collMod: 'modded', changeStreamPreAndPostImages: { enabled: true } });
    });

    it('create and collMod both enable the option, as listCollections reports', async () => {
      const infos = await db.listCollections({}, { nameOnly: false }).toArray();
      const options = Object.fromEntries(infos.map((i: any) => [i.name, i.options]));
      expect(options.created.changeStreamPreAndPostImages).toEqual({ enabled: true });
      expect(options.modded.changeStreamPreAndPostImages).toEqual({ enabled: true });
      expect(options.plain.changeStreamPreAndPostImages).toBeUndefined();
    });

    it.each(['created', 'modded'])(
      "fullDocumentBeforeChange 'required' gives the pre-image of update, replace and delete on a collection enabled by %s",
      async (name) => {
        const coll = db.collection<any>(name);
        await coll.insertOne({ _id: 'pre', v: 0 });
        const reader = await StreamReader.open(
          coll.watch<any, any>([], {
            fullDocument: 'required',
            fullDocumentBeforeChange: 'required',
            maxAwaitTimeMS: AWAIT_MS,
          }),
          closers,
        );
        // One write, then read, so the post-image is unambiguous on every server.
        await coll.updateOne({ _id: 'pre' }, { $set: { v: 1 } });
        const update = await reader.one();
        await coll.replaceOne({ _id: 'pre' }, { v: 2 });
        const replace = await reader.one();
        await coll.deleteOne({ _id: 'pre' });
        const del = await reader.one();

        expect(update.fullDocumentBeforeChange).toEqual({ _id: 'pre', v: 0 });
        expect(update.fullDocument).toEqual({ _id: 'pre', v: 1 });
        expect(replace.fullDocumentBeforeChange).toEqual({ _id: 'pre', v: 1 });
        expect(replace.fullDocument).toEqual({ _id: 'pre', v: 2 });
        expect(del.fullDocumentBeforeChange).toEqual({ _id: 'pre', v: 2 });
        expect(del.fullDocument).toBeUndefined();
      },
    );

    it("pre-images are point-in-time: two updates read later give each event's own before-state", async () => {
      const coll = db.collection<any>('created');
      await coll.insertOne({ _id: 'pit', v: 0 });
      const reader = await StreamReader.open(
        coll.watch<any, any>([], {
          fullDocumentBeforeChange: 'whenAvailable',
          maxAwaitTimeMS: AWAIT_MS,
        }),
        closers,
      );
      await coll.updateOne({ _id: 'pit' }, { $set: { v: 1 } });
      await coll.updateOne({ _id: 'pit' }, { $set: { v: 2 } });
      const [first, second] = await reader.take(2);
      expect(first.fullDocumentBeforeChange).toEqual({ _id: 'pit', v: 0 });
      expect(second.fullDocumentBeforeChange).toEqual({ _id: 'pit', v: 1 });
    });

    it("DIVERGENCE: fullDocument 'whenAvailable'/'required' returns the CURRENT document (a live lookup) on SecantusDB, the post-image at event time on MongoDB", async () => {
      const coll = db.collection<any>('created');
      await coll.insertOne({ _id: 'post', v: 0 });
      const reader = await StreamReader.open(
        coll.watch<any, any>([], { fullDocument: 'whenAvailable', maxAwaitTimeMS: AWAIT_MS }),
        closers,
      );
      await coll.updateOne({ _id: 'post' }, { $set: { v: 1 } });
      await coll.updateOne({ _id: 'post' }, { $set: { v: 2 } });
      const [first] = await reader.take(2);
      expect(first.updateDescription.updatedFields).toEqual({ v: 1 });
      expect(first.fullDocument).toEqual(
        flavour === 'secantus' ? { _id: 'post', v: 2 } : { _id: 'post', v: 1 },
      );
    });

    it("DIVERGENCE: fullDocument 'required' fails the stream with code 47 on SecantusDB when the document was deleted before the update event is read (MongoDB has the stored post-image)", async () => {
      const coll = db.collection<any>('created');
      await coll.insertOne({ _id: 'gone', v: 0 });
      const reader = await StreamReader.open(
        coll.watch<any, any>([], { fullDocument: 'required', maxAwaitTimeMS: AWAIT_MS }),
        closers,
      );
      await coll.updateOne({ _id: 'gone' }, { $set: { v: 1 } });
      await coll.deleteOne({ _id: 'gone' });
      if (flavour === 'secantus') {
        const err = await rejectionOf(() => reader.take(2));
        expect(err).toBeInstanceOf(MongoServerError);
        expect(err.code).toBe(47);
        expect(err.codeName).toBe('NoMatchingDocument');
      } else {
        const [update] = await reader.take(2);
        expect(update.fullDocument).toEqual({ _id: 'gone', v: 1 });
      }
    });

    it("without the option, 'whenAvailable' yields null images and 'required' fails with code 47 NoMatchingDocument", async () => {
      const coll = db.collection<any>('plain');
      await coll.insertOne({ _id: 'p', v: 0 });
      const lenient = await StreamReader.open(
        coll.watch<any, any>([], {
          fullDocument: 'whenAvailable',
          fullDocumentBeforeChange: 'whenAvailable',
          maxAwaitTimeMS: AWAIT_MS,
        }),
        closers,
      );
      const strict = await StreamReader.open(
        coll.watch<any, any>([], {
          fullDocumentBeforeChange: 'required',
          maxAwaitTimeMS: AWAIT_MS,
        }),
        closers,
      );
      await coll.updateOne({ _id: 'p' }, { $set: { v: 1 } });

      const event = await lenient.one();
      expect(event.fullDocument).toBeNull();
      expect(event.fullDocumentBeforeChange).toBeNull();
      const err = await rejectionOf(() => strict.one());
      expect(err).toBeInstanceOf(MongoServerError);
      expect(err.code).toBe(47);
    });
  });

  describe('database-level watch with $match', () => {
    let db: Db;
    beforeEach(async () => {
      db = client.db(dbName('match'));
      for (const name of ['a', 'b', 'c']) await db.createCollection(name);
    });

    const opened = (pipeline: object[], lookup = true) =>
      StreamReader.open(
        db.watch<any, ChangeStreamDocument<any>>(pipeline, {
          maxAwaitTimeMS: AWAIT_MS,
          ...(lookup ? { fullDocument: 'updateLookup' as const } : {}),
        }),
        closers,
      );
    const keys = (events: any[]) =>
      events.map((e) => [e.operationType, e.ns.coll, e.documentKey._id]);

    it('$match on ns.coll with $in and with $nin selects collections', async () => {
      const inAB = await opened([{ $match: { 'ns.coll': { $in: ['a', 'b'] } } }]);
      const notA = await opened([{ $match: { 'ns.coll': { $nin: ['a'] } } }]);
      for (const name of ['a', 'b', 'c']) await db.collection<any>(name).insertOne({ _id: name });
      await db.collection<any>('a').insertOne({ _id: 'end' });
      await db.collection<any>('c').insertOne({ _id: 'end' });

      expect(keys(await inAB.take(3))).toEqual([
        ['insert', 'a', 'a'],
        ['insert', 'b', 'b'],
        ['insert', 'a', 'end'],
      ]);
      expect(keys(await notA.take(3))).toEqual([
        ['insert', 'b', 'b'],
        ['insert', 'c', 'c'],
        ['insert', 'c', 'end'],
      ]);
    });

    it("$match on 'fullDocument._sync.o' sees the updateLookup'ed document of update events; $or keeps deletes", async () => {
      const reader = await opened([
        {
          $match: {
            'ns.coll': { $in: ['a', 'b'] },
            $or: [{ operationType: 'delete' }, { 'fullDocument._sync.o': { $ne: 'me' } }],
          },
        },
      ]);
      const a = db.collection<any>('a');
      const b = db.collection<any>('b');
      await a.insertOne({ _id: 1, _sync: { o: 'me' } }); // own insert: dropped
      await a.insertOne({ _id: 2, _sync: { o: 'peer' } }); // kept
      await b.insertOne({ _id: 3, _sync: { o: 'me' } }); // own insert: dropped
      await db.collection<any>('c').insertOne({ _id: 4, _sync: { o: 'peer' } }); // other coll: dropped
      await a.updateOne({ _id: 2 }, { $set: { '_sync.o': 'me', v: 1 } }); // own update: dropped
      await a.updateOne({ _id: 1 }, { $set: { '_sync.o': 'peer', v: 1 } }); // kept
      await b.deleteOne({ _id: 3 }); // a delete has no fullDocument: kept by the $or
      await b.insertOne({ _id: 'end' });

      const events = await reader.take(4);
      expect(keys(events)).toEqual([
        ['insert', 'a', 2],
        ['update', 'a', 1],
        ['delete', 'b', 3],
        ['insert', 'b', 'end'],
      ]);
      expect((events[1] as any).fullDocument).toEqual({ _id: 1, _sync: { o: 'peer' }, v: 1 });
    });

    it("hazard: the $match judges the document as it is at READ time: a peer's update followed by our own write is dropped, our update of a since-deleted document passes", async () => {
      const reader = await opened([{ $match: { 'fullDocument._sync.o': { $ne: 'me' } } }]);
      const a = db.collection<any>('a');
      await a.insertOne({ _id: 1, _sync: { o: 'peer' }, v: 0 });
      await reader.one(); // the peer's insert
      await a.updateOne({ _id: 1 }, { $set: { '_sync.o': 'peer', v: 1 } }); // peer write
      await a.updateOne({ _id: 1 }, { $set: { '_sync.o': 'me', w: 1 } }); // our write
      await a.insertOne({ _id: 'end', _sync: { o: 'peer' } });

      // Both updates are judged against the current document (_sync.o: 'me'),
      // so the peer's update never reaches the reader.
      expect(keys([await reader.one()])).toEqual([['insert', 'a', 'end']]);

      // The other way round: our own update of a document deleted before the
      // event is read looks up null, which passes `$ne: 'me'`.
      await a.updateOne({ _id: 1 }, { $set: { '_sync.o': 'me', v: 2 } });
      await a.deleteOne({ _id: 1 });
      const [ownUpdate, del] = await reader.take(2);
      expect(keys([ownUpdate, del])).toEqual([
        ['update', 'a', 1],
        ['delete', 'a', 1],
      ]);
      expect((ownUpdate as any).fullDocument).toBeNull();
    });

    it('without updateLookup an update event has no fullDocument, so a $ne filter on it lets every update through', async () => {
      const reader = await opened([{ $match: { 'fullDocument._sync.o': { $ne: 'me' } } }], false);
      const a = db.collection<any>('a');
      await a.insertOne({ _id: 1, _sync: { o: 'me' } });
      await a.updateOne({ _id: 1 }, { $set: { v: 1 } });
      const [update] = await reader.take(1);
      expect(update.operationType).toBe('update');
      expect((update as any).fullDocument).toBeUndefined();
    });
  });
});
