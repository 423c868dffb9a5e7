import { Db, MongoClient } from 'mongodb';
import { SYNC_COLLECTIONS } from '../../src/lib/bidirectional-sync.constants';
import { formatVersion } from '../../src/lib/common/hybrid-logical-clock';
import { documentKeyOf } from '../../src/lib/common/sync-stamp';
import type { SyncStoresService } from '../../src/lib/metadata/sync-stores.service';
import {
  NewOutboxEntry,
  OutboxEntry,
  OutboxRepository,
} from '../../src/lib/outbox/outbox.repository';
import { uniqueDbName, useMongoServers } from '../support/mongo-harness';

const T0 = 1_760_000_000_000;
const v = (n: number) => formatVersion(T0 + n, 0, 'dev-a');
const upsert = (id: string, n: number, extra: Partial<NewOutboxEntry> = {}): NewOutboxEntry => ({
  collection: 'items',
  id,
  op: 'upsert',
  v: v(n),
  doc: { _id: id, n },
  base: v(0),
  ...extra,
});

describe('OutboxRepository (on a real server)', () => {
  const harness = useMongoServers(1, { name: 'outbox' });
  let client: MongoClient;
  let db: Db;
  let outbox: OutboxRepository;

  beforeAll(async () => {
    client = await harness.client(harness.servers[0]);
  });

  beforeEach(async () => {
    db = client.db(uniqueDbName('outbox'));
    // The indexes the module creates (SyncStoresService.onModuleInit).
    await db.collection(SYNC_COLLECTIONS.outbox).createIndex({ retryAt: 1, seq: 1 });
    await db.collection(SYNC_COLLECTIONS.outbox).createIndex({ seq: 1 });
    outbox = new OutboxRepository({ local: db } as unknown as SyncStoresService);
  });

  afterEach(() => db.dropDatabase());

  const stored = async () =>
    new Map(
      (await db.collection<OutboxEntry>(SYNC_COLLECTIONS.outbox).find().toArray()).map((e) => [
        e.i as string,
        e,
      ]),
    );

  it('inserts new entries and only ever advances queued ones, in one enqueue', async () => {
    await outbox.enqueue([upsert('a', 5), upsert('b', 5)]);
    const first = await stored();
    // a: newer (advanced, keeps its first base); b: older (kept); c: new (inserted).
    await outbox.enqueue([upsert('a', 7, { base: v(6) }), upsert('b', 3), upsert('c', 1)]);
    const after = await stored();
    expect([...after.keys()].sort()).toEqual(['a', 'b', 'c']);
    expect(after.get('a')).toMatchObject({ v: v(7), doc: { n: 7 }, base: v(0) });
    expect(after.get('a')!.seq).toBeGreaterThan(first.get('b')!.seq);
    expect(after.get('b')).toEqual(first.get('b'));
    expect(after.get('c')).toMatchObject({ op: 'upsert', v: v(1), retryAt: 0, attempts: 0 });
    // rebase replaces the base of a queued entry.
    await outbox.enqueue([upsert('a', 8, { base: v(7), rebase: true })]);
    expect((await stored()).get('a')).toMatchObject({ v: v(8), base: v(7) });
  });

  it('advancing an entry clears its failure and makes it due at once', async () => {
    await outbox.enqueue([upsert('a', 1)]);
    const [entry] = await outbox.next(10);
    await outbox.fail(entry, 'Atlas unreachable', 60_000);
    expect(await outbox.next(10)).toEqual([]);
    await outbox.enqueue([upsert('a', 2)]);
    const [again] = await outbox.next(10);
    expect(again).toMatchObject({ v: v(2), retryAt: 0, attempts: 0 });
    expect(again.lastError).toBeUndefined();
  });

  it('acknowledges exactly the pushed entries of a batch', async () => {
    await outbox.enqueue(['a', 'b', 'c', 'd', 'e', 'f'].map((id) => upsert(id, 1)));
    // f failed before and is due again now (retryAt in the past, not 0): it comes last.
    const [f] = (await outbox.next(10)).filter((e) => e.i === 'f');
    await outbox.fail(f, 'earlier failure', -1);
    const batch = await outbox.next(10);
    expect(batch.map((e) => e.i)).toEqual(['a', 'b', 'c', 'd', 'e', 'f']);
    // While the batch was pushed: b moved to a newer version, c failed, g was queued.
    await outbox.enqueue([upsert('b', 2), upsert('g', 1)]);
    const c = batch.find((e) => e.i === 'c')!;
    await outbox.fail(c, 'rejected', 60_000);
    await outbox.acknowledge(batch, new Set([c]));
    let left = await stored();
    expect([...left.keys()].sort()).toEqual(['b', 'c', 'g']);
    expect(left.get('b')!.v).toBe(v(2));

    // A batch smaller than what is due removes only itself.
    await outbox.enqueue(['h', 'i'].map((id) => upsert(id, 1)));
    const partial = await outbox.next(2);
    expect(partial.map((e) => e.i)).toEqual(['b', 'g']);
    await outbox.acknowledge(partial, new Set());
    left = await stored();
    expect([...left.keys()].sort()).toEqual(['c', 'h', 'i']);
  });

  it('queues above every existing entry even when the clock went back', async () => {
    // An entry left by a process whose clock ran an hour ahead.
    const aheadSeq = (Date.now() + 3_600_000) * 1000;
    await db.collection(SYNC_COLLECTIONS.outbox).insertOne({
      _id: documentKeyOf('items', 'old'),
      c: 'items',
      i: 'old',
      op: 'upsert',
      v: v(1),
      doc: { _id: 'old' },
      base: null,
      seq: aheadSeq,
      enqueuedAt: new Date(),
      retryAt: 0,
      attempts: 0,
    } as never);
    await outbox.enqueue([upsert('new', 1)]);
    expect((await stored()).get('new')!.seq).toBeGreaterThan(aheadSeq);
    // So a batch holding only the old entry cannot remove the new one.
    const [old] = await outbox.next(1);
    expect(old.i).toBe('old');
    await outbox.acknowledge([old], new Set());
    expect([...(await stored()).keys()]).toEqual(['new']);

    // Another process (its clock two hours ahead) queued an entry while this one stood by.
    const otherSeq = (Date.now() + 7_200_000) * 1000;
    await db.collection(SYNC_COLLECTIONS.outbox).insertOne({
      _id: documentKeyOf('items', 'other'),
      c: 'items',
      i: 'other',
      seq: otherSeq,
    } as never);
    outbox.resetSequence(); // this process becomes the writer again
    await outbox.enqueue([upsert('later', 1)]);
    expect((await stored()).get('later')!.seq).toBeGreaterThan(otherSeq);
  });
});
