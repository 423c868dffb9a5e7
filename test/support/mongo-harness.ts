import { randomBytes } from 'node:crypto';
import { MongoClient } from 'mongodb';
import {
  EmbeddedMongoServer,
  EmbeddedMongoServerOptions,
} from '../../src/dev-servers/embedded-mongo-server';

/**
 * One MongoDB server as a test sees it. With SecantusDB it is a process the
 * harness owns; with SYNC_TEST_MONGODB_URIS it is an external replica set the
 * harness cannot stop, shared by giving every test its own database names.
 */
export interface TestMongoServer {
  readonly uri: string;
  /** True when the harness owns the process and can stop/restart it. */
  readonly controllable: boolean;
  stop(): Promise<void>;
  start(): Promise<void>;
  restart(): Promise<void>;
  /** The embedded server, when there is one. */
  readonly embedded?: EmbeddedMongoServer;
}

export type TestServerOptions = Omit<EmbeddedMongoServerOptions, 'pythonPath'>;

const externalUris = (process.env.SYNC_TEST_MONGODB_URIS ?? '')
  .split(',')
  .map((s) => s.trim())
  .filter(Boolean);

/** True when the suites run against external servers given by SYNC_TEST_MONGODB_URIS. */
export const usingExternalServers = externalUris.length > 0;

const withReason = (name: string, reason: string) => `${name} [skipped: ${reason}]`;

/**
 * `it`, or, when `reason` is given, `it.skip` with the reason appended to every
 * title (also through `.each`), so a skipped test always says why.
 */
export function itUnless(reason: string | undefined): jest.It {
  if (!reason) return it;
  // Skipped with its reason in the title (external servers cannot be stopped or configured).
  const skip = ((name: string, ...rest: [any?, number?]) =>
    it.skip(withReason(name, reason), ...rest)) as unknown as jest.It;
  return Object.assign(skip, {
    ...it,
    skip,
    each: ((...table: unknown[]) =>
      (name: string, ...rest: [any?, number?]) =>
        (it.skip.each as any)(...table)(withReason(name, reason), ...rest)) as jest.Each,
  });
}

/** `describe`, or `describe.skip` with the reason in the title when `reason` is given. */
export function describeUnless(reason: string | undefined): jest.Describe {
  if (!reason) return describe;
  // Skipped with its reason in the title (external servers cannot be stopped or configured).
  const skip = ((name: string, fn: () => void) =>
    describe.skip(withReason(name, reason), fn)) as unknown as jest.Describe;
  return Object.assign(skip, { ...describe, skip });
}

const EXTERNAL_SERVERS =
  'SYNC_TEST_MONGODB_URIS is set and a test cannot stop, restart or configure external servers';

/** The skip reason for tests that need the embedded servers, when the suites run on external ones. */
export const needsEmbeddedServers = usingExternalServers ? EXTERNAL_SERVERS : undefined;

/**
 * `it` when the harness can stop and restart servers; skipped with the reason
 * in the title on external replica sets, which a test cannot stop.
 */
export const itWithServerControl: jest.It = itUnless(needsEmbeddedServers);

let externalCursor = 0;

class EmbeddedTestServer implements TestMongoServer {
  readonly controllable = true;
  constructor(readonly embedded: EmbeddedMongoServer) {}
  get uri(): string {
    return this.embedded.uri;
  }
  stop(): Promise<void> {
    return this.embedded.stop();
  }
  start(): Promise<void> {
    return this.embedded.startAgain();
  }
  restart(): Promise<void> {
    return this.embedded.restart();
  }
}

class ExternalTestServer implements TestMongoServer {
  readonly controllable = false;
  constructor(readonly uri: string) {}
  private refuse(): Promise<void> {
    return Promise.reject(
      new Error('external servers (SYNC_TEST_MONGODB_URIS) cannot be stopped by tests'),
    );
  }
  stop(): Promise<void> {
    return this.refuse();
  }
  start(): Promise<void> {
    return this.refuse();
  }
  restart(): Promise<void> {
    return this.refuse();
  }
}

/**
 * Starts `count` independent servers, each a single-node replica-set primary
 * on its own loopback port. Call `stopAll()` (or use `useMongoServers`) to tear down.
 */
export class MongoHarness {
  readonly servers: TestMongoServer[] = [];
  private readonly clients: MongoClient[] = [];

  async start(count: number, options: TestServerOptions = {}): Promise<TestMongoServer[]> {
    const started = await Promise.all(
      Array.from({ length: count }, async (_, i) => {
        if (usingExternalServers) {
          return new ExternalTestServer(externalUris[externalCursor++ % externalUris.length]);
        }
        const embedded = await EmbeddedMongoServer.start({
          name: `${options.name ?? 'test'}${i}`,
          ...options,
        });
        return new EmbeddedTestServer(embedded);
      }),
    );
    this.servers.push(...started);
    return started;
  }

  /** A driver client closed by `stopAll()`. */
  async client(server: TestMongoServer): Promise<MongoClient> {
    const client = await MongoClient.connect(server.uri, { serverSelectionTimeoutMS: 10_000 });
    this.clients.push(client);
    return client;
  }

  async stopAll(): Promise<void> {
    await Promise.all(this.clients.splice(0).map((c) => c.close(true).catch(() => undefined)));
    await Promise.all(
      this.servers.splice(0).map((s) => (s.embedded ? s.embedded.destroy() : Promise.resolve())),
    );
  }
}

/** A database name no other test uses (external servers are shared). */
export function uniqueDbName(prefix: string): string {
  return `${prefix}_${randomBytes(4).toString('hex')}`.slice(0, 60);
}

/**
 * Registers beforeAll/afterAll hooks that start `count` servers for the
 * enclosing describe block and always tear them down.
 */
export function useMongoServers(count: number, options: TestServerOptions = {}): MongoHarness {
  const harness = new MongoHarness();
  beforeAll(async () => {
    await harness.start(count, options);
  }, 120_000);
  afterAll(async () => {
    await harness.stopAll();
  }, 60_000);
  return harness;
}

/** Polls `check` until it returns a truthy value or the timeout passes. */
export async function waitFor<T>(
  check: () => Promise<T> | T,
  {
    timeoutMs = 20_000,
    intervalMs = 50,
    message = 'condition',
  }: { timeoutMs?: number; intervalMs?: number; message?: string } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
      last = value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${message}; last: ${last instanceof Error ? last.message : JSON.stringify(last)}`,
      );
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
