import { Binary, Db, Double, Int32, Long, MongoClient, ObjectId } from 'mongodb';
import { formatVersion } from '../../src/lib/common/hybrid-logical-clock';
import { documentRef } from '../../src/lib/common/sync-stamp';
import {
  SyncMismatch,
  SyncVerifier,
  SyncVerifierOptions,
} from '../../src/lib/verifier/sync-verifier';
import { formatVerificationReport } from '../../src/cli/verify-report';
import { runScript } from '../support/cli-runner';
import { uniqueDbName, useMongoServers } from '../support/mongo-harness';
import { SyncCluster } from '../support/sync-cluster';

const stamp = (ms: number, o = 'dev-a') => ({ v: formatVersion(ms, 0, o), o });
const T0 = 1_760_000_000_000;

describe('SyncVerifier (local vs Atlas on two servers)', () => {
  const harness = useMongoServers(2, { name: 'verify' });
  let localClient: MongoClient;
  let atlasClient: MongoClient;
  let local: Db;
  let atlas: Db;

  beforeAll(async () => {
    localClient = await harness.client(harness.servers[0]);
    atlasClient = await harness.client(harness.servers[1]);
  });

  beforeEach(() => {
    local = localClient.db(uniqueDbName('vlocal'));
    atlas = atlasClient.db(uniqueDbName('vatlas'));
  });

  afterEach(async () => {
    await Promise.all([local.dropDatabase(), atlas.dropDatabase()]);
  });

  const verify = (options: Partial<SyncVerifierOptions> = {}) =>
    new SyncVerifier({ local, atlas, ...options }).verify();

  /** Inserts the same documents on both sides. */
  const both = async (collection: string, docs: Record<string, unknown>[]) => {
    await local.collection(collection).insertMany(docs.map((d) => ({ ...d })));
    await atlas.collection(collection).insertMany(docs.map((d) => ({ ...d })));
  };

  const summary = (m: SyncMismatch) => `${m.kind}:${m.collection}:${JSON.stringify(m.id)}`;

  it('reports nothing for identical databases (field order, number types, mixed _id types)', async () => {
    await both(
      'menuitems',
      Array.from({ length: 120 }, (_, i) => ({
        _id: new ObjectId(),
        name: `item ${i}`,
        price: i,
        tags: ['a', 'b'],
        _sync: stamp(T0 + i),
      })),
    );
    // Same content, other field order and number types on Atlas.
    await local
      .collection('orders')
      .insertOne({ _id: 'o1', a: 1, nested: { x: 1, y: [1, 2] }, n: new Int32(3) } as never);
    await atlas
      .collection('orders')
      .insertOne({ nested: { y: [1, 2], x: 1 }, n: new Double(3), a: 1, _id: 'o1' } as never);
    // _ids of several BSON types, inserted in different orders.
    const mixed = [
      { _id: 7 },
      { _id: 2.5 },
      { _id: 'b' },
      { _id: 'a' },
      { _id: new ObjectId('64b7f0000000000000000001') },
      { _id: { k: 1 } },
      { _id: true },
      { _id: new Date(T0) },
      { _id: new Binary(Buffer.from('ab')) },
      { _id: Long.fromNumber(9) },
    ];
    await local.collection('mixed').insertMany(mixed.map((d) => ({ ...d, v: 1 })) as never[]);
    await atlas
      .collection('mixed')
      .insertMany([...mixed].reverse().map((d) => ({ ...d, v: 1 })) as never[]);
    await local.createCollection('empty');
    // Excluded collection: Atlas may hold other devices' documents.
    await both('sessions', [{ _id: 's1', user: 'u' }]);
    await atlas.collection('sessions').insertOne({ _id: 's2', user: 'other device' } as never);
    // The module's own collections are never compared.
    await local
      .collection('_sync_metadata')
      .insertOne({ _id: 'instance', instanceId: 'x' } as never);

    const report = await verify({ pageSize: 50 });
    expect(report.mismatches).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.collections.map((c) => [c.name, c.direction])).toEqual([
      ['empty', 'both'],
      ['menuitems', 'both'],
      ['mixed', 'both'],
      ['orders', 'both'],
      ['sessions', 'local-to-atlas'],
    ]);
    const byName = Object.fromEntries(report.collections.map((c) => [c.name, c]));
    expect(byName.menuitems).toMatchObject({ local: 120, atlas: 120, ranges: 3 });
    expect(byName.mixed).toMatchObject({ local: 10, atlas: 10 });
    expect(byName.sessions).toMatchObject({ local: 1, atlas: 2 });
    expect(formatVerificationReport(report)).toContain('Result: OK, no mismatches');
  });

  it('classifies missing, extra, different and pending documents', async () => {
    await both('items', [
      { _id: 1, name: 'same', _sync: stamp(T0) },
      { _id: 2, name: 'a', price: 1, _sync: stamp(T0) },
      { _id: 3, name: 'stamp only', _sync: stamp(T0) },
      { _id: 4, name: 'queued', _sync: stamp(T0) },
    ]);
    await local.collection('items').insertOne({ _id: 5, name: 'local only' } as never);
    await atlas.collection('items').insertOne({ _id: 6, name: 'atlas only' } as never);
    await atlas.collection('items').updateOne({ _id: 2 } as never, { $set: { price: 2 } });
    await atlas
      .collection('items')
      .updateOne({ _id: 3 } as never, { $set: { _sync: stamp(T0 + 5, 'dev-b') } });
    await local
      .collection('items')
      .updateOne({ _id: 4 } as never, { $set: { name: 'edited', _sync: stamp(T0 + 9) } });
    await local.collection('_sync_outbox').insertOne({
      ...documentRef('items', 4),
      op: 'upsert',
      v: stamp(T0 + 9).v,
    } as never);
    // Local → Atlas only: a local document missing on Atlas is extra; an
    // older Atlas copy is different; a newer Atlas copy (another writer) is fine.
    await both('logs', [
      { _id: 'older-on-atlas', m: 'local', _sync: stamp(T0 + 2) },
      { _id: 'newer-on-atlas', m: 'local', _sync: stamp(T0 + 1) },
    ]);
    await atlas
      .collection('logs')
      .updateOne({ _id: 'older-on-atlas' } as never, { $set: { m: 'x', _sync: stamp(T0 + 1) } });
    await atlas
      .collection('logs')
      .updateOne({ _id: 'newer-on-atlas' } as never, { $set: { m: 'y', _sync: stamp(T0 + 3) } });
    await local.collection('logs').insertOne({ _id: 'unpushed-log', m: 'local' } as never);

    const report = await verify();
    expect(report.ok).toBe(false);
    expect(report.mismatches.map(summary).sort()).toEqual(
      [
        'different:items:2',
        'different:items:3',
        'extra:items:5',
        'missing:items:6',
        'different:logs:"older-on-atlas"',
        'extra:logs:"unpushed-log"',
      ].sort(),
    );
    const find = (id: unknown) => report.mismatches.find((m) => m.id === id)!;
    expect(find(2)).toMatchObject({ fields: ['price'], newer: 'same' });
    expect(find(3)).toMatchObject({ fields: ['_sync'], newer: 'atlas' });
    expect(find('older-on-atlas')).toMatchObject({ fields: ['_sync', 'm'], newer: 'local' });
    expect(report.pending.map(summary)).toEqual(['different:items:4']);
    expect(report.pending[0].pending).toEqual({ op: 'upsert', v: stamp(T0 + 9).v });
    expect(report.totals).toMatchObject({
      missing: 1,
      extra: 2,
      different: 3,
      pending: 1,
      mismatches: 6,
    });
    expect(report.outboxSize).toBe(1);

    const text = formatVerificationReport(report);
    expect(text).toMatch(/different\s+items\s+_id=2\s+fields: price/);
    expect(text).toMatch(/missing\s+items\s+_id=6/);
    expect(text).toMatch(/extra\s+items\s+_id=5/);
    expect(text).toContain('Result: 6 mismatch(es) in 2 collection(s)');

    // Ignoring the stamp hides the stamp-only difference.
    const lenient = await verify({ only: ['items'], ignoreFields: ['_sync'] });
    expect(lenient.mismatches.map(summary).sort()).toEqual(
      ['different:items:2', 'extra:items:5', 'missing:items:6'].sort(),
    );
    // Outside SYNC_COLLECTIONS: listed, not compared.
    const allowList = await verify({ syncCollections: ['logs'] });
    expect(allowList.collections.find((c) => c.name === 'items')?.direction).toBe('not-synced');
    expect(allowList.totals.mismatches).toBe(2);
  });

  it('finds one changed document among 5000 by range hashing, fetching only that range', async () => {
    const docs = Array.from({ length: 5000 }, (_, i) => ({
      _id: `doc-${String(i).padStart(5, '0')}`,
      name: `n${i}`,
      price: i % 97,
      _sync: stamp(T0 + i),
    }));
    await both('catalog', docs);
    await atlas
      .collection('catalog')
      .updateOne({ _id: 'doc-03210' } as never, { $inc: { price: 1 } });

    const started = Date.now();
    const report = await verify();
    const elapsed = Date.now() - started;
    const catalog = report.collections.find((c) => c.name === 'catalog')!;
    expect(catalog).toMatchObject({
      local: 5000,
      atlas: 5000,
      ranges: 5,
      rangesDiffering: 1,
      fetched: 2,
      different: 1,
    });
    expect(report.mismatches).toEqual([
      expect.objectContaining({ id: 'doc-03210', kind: 'different', fields: ['price'] }),
    ]);
    console.log(`verifier: 2 x 5000 documents in ${elapsed} ms`);
  });

  it('splits a range that holds far more documents on Atlas (a new device)', async () => {
    const ids = Array.from({ length: 1000 }, (_, i) => i);
    await atlas.collection('big').insertMany(ids.map((i) => ({ _id: i, v: i })) as never[]);
    await local
      .collection('big')
      .insertMany([5, 400, 401, 999].map((i) => ({ _id: i, v: i })) as never[]);
    await local.collection('big').insertOne({ _id: 5000, v: 1 } as never);

    const report = await verify({ pageSize: 25, maxReported: 10 });
    const big = report.collections.find((c) => c.name === 'big')!;
    expect(big).toMatchObject({ local: 5, atlas: 1000, missing: 996, extra: 1, different: 0 });
    expect(report.mismatches).toHaveLength(10);
    expect(report.truncated).toBe(true);
  });

  it('waitForOutbox returns once the outbox is empty', async () => {
    await local.collection('_sync_outbox').insertOne(documentRef('x', 1) as never);
    const verifier = new SyncVerifier({ local, atlas });
    expect(await verifier.waitForOutbox(100, 20)).toBe(1);
    setTimeout(() => void local.collection('_sync_outbox').deleteMany({}), 100);
    expect(await verifier.waitForOutbox(5000, 20)).toBe(0);
  });

  describe('npm run sync:verify', () => {
    const env = () => ({
      LOCAL_MONGODB_URI: harness.servers[0].uri,
      ATLAS_MONGODB_URI: harness.servers[1].uri,
      LOCAL_DB_NAME: local.databaseName,
      ATLAS_DB_NAME: atlas.databaseName,
    });

    it('exits 0 when the databases match, 1 on mismatches, 2 on usage and connection errors', async () => {
      await both('menu', [
        { _id: 'm1', name: 'Cappuccino', price: 25 },
        { _id: 'm2', name: 'Latte', price: 27 },
      ]);
      const same = await runScript('sync-verify.ts', [], env());
      expect(same.stderr).not.toContain('Error');
      expect(same.code).toBe(0);
      expect(same.stdout).toContain('Result: OK, no mismatches');
      expect(same.stdout).toMatch(/menu\s+both ways\s+2\s+2/);

      await atlas.collection('menu').updateOne({ _id: 'm2' } as never, { $set: { price: 30 } });
      await atlas.collection('menu').insertOne({ _id: 'm3', name: 'Mocha' } as never);
      const differs = await runScript('sync-verify.ts', ['--limit', '5'], env());
      expect(differs.code).toBe(1);
      expect(differs.stdout).toMatch(/different\s+menu\s+_id="m2"\s+fields: price/);
      expect(differs.stdout).toMatch(/missing\s+menu\s+_id="m3"/);
      expect(differs.stdout).toContain('Result: 2 mismatch(es) in 1 collection(s)');

      // Flags win over the environment; --json prints the report.
      const json = await runScript(
        'sync-verify.ts',
        [
          '--json',
          '--collections',
          'menu',
          '--local',
          harness.servers[1].uri,
          '--local-db',
          atlas.databaseName,
        ],
        env(),
      );
      expect(json.code).toBe(0);
      expect(JSON.parse(json.stdout)).toMatchObject({ ok: true, totals: { mismatches: 0 } });

      const usage = await runScript('sync-verify.ts', ['--page-size', 'x'], env());
      expect(usage.code).toBe(2);
      expect(usage.stderr).toContain('--page-size');
      expect(usage.stderr).toContain('Usage: npm run sync:verify');

      const unreachable = await runScript('sync-verify.ts', ['--timeout-ms', '500'], {
        ...env(),
        ATLAS_MONGODB_URI: 'mongodb://syncuser:s3cret-pass@127.0.0.1:1/?directConnection=true',
      });
      expect(unreachable.code).toBe(2);
      expect(unreachable.stderr).toContain('Cannot connect to Atlas (mongodb://***@127.0.0.1:1/');
      expect(unreachable.stdout + unreachable.stderr).not.toContain('s3cret');
    });
  });
});

describe('SyncVerifier after real sync (two devices and Atlas)', () => {
  const cluster = new SyncCluster();

  beforeAll(() => cluster.start(2), 120_000);
  afterAll(() => cluster.stop(), 60_000);

  it('finds every device identical to Atlas once converged, and a divergence made behind its back', async () => {
    const [a, b] = cluster.devices;
    await a.db.collection('products').insertMany(
      Array.from({ length: 30 }, (_, i) => ({
        _id: `item-${i}`,
        name: `Item ${i}`,
        price: i,
      })) as never[],
    );
    await b.db
      .collection('products')
      .updateOne({ _id: 'item-3' } as never, { $set: { price: 99 } });
    await cluster.atlas
      .collection('products')
      .insertOne({ _id: 'from-atlas', name: 'Written on Atlas', price: 1 } as never);
    await a.db.collection('sessions').insertOne({ _id: 'session-a', user: 'a' } as never);
    await cluster.converged('products');
    await a.sync.flush();

    for (const device of cluster.devices) {
      const report = await new SyncVerifier({ local: device.db, atlas: cluster.atlas }).verify();
      expect(report.mismatches).toEqual([]);
      expect(report.collections.find((c) => c.name === 'products')).toMatchObject({
        local: 31,
        atlas: 31,
      });
    }
    const withSessions = await new SyncVerifier({ local: a.db, atlas: cluster.atlas }).verify();
    expect(withSessions.collections.find((c) => c.name === 'sessions')).toMatchObject({
      direction: 'local-to-atlas',
      local: 1,
      atlas: 1,
    });

    // A device stopped, then its copy edited directly: the verifier catches it.
    await b.close();
    const direct = await cluster.harness.client(cluster.localServers[1]);
    const bDb = direct.db(b.opts.localDbName);
    await bDb.collection('products').updateOne({ _id: 'item-7' } as never, { $set: { price: -1 } });
    const report = await new SyncVerifier({ local: bDb, atlas: cluster.atlas }).verify();
    expect(report.mismatches).toEqual([
      expect.objectContaining({ id: 'item-7', kind: 'different', fields: ['price'] }),
    ]);
  });
});
