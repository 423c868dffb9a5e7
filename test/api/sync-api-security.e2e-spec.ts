import { CanActivate, ExecutionContext, Injectable } from '@nestjs/common';
import type { SyncApiModuleOptions } from '../../src/lib/api/sync-api-options.interface';
import { resolveSyncApiConfig, syncApiOptionsFromEnv } from '../../src/lib/api/sync-api.config';
import { SyncApiModule } from '../../src/lib/api/sync-api.module';
import { MongoHarness, TestMongoServer, uniqueDbName } from '../support/mongo-harness';
import { ApiTestApp, ApiTestAppOptions, CapturingLogger, waitForValue } from './api-test-app';

const API_KEY = 'security-key-0123456789abcdef';
const BASE = '/api/sync/bidirectional';

/** A host's own guard: only requests with `x-role: admin` pass. */
@Injectable()
class AdminRoleGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    return context.switchToHttp().getRequest().headers['x-role'] === 'admin';
  }
}

describe('sync API security: protected reads, no key configured, host guard, rate limiting', () => {
  const harness = new MongoHarness();
  const logger = new CapturingLogger();
  const apps: ApiTestApp[] = [];
  let local: TestMongoServer;
  let atlas: TestMongoServer;

  const startApp = async (
    api: ApiTestAppOptions['api'],
    apiModule?: ApiTestAppOptions['apiModule'],
    sync?: ApiTestAppOptions['sync'],
  ): Promise<ApiTestApp> => {
    const app = await ApiTestApp.start({
      localUri: local.uri,
      localDbName: uniqueDbName('sec_local'),
      atlasUri: atlas.uri,
      atlasDbName: uniqueDbName('sec_atlas'),
      api,
      apiModule,
      sync,
      logger,
    });
    apps.push(app);
    return app;
  };

  beforeAll(async () => {
    [local, atlas] = await harness.start(2, { name: 'apisec' });
  }, 60_000);

  afterAll(async () => {
    await Promise.all(apps.map((a) => a.close()));
    await harness.stopAll();
  });

  describe('with protectReads', () => {
    let app: ApiTestApp;
    beforeAll(async () => {
      app = await startApp({ apiKey: API_KEY, protectReads: true });
    });

    it('refuses every read without a key (401) and with a wrong key (401)', async () => {
      for (const path of ['health', 'metrics', 'metrics/prometheus', 'conflicts']) {
        const missing = await app.http.get(`${BASE}/${path}`).expect(401);
        expect(missing.body.message).toMatch(/API key required/);
        await app.http.get(`${BASE}/${path}`).set('x-api-key', 'nope').expect(401);
      }
    });

    it('answers reads with the key in x-api-key or as a bearer token', async () => {
      await app.http.get(`${BASE}/health`).set('x-api-key', API_KEY).expect(200);
      await app.http.get(`${BASE}/conflicts`).set('Authorization', `Bearer ${API_KEY}`).expect(200);
      const prom = await app.http
        .get(`${BASE}/metrics/prometheus`)
        .set('Authorization', `bearer ${API_KEY}`)
        .expect(200);
      expect(prom.text).toContain('bidirectional_sync_up');
    });
  });

  describe('without an API key configured', () => {
    let app: ApiTestApp;
    beforeAll(async () => {
      app = await startApp({});
    });

    it('says so at start-up', () => {
      expect(
        logger.lines.some(
          (l) =>
            l.startsWith('WARN') &&
            /SYNC_API_KEY is not set: POST .*\/toggle is refused \(403\)/.test(l),
        ),
      ).toBe(true);
    });

    it('refuses POST /toggle with 403 and a clear message, whatever key is sent', async () => {
      for (const headers of [{}, { 'x-api-key': 'anything' }]) {
        const res = await app.http
          .post(`${BASE}/toggle`)
          .set(headers)
          .send({ enabled: false })
          .expect(403);
        expect(res.body.message).toMatch(/no API key is configured \(set SYNC_API_KEY\)/);
      }
      expect(app.sync.isEnabled()).toBe(true);
    });

    it('still answers the read endpoints', async () => {
      await app.http.get(`${BASE}/health`).expect(200);
      await app.http.get(`${BASE}/metrics`).expect(200);
    });
  });

  describe("with the host's own guard", () => {
    let app: ApiTestApp;
    beforeAll(async () => {
      app = await startApp({ apiKey: API_KEY, guard: AdminRoleGuard });
    });

    it('lets that guard decide instead of the API key', async () => {
      await app.http
        .post(`${BASE}/toggle`)
        .set('x-api-key', API_KEY)
        .send({ enabled: false })
        .expect(403);
      await app.http.get(`${BASE}/health`).expect(403);
      const res = await app.http
        .post(`${BASE}/toggle`)
        .set('x-role', 'admin')
        .send({ enabled: false })
        .expect(200);
      expect(res.body).toEqual({
        success: true,
        enabled: false,
        message: 'Bidirectional sync disabled',
      });
    });
  });

  describe('configured with forRootAsync', () => {
    let app: ApiTestApp;
    beforeAll(async () => {
      app = await startApp(
        undefined,
        SyncApiModule.forRootAsync({
          useFactory: async () => ({ apiKey: API_KEY, protectReads: true }),
        }),
      );
    });

    it('applies the options the factory returns', async () => {
      await app.http.get(`${BASE}/metrics`).expect(401);
      await app.http.get(`${BASE}/metrics`).set('x-api-key', API_KEY).expect(200);
      await app.http
        .post(`${BASE}/toggle`)
        .set('x-api-key', API_KEY)
        .send({ enabled: false })
        .expect(200, { success: true, enabled: false, message: 'Bidirectional sync disabled' });
    });
  });

  describe('with a rate limit of 3 requests per minute', () => {
    let app: ApiTestApp;
    beforeAll(async () => {
      app = await startApp({ apiKey: API_KEY, throttle: { ttl: 60_000, limit: 3 } });
    });

    it('answers 429 with Retry-After once the limit is exceeded, per endpoint', async () => {
      for (let i = 0; i < 3; i++) {
        const ok = await app.http.get(`${BASE}/health`).expect(200);
        expect(ok.headers['x-ratelimit-limit']).toBe('3');
      }
      const limited = await app.http.get(`${BASE}/health`).expect(429);
      expect(limited.body.message).toMatch(/Too many requests/);
      expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
      // Mutations are limited too, before the key is even checked.
      for (let i = 0; i < 3; i++) await app.http.post(`${BASE}/toggle`).send({}).expect(401);
      await app.http
        .post(`${BASE}/toggle`)
        .set('x-api-key', API_KEY)
        .send({ enabled: true })
        .expect(429);
      // Another endpoint has its own budget.
      await app.http.get(`${BASE}/metrics`).expect(200);
    });
  });

  describe('with health thresholds given to the engine (healthThresholds)', () => {
    let app: ApiTestApp;
    beforeAll(async () => {
      app = await startApp({ apiKey: API_KEY }, undefined, {
        healthThresholds: { maxLagMs: 1, maxConflictsPerHour: 50 },
      });
    });

    it('reports them, judges health by them, and no module can change them', async () => {
      await app.db.collection('menuitems').insertOne({ name: 'Slow', price: 1 });
      // Any real push takes more than 1 ms: the lag threshold makes health degraded.
      const body = await waitForValue(
        async () => {
          const res = await app.http.get(`${BASE}/health`).expect(200);
          const lagged = (res.body.reasons as string[]).some((r) =>
            /lag \d+ ms exceeds 1 ms/.test(r),
          );
          return res.body.health === 'degraded' && lagged ? res.body : undefined;
        },
        { message: 'degraded by the 1 ms lag threshold' },
      );
      expect(body.thresholds).toEqual({
        maxLagMs: 1,
        maxDisconnectedMs: 300_000,
        maxConflictsPerHour: 50,
      });
      expect(() => {
        (app.sync.thresholds as { maxLagMs: number }).maxLagMs = 60_000;
      }).toThrow(TypeError);
      expect(app.sync.thresholds.maxLagMs).toBe(1);
    });
  });

  describe('syncApiOptionsFromEnv', () => {
    it('reads the variables and leaves unset ones to the defaults', () => {
      expect(syncApiOptionsFromEnv({})).toEqual({});
      expect(
        syncApiOptionsFromEnv({
          SYNC_API_KEY: ' k3y ',
          SYNC_API_PROTECT_READS: 'true',
          SYNC_API_RATE_LIMIT: '20',
          SYNC_API_RATE_TTL: '1000',
          // The engine's (syncOptionsFromEnv), not the API's.
          SYNC_HEALTH_MAX_LAG_MS: '5000',
        }),
      ).toEqual({
        apiKey: 'k3y',
        protectReads: true,
        throttle: { limit: 20, ttl: 1000 },
      });
    });

    it('refuses health thresholds, which moved to the engine', () => {
      expect(() =>
        resolveSyncApiConfig({ thresholds: { maxLagMs: 5000 } } as SyncApiModuleOptions),
      ).toThrow(/thresholds: moved to BidirectionalSyncModule.forRoot\(\{ healthThresholds \}\)/);
    });

    it('names every malformed variable', () => {
      expect(() =>
        syncApiOptionsFromEnv({ SYNC_API_RATE_LIMIT: 'many', SYNC_API_PROTECT_READS: 'maybe' }),
      ).toThrow(/SYNC_API_PROTECT_READS = "maybe"[\s\S]*SYNC_API_RATE_LIMIT = "many"/);
    });
  });
});
