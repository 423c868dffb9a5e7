import type { AddressInfo } from 'node:net';
import { get } from 'node:http';
import type { MongoClient } from 'mongodb';
import { ApiTestApp } from '../api/api-test-app';
import { MongoHarness, uniqueDbName, waitFor } from '../support/mongo-harness';
import type { BidirectionalSyncModuleOptions } from '../../src/lib/config/sync-options.interface';
import type { SyncApiModuleOptions } from '../../src/lib/api/sync-api-options.interface';

const API_KEY = 'dashboard-api-key-0123456789abcdef';
const PATH = '/api/sync/bidirectional/dashboard';

/** The dashboard's HTTP side: page, files, state, live stream, access rules, the off switch. */
describe('dashboard endpoints', () => {
  const harness = new MongoHarness();
  let servers: { local: string; atlas: string };
  const apps: ApiTestApp[] = [];
  let atlasClient: MongoClient;

  const start = async (
    api: SyncApiModuleOptions = {},
    sync: Partial<BidirectionalSyncModuleOptions> = {},
  ) => {
    const app = await ApiTestApp.start({
      sync,
      localUri: servers.local,
      localDbName: uniqueDbName('local'),
      atlasUri: servers.atlas,
      atlasDbName: uniqueDbName('atlas'),
      api: { apiKey: API_KEY, throttle: { ttl: 60_000, limit: 10_000 }, ...api },
    });
    apps.push(app);
    return app;
  };

  beforeAll(async () => {
    const [local, atlas] = await harness.start(2, { name: 'dashboard-api' });
    servers = { local: local.uri, atlas: atlas.uri };
    atlasClient = await harness.client(atlas);
  }, 120_000);

  afterAll(async () => {
    for (const app of apps) await app.close();
    await atlasClient?.close(true);
    await harness.stopAll();
  }, 60_000);

  describe('with the defaults', () => {
    let app: ApiTestApp;
    beforeAll(async () => {
      app = await start({}, { healthThresholds: { maxLagMs: 1 } });
    }, 60_000);

    it('serves the page as a folder, with a strict content security policy', async () => {
      const redirect = await app.http.get(PATH).expect(302);
      expect(redirect.headers.location).toBe('dashboard/');
      const page = await app.http.get(`${PATH}/`).expect(200);
      expect(page.headers['content-type']).toMatch(/^text\/html/);
      expect(page.headers['content-security-policy']).toContain("script-src 'self'");
      expect(page.headers['content-security-policy']).toContain("connect-src 'self'");
      expect(page.text).toContain('<script src="assets/dashboard.js" defer></script>');
      expect(page.text).not.toMatch(/https?:\/\/(?!www\.w3\.org)/); // nothing from the network
    });

    it("serves its own files and uPlot's from the npm package, and nothing else", async () => {
      const uplot = await app.http.get(`${PATH}/assets/uplot.js`).expect(200);
      expect(uplot.headers['content-type']).toMatch(/^text\/javascript/);
      expect(uplot.text).toContain('uPlot');
      await app.http
        .get(`${PATH}/assets/uplot.css`)
        .expect(200)
        .expect('content-type', /^text\/css/);
      await app.http.get(`${PATH}/assets/dashboard.js`).expect(200);
      await app.http.get(`${PATH}/assets/dashboard.css`).expect(200);
      for (const name of ['index.html', 'package.json', '..%2F..%2Fpackage.json', 'secret.env'])
        await app.http.get(`${PATH}/assets/${name}`).expect(404);
    });

    it('state: health, alerts, totals and the time series of the changes that flowed', async () => {
      await app.db
        .collection('menuitems')
        .insertMany(
          Array.from({ length: 5 }, (_, i) => ({ _id: `m${i}` as never, name: `item ${i}` })),
        );
      const state = await waitFor(
        async () => {
          const body = (await app.http.get(`${PATH}/state`).expect(200)).body;
          const flowed = body.samples.some(
            (s: { throughput: { localToAtlas: number } }) => s.throughput.localToAtlas > 0,
          );
          return flowed && body.totals.successful.localToAtlas >= 5 && body.alerts.length
            ? body
            : false;
        },
        { message: 'changes in the time series', timeoutMs: 20_000 },
      );
      expect(state.health).toMatchObject({ enabled: true, role: 'active' });
      expect(state.totals).toMatchObject({ conflictsStored: 0, deadLetters: 0 });
      expect(state.intervalMs).toBe(1000);
      const withLag = state.samples.find(
        (s: { lag: { localToAtlas: { p50: number | null } } }) => s.lag.localToAtlas.p50 !== null,
      );
      expect(withLag.lag.localToAtlas.p99).toBeGreaterThanOrEqual(withLag.lag.localToAtlas.p50);
      // maxLagMs is 1 ms here, so the lag alert holds: banners come from the real health.
      expect(state.alerts).toContainEqual(
        expect.objectContaining({
          id: 'lag',
          severity: 'warning',
          message: expect.stringContaining('Local → Atlas'),
        }),
      );
    });

    it('streams the state as server-sent events: the history at once, then a message a second', async () => {
      await waitFor(async () => (await app.http.get(`${PATH}/state`)).body.samples.length >= 4, {
        message: 'a few seconds of history',
      });
      const address = app.app.getHttpServer().address() as AddressInfo | null;
      if (!address)
        await new Promise<void>((ok) => app.app.getHttpServer().listen(0, '127.0.0.1', ok));
      const port = (app.app.getHttpServer().address() as AddressInfo).port;
      const messages = await new Promise<{ samples: unknown[] }[]>((ok, fail) => {
        const received: { samples: unknown[] }[] = [];
        let buffer = '';
        const req = get(`http://127.0.0.1:${port}${PATH}/events`, (res) => {
          expect(res.headers['content-type']).toMatch(/^text\/event-stream/);
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            buffer += chunk;
            let end;
            while ((end = buffer.indexOf('\n\n')) >= 0) {
              const data = buffer
                .slice(0, end)
                .split('\n')
                .filter((l) => l.startsWith('data: '))
                .map((l) => l.slice(6))
                .join('\n');
              buffer = buffer.slice(end + 2);
              if (data) received.push(JSON.parse(data));
              if (received.length === 3) {
                req.destroy();
                ok(received);
              }
            }
          });
        });
        req.on('error', (err) => (received.length >= 3 ? undefined : fail(err)));
        setTimeout(
          () => fail(new Error(`only ${received.length} messages in 10 s`)),
          10_000,
        ).unref();
      });
      expect(messages[0].samples.length).toBeGreaterThan(3); // the history so far
      expect(messages[1].samples.length).toBeLessThanOrEqual(2); // then only what is new
      expect(messages[2]).toHaveProperty('health.enabled', true);
    });
  });

  it('with protected reads the page loads without the key, its data needs it', async () => {
    const app = await start({ protectReads: true });
    await app.http.get(`${PATH}/`).expect(200);
    await app.http.get(`${PATH}/assets/dashboard.js`).expect(200);
    await app.http.get(`${PATH}/state`).expect(401);
    await app.http.get(`${PATH}/events`).expect(401);
    await app.http.get(`${PATH}/state`).set('x-api-key', API_KEY).expect(200);
  });

  it('dashboard: false turns it off (404) and the rest of the API stays', async () => {
    const app = await start({ dashboard: false });
    await app.http.get(`${PATH}/`).expect(404);
    await app.http.get(`${PATH}/assets/uplot.js`).expect(404);
    await app.http.get(`${PATH}/state`).expect(404);
    await app.http.get(`${PATH}/events`).expect(404);
    await app.http.get('/api/sync/bidirectional/health').expect(200);
  });
});
