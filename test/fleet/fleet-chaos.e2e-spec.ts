import type { Document, MongoClient } from 'mongodb';
import { SyncVerifier } from '../../src/lib/verifier/sync-verifier';
import { NatsConnectionService } from '../../src/lib/fleet';
import { MongoHarness, TestMongoServer, uniqueDbName, waitFor } from '../support/mongo-harness';
import { prng, seedFrom } from '../support/prng';
import { SyncDevice, DeviceOptions } from '../support/sync-device';
import {
  ChaosWriter,
  checkEveryWrite,
  checkOracle,
  explainMismatches,
  startChaosWriters,
} from '../chaos/chaos-writers';
import { FleetTestServer } from './fleet-test-server';
import { RelayProcess } from './relay-process';

const SEED = seedFrom('SYNC_FLEET_CHAOS_SEED');
const DURATION_MS = Number(process.env.SYNC_FLEET_CHAOS_DURATION_MS ?? 40_000);
const DEVICE_IDS = ['device-1', 'device-2', 'device-3'] as const;
const PARTITIONS = 4;
const RELAYS = 2;
const COLLECTION = 'items';
/** Devices in fleet mode get an Atlas URI nothing listens on: they must not need Atlas. */
const NO_ATLAS = 'mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=300';

type Fault = 'relay-kill' | 'nats-crash' | 'relays-down' | 'device-restart';

/**
 * Chaos in fleet mode (issue 15): three devices in fleet mode (they never
 * reach Atlas), two relay processes, a real nats-server with JetStream on
 * file storage, seeded random writers on every device and on Atlas (without
 * the module), and faults while they write: kill -9 of a relay (the standby
 * takes over), nats-server killed and restarted on its store, every relay
 * down for a while as the devices keep writing, a device restarted. Then
 * every device must verify identical to Atlas, the push queue must be empty,
 * and the writers' logs must confirm that no acknowledged write that should
 * have won was lost. The seed is printed; `SYNC_FLEET_CHAOS_SEED` replays the
 * schedule of writes and faults (timing still varies).
 */
describe(`fleet chaos (seed ${SEED}; replay with SYNC_FLEET_CHAOS_SEED=${SEED})`, () => {
  const harness = new MongoHarness();
  let fleet: FleetTestServer;
  let atlasServer: TestMongoServer;
  let localServer: TestMongoServer;
  let atlasClient: MongoClient;
  let localClient: MongoClient;
  let observer: NatsConnectionService;
  const atlasDbName = uniqueDbName('fleet-chaos');
  const relays: RelayProcess[] = [];
  const devices: SyncDevice[] = [];
  const deviceOptions: DeviceOptions[] = [];
  const writers: ChaosWriter[] = [];
  const faults: string[] = [];

  function startRelay(): RelayProcess {
    const relay = RelayProcess.start(
      fleet.relayEnv(
        { uri: atlasServer.uri, dbName: atlasDbName },
        { pushPartitions: PARTITIONS, leaseTtlMs: 2000 },
      ),
    );
    relays.push(relay);
    return relay;
  }

  const liveRelays = () => relays.filter((r) => r.child.exitCode === null && !r.child.killed);

  beforeAll(async () => {
    [fleet, [atlasServer, localServer]] = await Promise.all([
      FleetTestServer.start('fleet-chaos'),
      harness.start(2, { name: 'fleet-chaos' }),
    ]);
    atlasClient = await harness.client(atlasServer);
    localClient = await harness.client(localServer);
    await startRelay().active();
    for (let i = 1; i < RELAYS; i++) startRelay();
    observer = fleet.relay();
    await observer.connect();
    for (const id of DEVICE_IDS) {
      const options: DeviceOptions = {
        localUri: localServer.uri,
        localDbName: uniqueDbName(id),
        atlasUri: NO_ATLAS,
        atlasDbName,
        instanceId: id,
        fleet: fleet.deviceFleet(id, PARTITIONS),
      };
      deviceOptions.push(options);
      devices.push(await SyncDevice.start(options));
    }
  }, 180_000);

  afterAll(async () => {
    await Promise.all(writers.map((w) => w.stop()));
    for (const d of devices) await d.close().catch(() => undefined);
    for (const r of relays) await r.kill9();
    await fleet?.destroy();
    await harness.stopAll();
  }, 60_000);

  it(
    'ends with every device identical to Atlas and no acknowledged winning write lost',
    async () => {
      console.log(
        `fleet chaos seed: ${SEED}, duration ${DURATION_MS} ms (replay: SYNC_FLEET_CHAOS_SEED=${SEED} SYNC_FLEET_CHAOS_DURATION_MS=${DURATION_MS} npx jest test/fleet/fleet-chaos)`,
      );
      const random = prng(SEED);
      const keys = { owned: 10, shared: 8 };
      writers.push(
        ...startChaosWriters(
          SEED,
          deviceOptions.map((o) => () => localClient.db(o.localDbName).collection(COLLECTION)),
          () => atlasClient.db(atlasDbName).collection(COLLECTION),
          keys,
          1,
        ),
      );

      const started = Date.now();
      const used = new Set<Fault>();
      while (Date.now() - started < DURATION_MS) {
        await sleep(1500 + random() * 2500);
        // Each fault at least once in a run of the default length, then at random.
        const unused = (
          ['relay-kill', 'nats-crash', 'relays-down', 'device-restart'] as Fault[]
        ).filter((f) => !used.has(f));
        const fault: Fault = unused.length
          ? unused[0]
          : pick<Fault>(random, [
              'relay-kill',
              'relay-kill',
              'nats-crash',
              'relays-down',
              'device-restart',
            ]);
        used.add(fault);
        await inject(fault, random);
      }

      // Heal: the server up, two relays, every device running, writers done.
      await fleet.server.startAgain();
      while (liveRelays().length < RELAYS) startRelay();
      await Promise.all(writers.map((w) => w.stop()));
      console.log(
        `fleet chaos faults (${faults.length}): ${faults.join('; ')}\nwrites: ${writers
          .map((w) => `${w.name} ${w.log.length}`)
          .join(', ')}`,
      );

      const atlas = atlasClient.db(atlasDbName);
      const jsm = await observer.jetstreamManager();
      let last = '';
      const quiesceStarted = Date.now();
      try {
        await waitFor(
          async () => {
            const reports = await Promise.all(
              devices.map((d) => new SyncVerifier({ local: d.db, atlas }).verify()),
            );
            const queued = (await jsm.streams.info('SYNC_PUSH')).state.messages;
            last =
              `push queue ${queued}\n` +
              reports
                .map(
                  (r, i) =>
                    `${DEVICE_IDS[i]}: ${r.mismatches.length} mismatches, ${r.pending.length} pending, outbox ${r.outboxSize}` +
                    r.mismatches
                      .slice(0, 5)
                      .map((m) => `\n    ${m.kind} ${m.collection} ${JSON.stringify(m.id)}`)
                      .join(''),
                )
                .join('\n');
            return (
              queued === 0 &&
              reports.every((r) => !r.mismatches.length && !r.pending.length && !r.outboxSize)
            );
          },
          { timeoutMs: 120_000, intervalMs: 1000, message: 'every device identical to Atlas' },
        );
      } catch (err) {
        const tails = liveRelays()
          .map((r) => r.log.slice(-3000))
          .join('\n---\n');
        throw new Error(
          `${(err as Error).message}\n${last}\n${await explainMismatches(
            last,
            [['atlas', atlas] as const, ...devices.map((d, i) => [DEVICE_IDS[i], d.db] as const)],
            writers,
            COLLECTION,
          )}\nrelay logs:\n${tails}`,
        );
      }
      console.log(`fleet chaos quiesced in ${Date.now() - quiesceStarted} ms`);

      const finalDocs = new Map<string, Document>(
        (await atlas.collection(COLLECTION).find().toArray()).map((d) => [String(d._id), d]),
      );
      const { checked, violations } = checkOracle(writers, finalDocs);
      console.log(`fleet oracle: ${checked} keys checked, ${violations.length} violations`);
      // Conflicts are recorded where they were decided: on a device (an apply) or by a relay (a push).
      const conflictTimes = new Map<string, number[]>();
      const conflictLogs = [...devices.map((d) => d.db), atlasClient.db(`${atlasDbName}_relay`)];
      for (const db of conflictLogs)
        for (const c of await db.collection('_sync_conflicts').find().toArray())
          conflictTimes.set(String(c.documentId), [
            ...(conflictTimes.get(String(c.documentId)) ?? []),
            new Date(c.resolvedAt).getTime(),
          ]);
      const hosts = writers.filter((w) => w.name !== 'atlas');
      const accounted = checkEveryWrite(hosts, writers, finalDocs, conflictTimes);
      console.log(
        `fleet host writes: ${accounted.checked} acknowledged, ${accounted.survived} survived, ` +
          `${accounted.supersededByOwn} superseded by the same writer, ${accounted.overwrittenLater} ` +
          `overwritten by a later write, ${accounted.lostToConflict} lost to a recorded conflict, ` +
          `${accounted.violations.length} lost silently`,
      );
      const lost = [...violations, ...accounted.violations].map((v) => v.split(':')[0]);
      if (lost.length) {
        const replicas = [
          ['atlas', atlas] as const,
          ...devices.map((d, i) => [DEVICE_IDS[i], d.db] as const),
        ];
        const report = lost.map((key) => ` ${COLLECTION} "${key}"`).join('');
        console.log(`${await explainMismatches(report, replicas, writers, COLLECTION)}
relay log lines naming them:
${relays
  .flatMap((r) => r.log.split('\n'))
  .filter((line) => lost.some((key) => line.includes(`"${key}"`)))
  .join('\n')}`);
      }
      expect(violations).toEqual([]);
      expect(accounted.violations).toEqual([]);
      expect(checked).toBeGreaterThan(20);
      expect(accounted.checked).toBeGreaterThan(300);
      // Every kind of fault happened.
      expect([...used].sort()).toEqual([
        'device-restart',
        'nats-crash',
        'relay-kill',
        'relays-down',
      ]);
    },
    DURATION_MS + 400_000,
  );

  async function inject(fault: Fault, random: () => number): Promise<void> {
    const t = Date.now();
    let detail = '';
    switch (fault) {
      case 'relay-kill': {
        // The oldest live relay: the active one, unless it already failed over.
        const [victim] = liveRelays();
        await victim?.kill9();
        startRelay();
        break;
      }
      case 'nats-crash':
        await fleet.server.crash();
        await sleep(500 + random() * 2000);
        await fleet.server.startAgain();
        break;
      case 'relays-down': {
        const ms = 2000 + random() * 3000;
        for (const r of liveRelays()) await r.kill9();
        await sleep(ms);
        for (let i = 0; i < RELAYS; i++) startRelay();
        detail = ` for ${Math.round(ms)} ms`;
        break;
      }
      case 'device-restart': {
        const i = Math.floor(random() * devices.length);
        await devices[i].close();
        await sleep(300 + random() * 1500);
        devices[i] = await SyncDevice.start(deviceOptions[i]);
        detail = ` ${DEVICE_IDS[i]}`;
        break;
      }
    }
    faults.push(`${fault}${detail} (${Date.now() - t} ms)`);
  }
});

function pick<T>(random: () => number, list: T[]): T {
  return list[Math.floor(random() * list.length)];
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
