import type { Db, Document, MongoClient } from 'mongodb';
import {
  MongoHarness,
  TestMongoServer,
  TestServerOptions,
  uniqueDbName,
  waitFor,
} from './mongo-harness';
import { DeviceOptions, SyncDevice } from './sync-device';

export type DeviceOverrides = Partial<Omit<DeviceOptions, 'localUri' | 'atlasUri' | 'atlasDbName'>>;

/**
 * One Atlas server and N device servers, each device a Nest app with the
 * module. Devices can be closed and started again on the same local database.
 */
export class SyncCluster {
  readonly harness = new MongoHarness();
  readonly atlasDbName = uniqueDbName('atlas');
  atlasServer!: TestMongoServer;
  localServers: TestMongoServer[] = [];
  atlasClient!: MongoClient;
  devices: SyncDevice[] = [];
  private readonly deviceOptions: DeviceOptions[] = [];

  /** `localServer` gives device i's local server its own options (e.g. `standalone`). */
  async start(
    deviceCount: number,
    overrides: (i: number) => DeviceOverrides = () => ({}),
    localServer?: (i: number) => TestServerOptions,
  ): Promise<this> {
    const [atlas, ...locals] = localServer
      ? await Promise.all(
          Array.from({ length: deviceCount + 1 }, async (_, i) => {
            const options = i ? { name: `device${i - 1}-`, ...localServer(i - 1) } : {};
            return (await this.harness.start(1, { name: 'cluster', ...options }))[0];
          }),
        )
      : await this.harness.start(deviceCount + 1, { name: 'cluster' });
    this.atlasServer = atlas;
    this.localServers = locals;
    this.atlasClient = await this.harness.client(atlas);
    for (const [i, local] of locals.entries()) {
      const opts: DeviceOptions = {
        localUri: local.uri,
        localDbName: uniqueDbName(`device${i}`),
        atlasUri: atlas.uri,
        atlasDbName: this.atlasDbName,
        instanceId: `device-${String.fromCharCode(97 + i)}`,
        ...overrides(i),
      };
      this.deviceOptions.push(opts);
      this.devices.push(await SyncDevice.start(opts));
    }
    return this;
  }

  get atlas(): Db {
    return this.atlasClient.db(this.atlasDbName);
  }

  /** Every replica: each device's local database, then Atlas. */
  get replicas(): Db[] {
    return [...this.devices.map((d) => d.db), this.atlas];
  }

  async restartDevice(i: number, overrides: DeviceOverrides = {}): Promise<SyncDevice> {
    await this.devices[i].close();
    this.devices[i] = await SyncDevice.start({ ...this.deviceOptions[i], ...overrides });
    return this.devices[i];
  }

  /** Waits until `check` holds on every replica. */
  async everywhere(
    check: (db: Db) => Promise<boolean>,
    message: string,
    timeoutMs = 20_000,
  ): Promise<void> {
    await waitFor(async () => (await Promise.all(this.replicas.map(check))).every(Boolean), {
      message,
      timeoutMs,
    }).catch(async (err: Error) => {
      throw new Error(`${err.message}\n${await this.dump()}`);
    });
  }

  /** Every replica's data, outbox and tombstones, for failure messages. */
  async dump(): Promise<string> {
    const lines: string[] = [];
    for (const [i, db] of this.replicas.entries()) {
      const names = (await db.listCollections({}, { nameOnly: true }).toArray())
        .map((c) => c.name)
        .sort();
      for (const name of names.filter(
        (n) => !n.startsWith('_sync_') || n === '_sync_outbox' || n === '_sync_tombstones',
      )) {
        const docs = await db.collection(name).find().limit(20).toArray();
        if (docs.length) lines.push(`replica ${i} ${name}: ${JSON.stringify(docs)}`);
      }
    }
    return lines.join('\n').slice(0, 8000);
  }

  /** Waits until every replica holds the same documents in `collection` (stamps included). */
  async converged(collection: string, timeoutMs = 30_000): Promise<Document[]> {
    let snapshot: Document[] = [];
    let differing = '';
    await waitFor(
      async () => {
        await Promise.all(this.devices.map((d) => d.sync.flush()));
        const all = await Promise.all(
          this.replicas.map((db) =>
            db
              .collection(collection)
              .find({}, { sort: { _id: 1 } })
              .toArray(),
          ),
        );
        // Field order is not compared: `$set` keeps a replica's existing order.
        const [first, ...rest] = all.map((docs) => JSON.stringify(docs.map(canonical)));
        snapshot = all[0];
        const odd = rest.findIndex((r) => r !== first);
        differing = odd < 0 ? '' : `replica 0: ${first}\nreplica ${odd + 1}: ${rest[odd]}`;
        return odd < 0;
      },
      { message: `${collection} identical on every replica`, timeoutMs, intervalMs: 200 },
    ).catch((err: Error) => {
      throw new Error(`${err.message}\n${differing.slice(0, 4000)}`);
    });
    return snapshot;
  }

  async stop(): Promise<void> {
    await Promise.all(this.devices.map((d) => d.close().catch(() => undefined)));
    await this.harness.stopAll();
  }
}

/** A document with its keys sorted at every level (EJSON-ish, for comparison). */
function canonical(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(canonical);
  if (value && typeof value === 'object' && !('_bsontype' in value) && !(value instanceof Date)) {
    return Object.fromEntries(
      Object.keys(value)
        .sort()
        .map((k) => [k, canonical((value as Record<string, unknown>)[k])]),
    );
  }
  return value;
}
