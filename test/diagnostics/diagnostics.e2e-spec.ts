import { hostname } from 'node:os';
import type { Db, MongoClient, ResumeToken } from 'mongodb';
import { formatVersion } from '../../src/lib/common/hybrid-logical-clock';
import { runScript } from '../support/cli-runner';
import {
  itWithServerControl,
  MongoHarness,
  uniqueDbName,
  useMongoServers,
} from '../support/mongo-harness';

const T0 = 1_760_000_000_000;
const stamp = (ms: number, o: string) => ({ v: formatVersion(ms, 0, o), o });

/** The resume token of the next event on `db` (a write is made to produce one). */
async function tokenOfNextWrite(db: Db): Promise<ResumeToken> {
  const stream = db.watch([], { maxAwaitTimeMS: 50 });
  try {
    await stream.tryNext();
    await db.collection('tokens').insertOne({ at: new Date() });
    for (;;) {
      const event = await stream.tryNext();
      if (event) return event._id;
    }
  } finally {
    await stream.close();
  }
}

describe('diagnostic commands (npm run sync:*)', () => {
  const harness = useMongoServers(2, { name: 'diag' });
  let local: Db;
  let atlas: Db;
  let env: () => Record<string, string>;

  beforeAll(async () => {
    const [localClient, atlasClient] = await Promise.all(
      harness.servers.map((s) => harness.client(s)),
    );
    local = localClient.db(uniqueDbName('dlocal'));
    atlas = atlasClient.db(uniqueDbName('datlas'));
    env = () => ({
      LOCAL_MONGODB_URI: harness.servers[0].uri,
      ATLAS_MONGODB_URI: harness.servers[1].uri,
      LOCAL_DB_NAME: local.databaseName,
      ATLAS_DB_NAME: atlas.databaseName,
    });
  });

  it('sync:test-connection checks both connections, and fails (redacted) on an unreachable one', async () => {
    const ok = await runScript('sync-test-connection.ts', [], env());
    expect(ok.code).toBe(0);
    for (const label of ['Local MongoDB', 'Atlas'])
      expect(ok.stdout).toContain(`${label}: mongodb://`);
    expect(ok.stdout).toMatch(/\[OK\] +connected; ping [\d.]+ ms/);
    expect(ok.stdout).toMatch(/\[OK\] +server version \d+\.\d+/);
    expect(ok.stdout).toMatch(/\[OK\] +replica set "[^"]+", writable primary/);
    expect(ok.stdout).toContain(
      `[OK]   change streams: database-level stream on "${atlas.databaseName}" opened`,
    );
    expect(ok.stdout).toContain('Result: OK, both connections work and support change streams');

    const down = await runScript('sync-test-connection.ts', ['--timeout-ms', '500'], {
      ...env(),
      ATLAS_MONGODB_URI: 'mongodb://syncuser:s3cret-pass@127.0.0.1:1/?directConnection=true',
    });
    expect(down.code).toBe(1);
    expect(down.stdout).toContain('Atlas: mongodb://***@127.0.0.1:1/');
    expect(down.stdout).toMatch(
      /\[FAIL\] Cannot connect to Atlas \(mongodb:\/\/\*\*\*@127\.0\.0\.1:1\//,
    );
    expect(down.stdout).toContain('Result: FAILED (Atlas)');
    expect(down.stdout + down.stderr).not.toContain('s3cret');

    const usage = await runScript('sync-test-connection.ts', ['--bogus'], env());
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain('Usage: npm run sync:test-connection');
  });

  it('sync:verify-origin-tracking reports the instance id, stamp coverage and origins, and flags a duplicate id', async () => {
    await local.collection('_sync_metadata').insertMany([
      { _id: 'instance', instanceId: 'dev-a', host: hostname() },
      { _id: 'clock:dev-a', highWater: formatVersion(T0 + 100, 0, 'dev-a') },
    ] as never[]);
    const synced = [
      { _id: 1, _sync: stamp(T0 + 1, 'dev-a') },
      { _id: 2, _sync: stamp(T0 + 2, 'dev-a') },
      { _id: 3, _sync: stamp(T0 + 3, 'dev-a') },
      { _id: 4, _sync: stamp(T0 + 4, 'dev-b') },
      { _id: 5, _sync: stamp(T0 + 5, 'atlas') },
    ];
    await local.collection('menuitems').insertMany([...synced, { _id: 6 }] as never[]);
    await atlas.collection('menuitems').insertMany(synced as never[]);
    await local.collection('sessions').insertOne({ _id: 's', _sync: stamp(T0, 'dev-a') } as never);

    const ok = await runScript('sync-verify-origin-tracking.ts', [], env());
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain('Instance id: dev-a');
    expect(ok.stdout).toMatch(/menuitems +local +6 +5 +83\.3%/);
    expect(ok.stdout).toMatch(/menuitems +atlas +5 +5 +100\.0%/);
    expect(ok.stdout).toMatch(/dev-a +this device +4 +3/);
    expect(ok.stdout).toMatch(/dev-b +another device +1 +1/);
    expect(ok.stdout).toMatch(/atlas +written on Atlas without the module +1 +1/);
    expect(ok.stdout).toContain('[OK]   instance id "dev-a" is set and valid');
    expect(ok.stdout).toContain('[WARN] local: 1 synced document(s) without a _sync stamp');
    expect(ok.stdout).toContain('no sign of a duplicate instance id');
    expect(ok.stdout).toContain('Result: OK');

    // Another device writing under the same id: Atlas holds a version this database never issued.
    await atlas
      .collection('menuitems')
      .insertOne({ _id: 7, _sync: stamp(T0 + 500, 'dev-a') } as never);
    const dup = await runScript('sync-verify-origin-tracking.ts', [], env());
    expect(dup.code).toBe(1);
    expect(dup.stdout).toContain('another device or database probably uses instance id "dev-a"');
    expect(dup.stdout).toContain('Result: FAILED (1 problem(s))');
  });

  describe('with an Atlas whose oplog keeps 10 entries', () => {
    const tiny = new MongoHarness();
    let tinyClient: MongoClient;

    beforeAll(async () => {
      const [server] = await tiny.start(1, { name: 'diag-tiny', oplogMaxEntries: 10 });
      tinyClient = await tiny.client(server);
    }, 120_000);

    afterAll(() => tiny.stopAll(), 60_000);

    itWithServerControl(
      'sync:check-resume-token reports each stored token, OK while resumable and HISTORY LOST (286) once pruned',
      async () => {
        const localDb = local.client.db(uniqueDbName('dtoken'));
        const atlasDb = tinyClient.db(uniqueDbName('dtoken'));
        await localDb.collection('_sync_metadata').insertMany([
          { _id: 'instance', instanceId: 'dev-a' },
          {
            _id: 'resume:dev-a:atlas',
            token: await tokenOfNextWrite(atlasDb),
            savedAt: new Date(Date.now() - 2 * 3600_000),
          },
          {
            _id: 'resume:dev-a:local',
            token: await tokenOfNextWrite(localDb),
            savedAt: new Date(),
          },
          { _id: 'resume:old-id:atlas', token: { _data: 'not-hex!' }, savedAt: new Date() },
        ] as never[]);
        const tokenEnv = {
          ...env(),
          LOCAL_DB_NAME: localDb.databaseName,
          ATLAS_MONGODB_URI: tiny.servers[0].uri,
          ATLAS_DB_NAME: atlasDb.databaseName,
        };

        const ok = await runScript('sync-check-resume-token.ts', [], tokenEnv);
        expect(ok.code).toBe(0);
        expect(ok.stdout).toMatch(/atlas +dev-a \(this\) +\S+ +2\.0 h +\S+.* +OK/);
        expect(ok.stdout).toContain(
          '[OK]   atlas token of this instance can be resumed, saved 2.0 h ago',
        );
        expect(ok.stdout).toContain('[OK]   local token of this instance can be resumed');
        expect(ok.stdout).toMatch(
          /\[INFO\] atlas token of former instance "old-id": INVALID \(9 FailedToParse/,
        );
        expect(ok.stdout).toContain('Result: OK');

        for (let i = 0; i < 12; i++) await atlasDb.collection('filler').insertOne({ i });
        await tinyClient.db('admin').command({ 'secantusAdmin.pruneOplog': 1 });

        const lost = await runScript('sync-check-resume-token.ts', ['--json'], tokenEnv);
        expect(lost.code).toBe(1);
        const report = JSON.parse(lost.stdout);
        expect(report.ok).toBe(false);
        expect(
          report.tokens.map((t: { id: string; state: string; code?: number }) => [
            t.id,
            t.state,
            t.code,
          ]),
        ).toEqual([
          ['resume:dev-a:atlas', 'history-lost', 286],
          ['resume:dev-a:local', 'ok', undefined],
          ['resume:old-id:atlas', 'invalid', 9],
        ]);
        const text = await runScript('sync-check-resume-token.ts', [], tokenEnv);
        expect(text.stdout).toContain('[FAIL] atlas token of this instance: HISTORY LOST (286)');
        expect(text.stdout).toContain('Result: FAILED');
      },
    );
  });
});
