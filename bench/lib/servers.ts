import { randomBytes } from 'node:crypto';
import { MongoClient } from 'mongodb';
import { EmbeddedMongoServer } from '../../src/dev-servers/embedded-mongo-server';

/** One MongoDB endpoint the benchmark uses; `pid` is known only for servers it started. */
export interface BenchServer {
  name: string;
  uri: string;
  pid?: number;
  embedded?: EmbeddedMongoServer;
  /** A driver client owned by the pool (for the benchmark's own reads and writes). */
  client: MongoClient;
}

const externalAtlas = process.env.BENCH_ATLAS_URI?.trim();
const externalLocals = (process.env.BENCH_LOCAL_URIS ?? '')
  .split(',')
  .map((s) => s.trim())
  .filter(Boolean);

/** True when BENCH_ATLAS_URI / BENCH_LOCAL_URIS point at existing servers. */
export const usingExternalServers = !!externalAtlas;

/**
 * The servers of one benchmark run: one "Atlas" and the devices' local
 * servers. Started as SecantusDB processes unless BENCH_ATLAS_URI is set.
 */
export const NO_RETRYABLE_WRITES = 'retryWrites=false';

/** WiredTiger cache of each benchmark server (in-memory storage lives in it). */
export const BENCH_SERVER_CACHE = '4G';

export class ServerPool {
  readonly all: BenchServer[] = [];
  private externalCursor = 0;

  constructor(readonly oplogMaxEntries: number) {}

  async startAtlasAndLocals(localCount: number): Promise<[BenchServer, ...BenchServer[]]> {
    const [atlas, ...locals] = await Promise.all([
      this.startOne('atlas', externalAtlas),
      ...Array.from({ length: localCount }, (_, i) => this.startLocal(`local${i}`)),
    ]);
    return [atlas, ...locals];
  }

  startLocal(name: string): Promise<BenchServer> {
    if (!usingExternalServers) return this.startOne(name);
    const uri = externalLocals.length
      ? externalLocals[this.externalCursor++ % externalLocals.length]
      : externalAtlas;
    return this.startOne(name, uri);
  }

  private async startOne(name: string, uri?: string): Promise<BenchServer> {
    let embedded: EmbeddedMongoServer | undefined;
    if (!uri) {
      embedded = await EmbeddedMongoServer.start({
        name: `bench-${name}`,
        oplogMaxEntries: this.oplogMaxEntries,
        // In-memory servers keep all data and oplog in the cache: three 100,000-change
        // catch-ups overflow the default 1 GiB (writes then fail with InternalError).
        cacheSize: BENCH_SERVER_CACHE,
        // A day: nothing a run writes may age out of the oplog.
        oplogRetentionSeconds: 86_400,
      });
      // Retryable writes off on SecantusDB (docs/test-server.md D10): it sorts its whole
      // retryable-write registry on every write once 10,000 are recorded, so each scenario
      // would run on a slower server than the one before. Baselines and devices alike.
      uri = `${embedded.uri}&${NO_RETRYABLE_WRITES}`;
    }
    const client = await MongoClient.connect(uri, { serverSelectionTimeoutMS: 15_000 });
    const server: BenchServer = { name, uri, pid: embedded?.pid, embedded, client };
    this.all.push(server);
    return server;
  }

  /** Stops (embedded) servers and closes clients; safe to call twice. */
  async destroy(servers: BenchServer[] = [...this.all]): Promise<void> {
    await Promise.all(
      servers.map(async (s) => {
        const i = this.all.indexOf(s);
        if (i >= 0) this.all.splice(i, 1);
        await s.client.close(true).catch(() => undefined);
        await s.embedded?.destroy().catch(() => undefined);
      }),
    );
  }

  /** Synchronous last resort (exit handlers). */
  killNow(): void {
    for (const s of this.all) s.embedded?.killNow();
  }
}

/** A database name no other run uses (external servers may be shared). */
export function uniqueDbName(prefix: string): string {
  return `b_${prefix}_${randomBytes(3).toString('hex')}`.slice(0, 60);
}

/** Drops benchmark databases so memory stays bounded across scenarios. */
export async function dropDatabases(pairs: [BenchServer, string][]): Promise<void> {
  await Promise.all(
    pairs.map(([s, db]) =>
      s.client
        .db(db)
        .dropDatabase()
        .catch(() => undefined),
    ),
  );
}
