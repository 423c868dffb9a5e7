import { MongoClient, ObjectId } from 'mongodb';
import { formatVersion } from '../../src/lib/common/hybrid-logical-clock';
import { ConflictResolverService } from '../../src/lib/conflict/conflict-resolver.service';
import { MongoHarness, uniqueDbName, waitFor } from '../support/mongo-harness';
import { ApiTestApp, CapturingLogger, waitForValue } from './api-test-app';

const API_KEY = 'test-api-key-0123456789abcdef';
const BASE = '/api/sync/bidirectional';

describe('sync API over HTTP: endpoints, shapes, validation and API key', () => {
  const harness = new MongoHarness();
  const logger = new CapturingLogger();
  const atlasDbName = uniqueDbName('api_atlas');
  let device: ApiTestApp;
  let atlas: MongoClient;

  beforeAll(async () => {
    const [local, atlasServer] = await harness.start(2, { name: 'api' });
    atlas = await harness.client(atlasServer);
    device = await ApiTestApp.start({
      localUri: local.uri,
      localDbName: uniqueDbName('api_local'),
      atlasUri: atlasServer.uri,
      atlasDbName,
      api: { apiKey: API_KEY },
      logger,
    });
    await waitFor(async () => (await device.http.get(`${BASE}/health`)).body.health === 'healthy', {
      message: 'healthy sync',
    });
  }, 60_000);

  afterAll(async () => {
    await device?.close();
    await harness.stopAll();
  });

  it('GET /health answers the specification shape, plus lag, ages and thresholds', async () => {
    const res = await device.http.get(`${BASE}/health`).expect(200);
    expect(res.headers['content-type']).toMatch(/application\/json/);
    expect(res.body).toMatchObject({
      enabled: true,
      atlasListener: { running: true, connected: true },
      syncWorker: { running: true, queueSize: expect.any(Number) },
      health: 'healthy',
      reasons: [],
      thresholds: { maxLagMs: 30_000, maxDisconnectedMs: 300_000, maxConflictsPerHour: 10 },
      lagMs: { localToAtlas: null, atlasToLocal: null },
      instanceId: expect.any(String),
      conflictsLastHour: 0,
    });
    expect(res.body.atlasListener).toHaveProperty('lastChange');
    expect(res.body.atlasListener).toHaveProperty('resumeTokenAgeMs');
    expect(res.body.syncWorker).toHaveProperty('oldestPendingAgeMs');
  });

  it('GET /metrics counts both directions with lag percentiles, outbox depth, dead letters and reconnects', async () => {
    const fromLocal = new ObjectId();
    const fromAtlas = new ObjectId();
    await device.db.collection('menuitems').insertOne({ _id: fromLocal, name: 'Latte', price: 20 });
    await waitFor(() => atlas.db(atlasDbName).collection('menuitems').findOne({ _id: fromLocal }), {
      message: 'local insert on Atlas',
    });
    await atlas
      .db(atlasDbName)
      .collection('menuitems')
      .insertOne({ _id: fromAtlas, name: 'Mocha' });
    await waitFor(() => device.db.collection('menuitems').findOne({ _id: fromAtlas }), {
      message: 'Atlas insert locally',
    });

    const { body } = await waitForValue(
      async () => {
        const res = await device.http.get(`${BASE}/metrics`).expect(200);
        return res.body.atlasToLocal.successful >= 1 && res.body.outboxDepth === 0 && res;
      },
      { message: 'metrics of both directions' },
    );
    for (const direction of ['localToAtlas', 'atlasToLocal']) {
      expect(body[direction]).toMatchObject({
        totalProcessed: expect.any(Number),
        successful: expect.any(Number),
        failed: 0,
        avgProcessTime: expect.any(Number),
        lagMs: {
          p50: expect.any(Number),
          p95: expect.any(Number),
          p99: expect.any(Number),
          last: expect.any(Number),
        },
      });
      expect(body[direction].successful).toBeGreaterThanOrEqual(1);
      const byOperation = Object.values(body[direction].byOperation) as number[];
      expect(byOperation.reduce((a, b) => a + b, 0)).toBe(body[direction].totalProcessed);
    }
    expect(body).toMatchObject({
      conflicts: { total: 0, resolved: 0, lastHour: 0 },
      outboxDepth: 0,
      oldestPendingAgeMs: null,
      deadLettered: 0,
      reconnects: expect.any(Number),
      since: expect.any(String),
    });
  });

  it('GET /metrics/prometheus exposes the same figures in the text format', async () => {
    const res = await device.http.get(`${BASE}/metrics/prometheus`).expect(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain;/);
    expect(res.headers['content-type']).toContain('version=0.0.4');
    const text = res.text;
    for (const [name, type] of [
      ['changes_total', 'counter'],
      ['lag_seconds', 'gauge'],
      ['outbox_depth', 'gauge'],
      ['conflicts_total', 'counter'],
      ['dead_letters_total', 'counter'],
      ['reconnects_total', 'counter'],
      ['up', 'gauge'],
    ]) {
      expect(text).toContain(`# TYPE bidirectional_sync_${name} ${type}`);
    }
    expect(text).toMatch(
      /^bidirectional_sync_changes_total\{direction="local_to_atlas",operation="[a-z]+",result="success"\} [1-9]\d*$/m,
    );
    expect(text).toMatch(
      /^bidirectional_sync_changes_total\{direction="atlas_to_local",operation="[a-z]+",result="success"\} [1-9]\d*$/m,
    );
    expect(text).toMatch(
      /^bidirectional_sync_lag_seconds\{direction="local_to_atlas",quantile="0\.99"\} [\d.e-]+$/m,
    );
    expect(text).toMatch(/^bidirectional_sync_outbox_depth 0$/m);
    expect(text).toMatch(/^bidirectional_sync_dead_letters_total 0$/m);
    expect(text).toMatch(/^bidirectional_sync_up 1$/m);
    expect(text).toMatch(/^bidirectional_sync_health_status\{state="healthy"\} 1$/m);
  });

  it('GET /conflicts answers totalConflicts and recentConflicts, newest first, with limit, collection and since', async () => {
    const resolver = device.app.get(ConflictResolverService);
    const now = Date.now();
    const menuId = new ObjectId();
    await resolver.logConflict({
      collection: 'orders',
      documentId: 'order-7',
      localVersion: formatVersion(now - 9000, 0, 'device-a'),
      atlasVersion: formatVersion(now - 8000, 0, 'device-b'),
      winner: 'atlas',
    });
    await new Promise((r) => setTimeout(r, 5));
    await resolver.logConflict(
      {
        collection: 'menuitems',
        documentId: menuId,
        localVersion: formatVersion(now - 5000, 0, 'device-a'),
        atlasVersion: formatVersion(now - 4000, 0, 'device-b'),
        winner: 'atlas',
      },
      {
        collection: 'menuitems',
        documentId: 123,
        localVersion: formatVersion(now - 3000, 0, 'device-a'),
        atlasVersion: formatVersion(now - 3500, 0, 'device-b'),
        winner: 'local',
      },
    );

    const all = await device.http.get(`${BASE}/conflicts`).expect(200);
    expect(all.body.totalConflicts).toBe(3);
    expect(all.body.recentConflicts).toHaveLength(3);
    const menu = all.body.recentConflicts.find((c: any) => c.documentId === menuId.toHexString());
    expect(menu).toEqual({
      collection: 'menuitems',
      documentId: menuId.toHexString(),
      localTimestamp: new Date(now - 5000).toISOString(),
      atlasTimestamp: new Date(now - 4000).toISOString(),
      winner: 'atlas',
      resolvedAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      strategy: 'last-write-wins',
      localVersion: expect.any(String),
      atlasVersion: expect.any(String),
    });
    expect(all.body.recentConflicts.map((c: any) => c.documentId)).toContain('123');
    expect(all.body.recentConflicts[2].documentId).toBe('order-7');

    const limited = await device.http.get(`${BASE}/conflicts?limit=1`).expect(200);
    expect(limited.body.totalConflicts).toBe(3);
    expect(limited.body.recentConflicts).toHaveLength(1);
    // Paging: limit + offset walk the same newest-first order without overlap.
    const pages = [];
    for (let offset = 0; offset < 4; offset += 2) {
      const page = await device.http.get(`${BASE}/conflicts`).query({ limit: 2, offset });
      expect(page.status).toBe(200);
      expect(page.body.totalConflicts).toBe(3);
      pages.push(...page.body.recentConflicts.map((c: any) => c.documentId));
    }
    expect(pages).toEqual(all.body.recentConflicts.map((c: any) => c.documentId));

    const orders = await device.http.get(`${BASE}/conflicts?collection=orders`).expect(200);
    expect(orders.body).toMatchObject({
      totalConflicts: 1,
      recentConflicts: [{ documentId: 'order-7' }],
    });

    const future = new Date(now + 3600_000).toISOString();
    const none = await device.http.get(`${BASE}/conflicts`).query({ since: future }).expect(200);
    expect(none.body).toEqual({ totalConflicts: 0, recentConflicts: [] });

    const metrics = await device.http.get(`${BASE}/metrics`).expect(200);
    expect(metrics.body.conflicts).toMatchObject({
      total: 3,
      resolved: 3,
      byWinner: { atlas: 2, local: 1 },
    });
  });

  it.each([
    ['limit=0', /limit must not be less than 1/],
    ['limit=501', /limit must not be greater than 500/],
    ['limit=abc', /limit must be an integer/],
    ['limit=2.5', /limit must be an integer/],
    ['offset=-1', /offset must not be less than 0/],
    ['offset=x', /offset must be an integer/],
    ['since=yesterday', /since must be an ISO 8601 date/],
    ['since=2025-13-45', /since must be an ISO 8601 date/],
    ['collection=%24where', /collection must be a collection name/],
    ['page=2', /property page should not exist/],
    ['collection[$ne]=x', /should not exist/],
  ])('GET /conflicts?%s is rejected with 400 saying what is wrong', async (query, message) => {
    const res = await device.http.get(`${BASE}/conflicts?${query}`).expect(400);
    expect(res.body.statusCode).toBe(400);
    expect(JSON.stringify(res.body.message)).toMatch(message);
  });

  it('POST /toggle with the API key switches Atlas → Local off and on at once', async () => {
    const off = await device.http
      .post(`${BASE}/toggle`)
      .set('x-api-key', API_KEY)
      .send({ enabled: false })
      .expect(200);
    expect(off.body).toEqual({
      success: true,
      enabled: false,
      message: 'Bidirectional sync disabled',
    });
    const health = await device.http.get(`${BASE}/health`).expect(200);
    expect(health.body).toMatchObject({ enabled: false, atlasListener: { running: false } });

    const on = await device.http
      .post(`${BASE}/toggle`)
      .set('Authorization', `Bearer ${API_KEY}`)
      .send({ enabled: true })
      .expect(200);
    expect(on.body).toEqual({
      success: true,
      enabled: true,
      message: 'Bidirectional sync enabled',
    });
    expect(device.sync.isEnabled()).toBe(true);
    const again = await device.http.get(`${BASE}/health`).expect(200);
    expect(again.body.atlasListener.running).toBe(true);
  });

  it.each([
    ['an empty body', {}, /enabled is required/],
    ['a string', { enabled: 'yes' }, /enabled must be a boolean/],
    ['a number', { enabled: 1 }, /enabled must be a boolean/],
    ['null', { enabled: null }, /enabled is required/],
    ['an unknown field', { enabled: true, force: true }, /property force should not exist/],
  ])('POST /toggle with %s is rejected with 400', async (_label, body, message) => {
    const res = await device.http
      .post(`${BASE}/toggle`)
      .set('x-api-key', API_KEY)
      .send(body as object)
      .expect(400);
    expect(JSON.stringify(res.body.message)).toMatch(message);
    expect(device.sync.isEnabled()).toBe(true);
  });

  it('POST /toggle with malformed JSON is rejected with 400', async () => {
    await device.http
      .post(`${BASE}/toggle`)
      .set('x-api-key', API_KEY)
      .set('Content-Type', 'application/json')
      .send('{"enabled": tru')
      .expect(400);
  });

  it.each([
    ['no key', {}, /API key required/],
    ['a wrong x-api-key', { 'x-api-key': 'wrong-key' }, /Invalid API key/],
    [
      'a key differing in the last character',
      { 'x-api-key': `${API_KEY.slice(0, -1)}X` },
      /Invalid API key/,
    ],
    ['a wrong bearer token', { Authorization: 'Bearer nope' }, /Invalid API key/],
    [
      'Basic credentials',
      { Authorization: `Basic ${Buffer.from(`u:${API_KEY}`).toString('base64')}` },
      /API key required/,
    ],
  ])(
    'POST /toggle with %s is refused with 401 and changes nothing',
    async (_label, headers, message) => {
      const res = await device.http
        .post(`${BASE}/toggle`)
        .set(headers as Record<string, string>)
        .send({ enabled: false })
        .expect(401);
      expect(res.body.message).toMatch(message);
      expect(device.sync.isEnabled()).toBe(true);
    },
  );

  it('leaves the read endpoints open when reads are not protected', async () => {
    for (const path of ['health', 'metrics', 'metrics/prometheus', 'conflicts']) {
      await device.http.get(`${BASE}/${path}`).expect(200);
    }
  });

  it('logged no API key', () => {
    expect(logger.lines.join('\n')).not.toContain(API_KEY);
    expect(logger.lines.some((l) => l.includes('Sync API at /api/sync/bidirectional'))).toBe(true);
  });
});
