import { ChangeStreamDocument, Db, MongoClient } from 'mongodb';
import {
  ChangeStreamTailer,
  ChangeStreamTailerOptions,
} from '../../src/common/change-stream-tailer';
import { ATLAS_LISTENER_MAX_AWAIT_MS } from '../../src/listener/listener.service';
import { uniqueDbName, useMongoServers, waitFor } from '../support/mongo-harness';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('ChangeStreamTailer idle pacing (on a real server)', () => {
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

  it('polls an idle stream less often, and still captures a write made while idle', async () => {
    const paced = client.db(uniqueDbName('paced'));
    const eager = client.db(uniqueDbName('eager'));
    startTailer(eager, { maxAwaitTimeMS: 25 });
    const { handled } = startTailer(paced, { maxAwaitTimeMS: 25, idlePauseMaxMs: 400 });
    await sleep(2500);
    const pacedPolls = getMores.get(paced.databaseName) ?? 0;
    const eagerPolls = getMores.get(eager.databaseName) ?? 0;
    // Without pauses a 25 ms poll runs ~40 times a second; with them, a few times.
    expect(pacedPolls * 3).toBeLessThan(eagerPolls);

    const writtenAt = Date.now();
    await paced.collection('items').insertOne({ _id: 'late' as never });
    await waitFor(() => handled.length > 0, { timeoutMs: 5000 });
    // At most one pause (400 ms) plus a poll; generous for a loaded machine.
    expect(handled[0].at - writtenAt).toBeLessThan(1500);
  });

  it("the Atlas listener's long poll: about one read a second while idle, and a write answered at once", async () => {
    const db = client.db(uniqueDbName('long'));
    const { handled } = startTailer(db, { maxAwaitTimeMS: ATLAS_LISTENER_MAX_AWAIT_MS });
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

  it('caughtUp() ends a pause at once', async () => {
    const db = client.db(uniqueDbName('wake'));
    // Pauses of 100, 200, 400, ... ms: four seconds in, the stream is early in a 3.2 s pause.
    const { tailer } = startTailer(db, { maxAwaitTimeMS: 100, idlePauseMaxMs: 60_000 });
    await sleep(4000);
    const polls = getMores.get(db.databaseName) ?? 0;
    const asked = Date.now();
    await tailer.caughtUp();
    expect(Date.now() - asked).toBeLessThan(1000);
    expect(getMores.get(db.databaseName)).toBeGreaterThan(polls);
  });
});
