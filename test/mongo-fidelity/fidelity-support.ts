import { ChangeStream, ChangeStreamDocument, Document, MongoClient } from 'mongodb';
import {
  itUnless,
  MongoHarness,
  needsEmbeddedServers,
  uniqueDbName,
  usingExternalServers,
} from '../support/mongo-harness';

/**
 * Shared helpers of the MongoDB fidelity suite. Every behaviour the sync
 * engine relies on is pinned by a test in this folder; where SecantusDB (the
 * embedded test server) departs from MongoDB the test title starts with
 * "DIVERGENCE" and the assertion branches on the server flavour, so the same
 * suite passes against real `mongod` replica sets (SYNC_TEST_MONGODB_URIS).
 */

export type ServerFlavour = 'secantus' | 'mongod';

/** SecantusDB answers `buildInfo` with a `secantusVersion` field; mongod does not. */
export async function serverFlavour(client: MongoClient): Promise<ServerFlavour> {
  const info = await client.db('admin').command({ buildInfo: 1 });
  return typeof info.secantusVersion === 'string' ? 'secantus' : 'mongod';
}

/**
 * `it` for tests that need a SecantusDB server started with particular options
 * (tiny oplog, no heartbeat) or a SecantusDB-only admin command; `it.skip` when
 * the suite runs against external servers, whose options a test cannot choose.
 */
export const itEmbeddedOnly: jest.It = itUnless(needsEmbeddedServers);

/** How long one empty `getMore` may wait on the server. Keeps idle polls short. */
export const AWAIT_MS = 200;

/**
 * Reads a change stream with `tryNext()` (one getMore per empty call) and keeps
 * events that arrive while priming, so a test never loses one.
 */
export class StreamReader<T extends Document = ChangeStreamDocument> {
  private readonly buffer: T[] = [];

  private constructor(readonly stream: ChangeStream<any, T>) {}

  /**
   * Wraps `stream` and sends its `aggregate` at once, so the stream's start
   * position is fixed before the test writes anything.
   */
  static async open<T extends Document = ChangeStreamDocument>(
    stream: ChangeStream<any, T>,
    closers?: Closers,
  ): Promise<StreamReader<T>> {
    closers?.add(() => stream.close());
    const reader = new StreamReader<T>(stream);
    const first = await stream.tryNext();
    if (first) reader.buffer.push(first);
    return reader;
  }

  /** The driver's cached resume token (postBatchResumeToken or last event's `_id`). */
  get resumeToken(): unknown {
    return this.stream.resumeToken;
  }

  /** Waits for exactly `n` more events (fails the test after `timeoutMs`). */
  async take(n: number, timeoutMs = 10_000): Promise<T[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.buffer.length < n) {
      if (Date.now() > deadline) {
        throw new Error(
          `timed out after ${timeoutMs} ms waiting for ${n} change events; got ${this.buffer.length}: ${JSON.stringify(this.buffer.map((e: any) => e.operationType))}`,
        );
      }
      if (this.stream.closed) {
        throw new Error(
          `change stream closed after ${this.buffer.length} of ${n} events: ${JSON.stringify(this.buffer.map((e: any) => e.operationType))}`,
        );
      }
      const event = await this.stream.tryNext();
      if (event) this.buffer.push(event);
    }
    return this.buffer.splice(0, n);
  }

  /** One more event. */
  async one(timeoutMs?: number): Promise<T> {
    return (await this.take(1, timeoutMs))[0];
  }

  /** Reads until the stream closes itself (after `invalidate`) and returns what came. */
  async untilClosed(timeoutMs = 10_000): Promise<T[]> {
    const deadline = Date.now() + timeoutMs;
    while (!this.stream.closed) {
      if (Date.now() > deadline) throw new Error('change stream did not close');
      const event = await this.stream.tryNext();
      if (event) this.buffer.push(event);
    }
    return this.buffer.splice(0);
  }

  /**
   * Polls `polls` empty getMores (about `polls * AWAIT_MS` ms) and returns the
   * distinct resume tokens the driver reported, as EJSON strings. Fails if an
   * event arrives (the caller promised an idle stream).
   */
  async idleTokens(polls: number): Promise<string[]> {
    const seen = [JSON.stringify(this.stream.resumeToken)];
    for (let i = 0; i < polls; i++) {
      const event = await this.stream.tryNext();
      if (event) throw new Error(`expected an idle stream, got ${JSON.stringify(event)}`);
      const token = JSON.stringify(this.stream.resumeToken);
      if (token !== seen[seen.length - 1]) seen.push(token);
    }
    return seen;
  }
}

/** Things to close after each test (streams, extra clients), errors ignored. */
export class Closers {
  private readonly fns: Array<() => Promise<unknown> | unknown> = [];
  add(fn: () => Promise<unknown> | unknown): void {
    this.fns.push(fn);
  }
  async closeAll(): Promise<void> {
    const fns = this.fns.splice(0).reverse();
    for (const fn of fns) {
      try {
        await fn();
      } catch {
        // already closed
      }
    }
  }
}

/** Registers an `afterEach` that closes everything added to the returned list. */
export function useClosers(): Closers {
  const closers = new Closers();
  afterEach(() => closers.closeAll());
  return closers;
}

/** Catches the rejection of `fn` (fails if it resolves). */
export async function rejectionOf(fn: () => Promise<unknown>): Promise<any> {
  try {
    await fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected the operation to fail, but it succeeded');
}

/**
 * Returns a generator of unique database names. On external servers (shared
 * replica sets) the databases it named are dropped after the file's tests.
 */
export function useDbNames(harness: MongoHarness): (prefix: string) => string {
  const names: string[] = [];
  let uris: string[] = [];
  // Runs after the harness's own beforeAll (hooks run in declaration order);
  // the harness forgets its servers in its afterAll, so keep the URIs now.
  beforeAll(() => {
    uris = harness.servers.map((s) => s.uri);
  });
  afterAll(async () => {
    if (!usingExternalServers) return;
    for (const uri of uris) {
      const client = await MongoClient.connect(uri, { serverSelectionTimeoutMS: 5_000 });
      try {
        for (const name of names)
          await client
            .db(name)
            .dropDatabase()
            .catch(() => undefined);
      } finally {
        await client.close();
      }
    }
  }, 60_000);
  return (prefix: string) => {
    const name = uniqueDbName(`fid_${prefix}`);
    names.push(name);
    return name;
  };
}
