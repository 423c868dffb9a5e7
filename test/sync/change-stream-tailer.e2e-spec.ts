import { ChangeStreamDocument, Db, MongoClient } from 'mongodb';
import {
  CHANGE_STREAM_MAX_AWAIT_MS,
  ChangeStreamTailer,
  ChangeStreamTailerOptions,
} from '../../src/lib/common/change-stream-tailer';
import { uniqueDbName, useMongoServers, waitFor } from '../support/mongo-harness';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const MARK = { collection: 'marks', id: 'test-mark' };

describe('ChangeStreamTailer long poll and caughtUp() (on a real server)', () => {
  const harness = useMongoServers(1, { name: 'tailer' });
  let client: MongoClient;
  const getMores = new Map<string, number>();
  const tailers: ChangeStreamTailer[] = [];

  beforeAll(async () => {
    client = await MongoClient.connect(harness.servers[0].uri, { monitorCommands: true });
    client.on('commandStarted', (e) => {
      if (e.commandName === 'getMore')
        getMores.set(e.databaseName, (getMores.get(e.databaseName) ?? 0) + 1);
    });
  });

  afterEach(async () => {
    await Promise.all(tailers.splice(0).map((t) => t.stop()));
  });

  afterAll(() => client.close());

  function startTailer(db: Db, options: Partial<ChangeStreamTailerOptions>) {
    const handled: { event: ChangeStreamDocument; at: number }[] = [];
    const tailer = new ChangeStreamTailer({
      name: 'test',
      db: () => db,
      pipeline: () => [],
      batchSize: 100,
      reconnect: { initialMs: 100, maxMs: 1000, maxAttempts: 5 },
      loadToken: async () => undefined,
      saveToken: async () => undefined,
      handleBatch: async (events) => {
        handled.push(...events.map((event) => ({ event, at: Date.now() })));
      },
      onHistoryLost: async () => undefined,
      ...options,
    });
    tailers.push(tailer);
    tailer.start();
    return { tailer, handled };
  }

  it('long-polls: about one read a second while idle, and a write answered at once', async () => {
    expect(CHANGE_STREAM_MAX_AWAIT_MS).toBe(1000);
    const db = client.db(uniqueDbName('long'));
    const { handled } = startTailer(db, {});
    await sleep(3000);
    // ~3 reads in 3 s (a 250 ms wait would make ~12).
    expect(getMores.get(db.databaseName) ?? 0).toBeLessThanOrEqual(5);

    await sleep(300); // well inside a poll
    const writtenAt = Date.now();
    await db.collection('items').insertOne({ _id: 'now' as never });
    await waitFor(() => handled.length > 0, { timeoutMs: 5000 });
    // The server ends the wait when the change arrives, not at the end of the second.
    expect(handled[0].at - writtenAt).toBeLessThan(500);
  });

  it('caughtUp() with a progress mark answers at once while an idle stream long-polls; without one it waits for an empty poll', async () => {
    // One at a time: any write on the server (the other tailer's mark) ends every idle read.
    const timedWhileIdle = async (db: Db, options: Partial<ChangeStreamTailerOptions>) => {
      const started = startTailer(db, options);
      await sleep(1500); // inside an idle 1 s read
      const asked = Date.now();
      await started.tailer.caughtUp();
      const ms = Date.now() - asked;
      await started.tailer.stop();
      return { ms, handled: started.handled };
    };
    const { ms: markedMs, handled } = await timedWhileIdle(client.db(uniqueDbName('marked')), {
      progressMark: MARK,
    });
    const { ms: unmarkedMs } = await timedWhileIdle(client.db(uniqueDbName('unmarked')), {});
    console.log(
      `caughtUp() while idle: ${markedMs} ms with a progress mark, ${unmarkedMs} ms without`,
    );
    // The mark's own event wakes the read; without it, the read in progress
    // and then one started after the call must both end.
    expect(markedMs).toBeLessThan(400);
    expect(unmarkedMs).toBeGreaterThan(markedMs + 300);
    expect(handled).toHaveLength(0); // the mark never reaches the handler
  });

  it('caughtUp() with a progress mark called right after start() waits for the cursor, not for a poll', async () => {
    const db = client.db(uniqueDbName('fresh'));
    const { tailer, handled } = startTailer(db, { progressMark: MARK });
    const asked = Date.now();
    await tailer.caughtUp(); // a mark written before the cursor exists is never read
    expect(Date.now() - asked).toBeLessThan(300); // waiting for an empty poll instead: 0.6-1 s
    await db.collection('items').insertOne({ _id: 'after' } as never);
    await tailer.caughtUp();
    expect(
      handled.map((h) => (h.event as { documentKey: { _id: unknown } }).documentKey._id),
    ).toEqual(['after']);
  });

  it('caughtUp() with a progress mark resolves only after writes made before it were handled', async () => {
    const db = client.db(uniqueDbName('order'));
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const handled: unknown[] = [];
    const { tailer } = startTailer(db, {
      progressMark: MARK,
      handleBatch: async (events) => {
        await gate; // a slow handler: caughtUp must wait for it
        handled.push(
          ...events.map((e) => (e as { documentKey: { _id: unknown } }).documentKey._id),
        );
      },
    });
    await sleep(300);
    await db.collection('items').insertMany([{ _id: 'a' }, { _id: 'b' }] as never[]);
    let resolved = false;
    const caughtUp = tailer.caughtUp().then(() => (resolved = true));
    await sleep(500);
    expect(resolved).toBe(false);
    release();
    await caughtUp;
    expect(handled).toEqual(['a', 'b']);
    expect(await db.collection(MARK.collection).countDocuments()).toBe(1);
  });
});
