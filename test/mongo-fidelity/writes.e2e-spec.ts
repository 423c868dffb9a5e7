import { Collection, MongoBulkWriteError, MongoClient, MongoServerError } from 'mongodb';
import { useMongoServers } from '../support/mongo-harness';
import { rejectionOf, useDbNames } from './fidelity-support';

/**
 * Write results and errors the engine's apply path branches on: duplicate keys,
 * ordered/unordered bulk writes, and conditional upserts that lose a race.
 */
describe('mongo fidelity: unique indexes and bulk writes', () => {
  const harness = useMongoServers(1, { name: 'fid-writes' });
  const dbName = useDbNames(harness);
  let client: MongoClient;
  let users: Collection<any>;

  beforeAll(async () => {
    client = await harness.client(harness.servers[0]);
  });

  beforeEach(async () => {
    users = client.db(dbName('w')).collection('users');
    await users.createIndex({ email: 1 }, { unique: true });
    await users.insertOne({ _id: 1, email: 'taken@x', ver: 1 });
  });

  it('a unique index rejects a duplicate with E11000 (code 11000, keyPattern, keyValue)', async () => {
    const err = await rejectionOf(() => users.insertOne({ _id: 2, email: 'taken@x' }));
    expect(err).toBeInstanceOf(MongoServerError);
    expect(err.code).toBe(11000);
    expect(err.keyPattern).toEqual({ email: 1 });
    expect(err.keyValue).toEqual({ email: 'taken@x' });
    expect(err.message).toContain('E11000');
    expect(await users.countDocuments()).toBe(1);
  });

  const batch = (base: number) => [
    { insertOne: { document: { _id: base, email: `${base}@x` } } },
    { insertOne: { document: { _id: base + 1, email: 'taken@x' } } }, // fails
    { updateOne: { filter: { _id: 1 }, update: { $set: { touched: base } } } },
    { insertOne: { document: { _id: base + 2, email: `${base + 2}@x` } } },
  ];

  it('an ordered bulkWrite stops at the first error: MongoBulkWriteError with writeErrors[0].index 1 and partial counts', async () => {
    const err = await rejectionOf(() => users.bulkWrite(batch(10), { ordered: true }));
    expect(err).toBeInstanceOf(MongoBulkWriteError);
    expect(err.code).toBe(11000);
    expect(err.writeErrors.map((w: any) => [w.index, w.code])).toEqual([[1, 11000]]);
    expect(err.result.insertedCount).toBe(1);
    expect(err.result.matchedCount).toBe(0);
    expect(err.result.modifiedCount).toBe(0);
    expect(err.result.upsertedCount).toBe(0);
    expect(await users.countDocuments({ _id: { $in: [10, 12] } })).toBe(1);
  });

  it('an unordered bulkWrite applies everything else and reports the failing op by its original index', async () => {
    const err = await rejectionOf(() => users.bulkWrite(batch(20), { ordered: false }));
    expect(err).toBeInstanceOf(MongoBulkWriteError);
    expect(err.writeErrors.map((w: any) => [w.index, w.code])).toEqual([[1, 11000]]);
    expect(err.result.insertedCount).toBe(2);
    expect(err.result.matchedCount).toBe(1);
    expect(err.result.modifiedCount).toBe(1);
    expect(await users.countDocuments({ _id: { $in: [20, 22] } })).toBe(2);
  });

  it('a successful bulkWrite reports inserted, matched, modified (no-ops excluded), upserted and deleted counts', async () => {
    const result = await users.bulkWrite([
      { insertOne: { document: { _id: 50, email: '50@x' } } },
      { updateOne: { filter: { _id: 50 }, update: { $set: { y: 1 } } } },
      { updateOne: { filter: { _id: 50 }, update: { $set: { y: 1 } } } }, // matches, changes nothing
      { updateOne: { filter: { _id: 51 }, update: { $set: { email: '51@x' } }, upsert: true } },
      { replaceOne: { filter: { _id: 50 }, replacement: { email: '50b@x' } } },
      { deleteOne: { filter: { _id: 1 } } },
    ]);
    expect(result.insertedCount).toBe(1);
    expect(result.matchedCount).toBe(3);
    expect(result.modifiedCount).toBe(2);
    expect(result.upsertedCount).toBe(1);
    expect(result.upsertedIds).toEqual({ 3: 51 });
    expect(result.deletedCount).toBe(1);
  });

  it('an upsert whose filter misses the existing _id (stale version guard) fails with E11000 on _id instead of overwriting', async () => {
    const guard = { _id: 1, ver: 0 }; // the document exists with ver 1
    const update = { $set: { ver: 2, email: 'new@x' } };

    const single = await rejectionOf(() => users.updateOne(guard, update, { upsert: true }));
    expect(single).toBeInstanceOf(MongoServerError);
    expect(single.code).toBe(11000);
    expect(single.keyValue).toEqual({ _id: 1 });

    const bulk = await rejectionOf(() =>
      users.bulkWrite([{ updateOne: { filter: guard, update, upsert: true } }]),
    );
    expect(bulk).toBeInstanceOf(MongoBulkWriteError);
    expect(bulk.writeErrors.map((w: any) => [w.index, w.code])).toEqual([[0, 11000]]);

    const fam = await rejectionOf(() => users.findOneAndUpdate(guard, update, { upsert: true }));
    expect(fam.code).toBe(11000);

    expect(await users.findOne({ _id: 1 })).toEqual({ _id: 1, email: 'taken@x', ver: 1 });
  });
});
