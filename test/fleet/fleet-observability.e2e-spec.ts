import type { Db, Document, MongoClient } from 'mongodb';
import { findFreePort } from '../../src/dev-servers/embedded-mongo-server';
import { ApiTestApp } from '../api/api-test-app';
import { MongoHarness, TestMongoServer, uniqueDbName, waitFor } from '../support/mongo-harness';
import { FleetTestServer } from './fleet-test-server';
import { RelayProcess } from './relay-process';

const PARTITIONS = 4;
/** Long enough that a standby relay is observed while the killed one's leases still run. */
const LEASE_TTL_MS = 10_000;
const BASE = '/api/sync/bidirectional';
/** Devices in fleet mode get an Atlas URI nothing listens on: they must not need Atlas. */
const NO_ATLAS = 'mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=300';

/** The value of one sample of a Prometheus text exposition (undefined when absent). */
function sample(text: string, name: string, labels = ''): number | undefined {
  const escaped = `${name}${labels}`.replace(/[{}"=]/g, (c) => `\\${c}`);
  const match = text.match(new RegExp(`^${escaped} (\\S+)$`, 'm'));
  return match ? Number(match[1]) : undefined;
}

/** A relay process with its HTTP endpoints, and a reader of them. */
interface ObservedRelay {
  process: RelayProcess;
  port: number;
  health(): Promise<{ status: number; body: RelayHealthBody }>;
  metrics(): Promise<string>;
}

interface RelayHealthBody {
  status: string;
  role: string;
  reasons: string[];
  nats: { state: string; reconnects: number };
  changes: { published: number; unpublished: number; lastPublishedAt: string | null };
  pushes: { owned: number[]; applied: number; pending: number | null };
}

describe('fleet mode observability: device metrics and the relay /health and /metrics', () => {
  const harness = new MongoHarness();
  let fleet: FleetTestServer;
  let atlasServer: TestMongoServer;
  let localServer: TestMongoServer;
  let atlasClient: MongoClient;
  let atlas: Db;
  const atlasDbName = uniqueDbName('atlas');
  const relays: ObservedRelay[] = [];
  const devices: ApiTestApp[] = [];
  const expected: Record<string, string> = {};

  async function startRelay(): Promise<ObservedRelay> {
    const port = await findFreePort();
    const child = RelayProcess.start(
      fleet.relayEnv(
        { uri: atlasServer.uri, dbName: atlasDbName },
        { pushPartitions: PARTITIONS, leaseTtlMs: LEASE_TTL_MS },
        { NATS_RECONNECT_WAIT: '100', RELAY_PORT: String(port), RELAY_HOST: '127.0.0.1' },
      ),
    );
    const url = `http://127.0.0.1:${port}`;
    const relay: ObservedRelay = {
      process: child,
      port,
      async health() {
        const res = await fetch(`${url}/health`);
        return { status: res.status, body: (await res.json()) as RelayHealthBody };
      },
      async metrics() {
        const res = await fetch(`${url}/metrics`);
        expect(res.status).toBe(200);
        expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
        return res.text();
      },
    };
    relays.push(relay);
    await waitFor(() => relay.health().then((h) => h.status === 200), {
      timeoutMs: 60_000,
      intervalMs: 200,
      message: "the relay's HTTP endpoint",
    });
    return relay;
  }

  async function startDevice(id: 'device-1' | 'device-2'): Promise<ApiTestApp> {
    const device = await ApiTestApp.start({
      localUri: localServer.uri,
      localDbName: uniqueDbName(id),
      atlasUri: NO_ATLAS,
      atlasDbName,
      sync: {
        instanceId: id,
        fleet: fleet.deviceFleet(id, PARTITIONS),
      },
    });
    devices.push(device);
    return device;
  }

  const prometheus = async (device: ApiTestApp): Promise<string> =>
    (await device.http.get(`${BASE}/metrics/prometheus`).expect(200)).text;

  async function contents(db: Db): Promise<Record<string, string>> {
    const docs = await db.collection('items').find({}).sort({ _id: 1 }).toArray();
    return Object.fromEntries(docs.map((d) => [String(d._id), String(d.name)]));
  }

  async function converged(): Promise<void> {
    const want = JSON.stringify(Object.entries(expected).sort());
    await waitFor(
      async () => {
        const all = await Promise.all([atlas, ...devices.map((d) => d.db)].map(contents));
        return all.every((c) => JSON.stringify(Object.entries(c).sort()) === want);
      },
      // A push delivered to a killed relay's pull request waits out ack_wait (30 s).
      { timeoutMs: 60_000, intervalMs: 200, message: 'Atlas and both devices to agree' },
    );
  }

  async function write(where: 'd1' | 'atlas', id: string): Promise<void> {
    const db = where === 'd1' ? devices[0].db : atlas;
    await db.collection('items').insertOne({ _id: id, name: `name ${id}` } as Document);
    expected[id] = `name ${id}`;
  }

  beforeAll(async () => {
    [fleet, [atlasServer, localServer]] = await Promise.all([
      FleetTestServer.start('fleet-observe'),
      harness.start(2, { name: 'fleet-observe' }),
    ]);
    atlasClient = await harness.client(atlasServer);
    atlas = atlasClient.db(atlasDbName);
    const first = await startRelay();
    await first.process.active();
    await startDevice('device-1');
    await startDevice('device-2');
  }, 180_000);

  afterAll(async () => {
    for (const d of devices) await d.close().catch(() => undefined);
    for (const r of relays) await r.process.kill9();
    await fleet?.destroy();
    await harness.stopAll();
  }, 60_000);

  it('devices report the transport in /metrics and Prometheus; the relay serves /health and /metrics as active', async () => {
    for (let i = 0; i < 3; i++) {
      await write('d1', `d1-${i}`);
      await write('atlas', `at-${i}`);
    }
    await converged();
    for (const device of devices) {
      await waitFor(
        async () => (await device.http.get(`${BASE}/health`)).body.health === 'healthy',
        { message: 'a healthy fleet device' },
      );
      const health = (await device.http.get(`${BASE}/health`).expect(200)).body;
      expect(health.transport).toMatchObject({ mode: 'nats', nats: { state: 'connected' } });
      // Converged, but a device's own echo may still be on its way back to it.
      const { transport } = await waitFor(
        async () => {
          const body = (await device.http.get(`${BASE}/metrics`).expect(200)).body;
          return body.transport.changesPending === 0 ? body : undefined;
        },
        { message: 'no change pending on the device consumer' },
      );
      expect(transport).toMatchObject({
        mode: 'nats',
        nats: { state: 'connected', reconnects: 0, lastError: null },
        changesPending: 0,
      });
      expect(transport.changesSequence).toBeGreaterThan(0);
      for (const password of Object.values(fleet.passwords))
        expect(JSON.stringify([health, transport])).not.toContain(password);
      const text = await prometheus(device);
      expect(text).toMatch(/^# HELP bidirectional_sync_fleet_consumer_pending \S/m);
      expect(text).toMatch(/^# TYPE bidirectional_sync_nats_reconnects_total counter$/m);
      expect(sample(text, 'bidirectional_sync_transport_info', '{mode="nats"}')).toBe(1);
      expect(sample(text, 'bidirectional_sync_nats_connected')).toBe(1);
      expect(sample(text, 'bidirectional_sync_nats_reconnects_total')).toBe(0);
      expect(sample(text, 'bidirectional_sync_fleet_consumer_pending')).toBe(0);
      expect(sample(text, 'bidirectional_sync_fleet_changes_sequence')).toBeGreaterThanOrEqual(
        transport.changesSequence,
      );
    }

    const [relay] = relays;
    const { status, body } = await relay.health();
    expect(status).toBe(200);
    expect(body).toMatchObject({
      status: 'ok',
      role: 'active',
      reasons: [],
      nats: { state: 'connected' },
      changes: { unpublished: 0 },
      pushes: { pending: 0 },
    });
    expect(body.pushes.owned).toHaveLength(PARTITIONS);
    // Three Atlas writes and three device pushes, each published once as an Atlas event.
    expect(body.changes.published).toBeGreaterThanOrEqual(6);
    expect(body.pushes.applied).toBeGreaterThanOrEqual(3);
    expect(body.changes.lastPublishedAt).not.toBeNull();
    const text = await relay.metrics();
    // Served without authentication: nothing secret in either.
    for (const served of [JSON.stringify(body), text])
      for (const password of Object.values(fleet.passwords)) expect(served).not.toContain(password);
    expect(text).toMatch(/^# HELP relay_push_pending \S/m);
    expect(sample(text, 'relay_active')).toBe(1);
    expect(sample(text, 'relay_up')).toBe(1);
    expect(sample(text, 'relay_health_status', '{state="ok"}')).toBe(1);
    expect(sample(text, 'relay_nats_connected')).toBe(1);
    expect(sample(text, 'relay_atlas_change_stream_connected')).toBe(1);
    expect(sample(text, 'relay_push_pending')).toBe(0);
    expect(sample(text, 'relay_push_partitions_owned')).toBe(PARTITIONS);
    expect(sample(text, 'relay_changes_published_total')).toBeGreaterThanOrEqual(6);
    expect(sample(text, 'relay_pushes_total', '{result="applied"}')).toBeGreaterThanOrEqual(3);
    expect(sample(text, 'relay_changes_publish_lag_seconds')).toBeGreaterThanOrEqual(0);
  }, 120_000);

  it('a second relay stands by; with the active one killed, pushes and a paused device lag, then catch up to 0', async () => {
    const [first] = relays;
    const [d1, d2] = devices;
    const second = await startRelay();
    const standby = await second.health();
    expect(standby.body).toMatchObject({ status: 'ok', role: 'standby', pushes: { owned: [] } });
    let text = await second.metrics();
    expect(sample(text, 'relay_active')).toBe(0);
    expect(sample(text, 'relay_push_partitions_owned')).toBe(0);

    // device-2 stops reading (Atlas → Local off): what is published for it waits on its consumer.
    await d2.sync.setEnabled(false);
    await first.process.kill9();
    for (let i = 0; i < 5; i++) {
      await write('d1', `k1-${i}`);
      await write('atlas', `ka-${i}`);
    }
    // device-1 hands its pushes to JetStream (its outbox empties) although no relay applies them.
    await waitFor(async () => (await d1.http.get(`${BASE}/metrics`)).body.outboxDepth === 0, {
      message: "device-1's outbox to be published",
    });
    // Until the killed relay's leases expire, the standby sees them waiting on the push stream.
    const waiting = await waitFor<string | undefined>(
      async () => {
        const t = await second.metrics();
        return (sample(t, 'relay_push_pending') ?? 0) >= 5 ? t : undefined;
      },
      { timeoutMs: LEASE_TTL_MS, intervalMs: 100, message: 'pushes pending on the standby' },
    );
    expect(sample(waiting ?? '', 'relay_push_pending')).toBeGreaterThanOrEqual(5);

    // The standby takes over both roles, applies the pushes and publishes what Atlas got.
    await waitFor(
      async () => {
        const { body } = await second.health();
        return (
          body.role === 'active' &&
          body.pushes.owned.length === PARTITIONS &&
          body.pushes.pending === 0
        );
      },
      {
        timeoutMs: 60_000,
        intervalMs: 200,
        message: 'the second relay active with no push pending',
      },
    );
    // device-2's consumer lags by every change published meanwhile (5 pushes, 5 Atlas writes).
    const lagging = await waitFor<string | undefined>(
      async () => {
        const t = await prometheus(d2);
        return (sample(t, 'bidirectional_sync_fleet_consumer_pending') ?? 0) >= 10 ? t : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 200, message: "device-2's consumer lag to reach 10" },
    );
    expect(
      sample(lagging ?? '', 'bidirectional_sync_fleet_consumer_pending'),
    ).toBeGreaterThanOrEqual(10);
    expect(
      (await d2.http.get(`${BASE}/metrics`)).body.transport.changesPending,
    ).toBeGreaterThanOrEqual(10);

    await d2.sync.setEnabled(true);
    await converged();
    await waitFor(
      async () => sample(await prometheus(d2), 'bidirectional_sync_fleet_consumer_pending') === 0,
      { message: "device-2's consumer lag back to 0" },
    );
    text = await second.metrics();
    expect(sample(text, 'relay_active')).toBe(1);
    expect(sample(text, 'relay_push_pending')).toBe(0);
    expect(sample(text, 'relay_changes_published_total')).toBeGreaterThanOrEqual(10);
  }, 180_000);

  it('nats-server down: devices and the relay turn degraded, and recover when it restarts on its store', async () => {
    const [, second] = relays;
    await fleet.server.stop();
    for (const device of devices) {
      const health = await waitFor(
        async () => {
          const body = (await device.http.get(`${BASE}/health`).expect(200)).body;
          return body.health === 'degraded' && body.transport.nats.state !== 'connected'
            ? body
            : undefined;
        },
        { message: 'a degraded device while NATS is down' },
      );
      expect(health.reasons.some((r: string) => /^NATS (reconnecting|connecting)/.test(r))).toBe(
        true,
      );
      // A scrape reuses a reading of up to 250 ms: the next ones show the outage.
      const text = await waitFor(
        async () => {
          const t = await prometheus(device);
          return sample(t, 'bidirectional_sync_nats_connected') === 0 ? t : undefined;
        },
        { message: 'nats_connected 0' },
      );
      expect(sample(text ?? '', 'bidirectional_sync_health_status', '{state="degraded"}')).toBe(1);
    }
    const relayDown = await waitFor(
      async () => {
        const h = await second.health();
        return h.body.status === 'degraded' ? h : undefined;
      },
      { message: 'a degraded relay while NATS is down' },
    );
    expect(relayDown?.status).toBe(200);
    expect(relayDown?.body.nats.state).not.toBe('connected');
    await waitFor(async () => sample(await second.metrics(), 'relay_nats_connected') === 0, {
      message: 'relay_nats_connected 0',
    });
    // A write meanwhile waits in the device's outbox.
    await write('d1', 'while-nats-down');

    await fleet.server.startAgain();
    for (const device of devices)
      await waitFor(
        async () => {
          const text = await prometheus(device);
          return (
            sample(text, 'bidirectional_sync_nats_connected') === 1 &&
            (sample(text, 'bidirectional_sync_nats_reconnects_total') ?? 0) >= 1
          );
        },
        { timeoutMs: 30_000, message: 'the device reconnected to NATS' },
      );
    await waitFor(
      async () => {
        const { body } = await second.health();
        return body.nats.state === 'connected' && body.nats.reconnects >= 1;
      },
      { timeoutMs: 30_000, message: 'the relay reconnected to NATS' },
    );
    await converged();
    for (const device of devices)
      await waitFor(
        async () => (await device.http.get(`${BASE}/health`)).body.health === 'healthy',
        { timeoutMs: 30_000, message: 'a healthy device again' },
      );
    await waitFor(async () => (await second.health()).body.status === 'ok', {
      timeoutMs: 40_000,
      message: 'an ok relay again',
    });
  }, 180_000);
});
