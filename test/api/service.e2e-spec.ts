import { ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { MongoClient, ObjectId } from 'mongodb';
import request from 'supertest';
import { SYNC_API_ENV_VARIABLES } from '../../src/lib/api/sync-api.config';
import { SYNC_ENV_VARIABLES } from '../../src/lib/config/sync-config';
import { findFreePort } from '../../src/dev-servers/embedded-mongo-server';
import { SYNC_HEALTH_ENV_VARIABLES } from '../../src/lib/health/sync-health.options';
import { loadServiceConfig, usesEmbeddedServers } from '../../src/app/service-config';
import { createServiceLogger } from '../../src/app/service-logger';
import { describeUnless, needsEmbeddedServers, waitFor } from '../support/mongo-harness';
import { pidAlive, secantusProcessesOf } from '../support/process-probe';
import { serviceArgv, ensureServiceBuilt } from '../support/service-command';

const ROOT = resolve(__dirname, '..', '..');
const API_KEY = 'service-key-0123456789abcdef';

/**
 * Runs the service as the README does (`npm start` = ensure-build, then
 * `node <flags> dist/main.js`, argv taken from package.json) with no URIs, so
 * it starts its embedded dev servers.
 */
describeUnless(needsEmbeddedServers)('the runnable service (node dist/main.js)', () => {
  let child: ChildProcess | undefined;
  let workDir: string;
  let output = '';
  const clients: MongoClient[] = [];
  const ports = { http: 0, local: 0, atlas: 0 };
  const url = () => `http://127.0.0.1:${ports.http}`;

  beforeAll(async () => {
    ensureServiceBuilt();

    workDir = mkdtempSync(join(tmpdir(), 'sync-service-'));
    ports.http = await findFreePort();
    ports.local = await findFreePort();
    ports.atlas = await findFreePort();
    child = spawn(process.execPath, serviceArgv(), {
      // A clean working directory: no .env of the developer, data under workDir.
      cwd: workDir,
      env: {
        PATH: process.env.PATH,
        SYNC_TEST_SERVER_VENV: process.env.SYNC_TEST_SERVER_VENV,
        PORT: String(ports.http),
        HOST: '127.0.0.1',
        LOCAL_MONGODB_URI: '',
        ATLAS_MONGODB_URI: '',
        EMBEDDED_LOCAL_PORT: String(ports.local),
        EMBEDDED_ATLAS_PORT: String(ports.atlas),
        EMBEDDED_DATA_DIR: join(workDir, 'data'),
        BIDIRECTIONAL_SYNC_ENABLED: 'true',
        SYNC_API_KEY: API_KEY,
        LOG_FORMAT: 'json',
        SHUTDOWN_TIMEOUT_MS: '10000',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout!.on('data', (d) => (output += d));
    child.stderr!.on('data', (d) => (output += d));
    await waitFor(
      async () => {
        if (child!.exitCode !== null) throw new Error(`service exited: ${output}`);
        const res = await request(url()).get('/api/sync/bidirectional/health');
        return res.status === 200 && res.body.health === 'healthy';
      },
      { timeoutMs: 30_000, intervalMs: 200, message: 'service healthy' },
    ).catch((err) => {
      throw new Error(`${err.message}\n--- service output ---\n${output}`);
    });
  }, 150_000);

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close(true)));
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  const connect = async (port: number) => {
    const client = await MongoClient.connect(`mongodb://127.0.0.1:${port}/?directConnection=true`);
    clients.push(client);
    return client.db('app');
  };

  it('says plainly that it runs against embedded dev servers, in JSON log lines', () => {
    const lines = output.split('\n').filter(Boolean);
    const parsed = lines.map((l) => JSON.parse(l));
    expect(parsed.every((l) => typeof l.level === 'string' && 'message' in l)).toBe(true);
    const notice = parsed.find((l) => /EMBEDDED DEVELOPMENT SERVERS/.test(l.message));
    expect(notice).toMatchObject({ level: 'warn' });
    expect(notice.message).toContain(`127.0.0.1:${ports.local}`);
    expect(notice.message).toContain(`127.0.0.1:${ports.atlas}`);
  });

  it('syncs local changes to Atlas and Atlas changes to local', async () => {
    const local = await connect(ports.local);
    const atlas = await connect(ports.atlas);
    const a = new ObjectId();
    await local.collection('menuitems').insertOne({ _id: a, name: 'Flat white', price: 22 });
    await waitFor(() => atlas.collection('menuitems').findOne({ _id: a }), {
      message: 'local insert on Atlas',
    });
    const b = new ObjectId();
    await atlas.collection('menuitems').insertOne({ _id: b, name: 'Chai' });
    await waitFor(() => local.collection('menuitems').findOne({ _id: b }), {
      message: 'Atlas insert locally',
    });
  });

  it('serves the API, the Terminus readiness check and the OpenAPI description', async () => {
    const metrics = await request(url()).get('/api/sync/bidirectional/metrics').expect(200);
    expect(metrics.body.localToAtlas.successful).toBeGreaterThanOrEqual(1);
    const ready = await request(url()).get('/health').expect(200);
    expect(ready.body).toMatchObject({
      status: 'ok',
      info: {
        localMongo: { status: 'up' },
        atlasMongo: { status: 'up' },
        bidirectionalSync: { status: 'up', health: 'healthy' },
      },
    });
    const docs = await request(url()).get('/api/docs-json').expect(200);
    expect(Object.keys(docs.body.paths)).toEqual(
      expect.arrayContaining([
        '/api/sync/bidirectional/health',
        '/api/sync/bidirectional/metrics',
        '/api/sync/bidirectional/metrics/prometheus',
        '/api/sync/bidirectional/conflicts',
        '/api/sync/bidirectional/toggle',
      ]),
    );
    await request(url())
      .post('/api/sync/bidirectional/toggle')
      .set('x-api-key', API_KEY)
      .send({ enabled: true })
      .expect(200, { success: true, enabled: true, message: 'Bidirectional sync enabled' });
  });

  it('stops cleanly on SIGTERM, leaving no process behind', async () => {
    const pid = child!.pid!;
    const servers = secantusProcessesOf(pid);
    expect(servers).toHaveLength(2);
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((ok) =>
      child!.once('exit', (code, signal) => ok({ code, signal })),
    );
    const started = Date.now();
    child!.kill('SIGTERM');
    const { code, signal } = await exited;
    expect(Date.now() - started).toBeLessThan(12_000);
    expect(code === 0 || signal === 'SIGTERM').toBe(true);
    expect(output).toMatch(/Sync stopped/);
    expect(output).not.toMatch(/"level":"(error|fatal)"/);
    await waitFor(() => servers.every((p) => !pidAlive(p)), { message: 'dev servers gone' });
    expect(secantusProcessesOf(pid)).toEqual([]);
  });
});

describe('service configuration and logging', () => {
  it('reads the variables with their defaults and names every bad one', () => {
    const config = loadServiceConfig({});
    expect(config).toMatchObject({
      port: 5000,
      host: '0.0.0.0',
      localDbName: 'app',
      logLevel: 'log',
      logFormat: 'text',
      shutdownTimeoutMs: 10_000,
      apiDocs: true,
      embedded: { localPort: 27027, atlasPort: 27028 },
    });
    expect(usesEmbeddedServers(config)).toBe(true);
    expect(
      loadServiceConfig({
        LOCAL_MONGODB_URI: 'mongodb://h1:27017/shop?replicaSet=rs0',
        ATLAS_MONGODB_URI: 'mongodb+srv://u:p@cluster0.example.net',
        LOG_LEVEL: 'info',
      }),
    ).toMatchObject({ localDbName: 'shop', logLevel: 'log' });

    let message = '';
    try {
      loadServiceConfig({
        LOCAL_MONGODB_URI: 'mongodb://user:hunter2@h1:27017/shop',
        PORT: 'eighty',
        LOG_LEVEL: 'loud',
      });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/LOCAL_MONGODB_URI and ATLAS_MONGODB_URI: set both/);
    expect(message).toMatch(/PORT = "eighty"/);
    expect(message).toMatch(/LOG_LEVEL = "loud"/);
    expect(message).not.toContain('hunter2');
    // A device in fleet mode needs no ATLAS_MONGODB_URI; a relay (and direct mode) does.
    const fleetDevice = loadServiceConfig({
      LOCAL_MONGODB_URI: 'mongodb://h1:27017/shop?replicaSet=rs0',
      SYNC_TRANSPORT: 'nats',
    });
    expect(fleetDevice.atlasUri).toBeUndefined();
    expect(usesEmbeddedServers(fleetDevice)).toBe(false);
    expect(() =>
      loadServiceConfig({
        LOCAL_MONGODB_URI: 'mongodb://h1:27017/shop',
        SYNC_TRANSPORT: 'nats',
        SYNC_FLEET_ROLE: 'relay',
      }),
    ).toThrow(/ATLAS_MONGODB_URI is required in direct mode/);
  });

  it.each(['text', 'json'] as const)(
    'writes %s log lines at LOG_LEVEL with credentials removed',
    (logFormat) => {
      const written: string[] = [];
      const spies = (['stdout', 'stderr'] as const).map((stream) =>
        jest.spyOn(process[stream], 'write').mockImplementation((chunk: any) => {
          written.push(String(chunk));
          return true;
        }),
      );
      try {
        const logger = createServiceLogger({ logLevel: 'warn', logFormat });
        const uri = 'mongodb+srv://syncuser:hunter2@cluster0.example.net/app';
        logger.log(`connected to ${uri}`, 'Test');
        logger.warn(`retrying ${uri}`, 'Test');
        logger.error(new Error(`failed on ${uri}`), undefined, 'Test');
        logger.error(`failed on ${uri}`, `Error: boom at ${uri}\n    at x`, 'Test');
      } finally {
        spies.forEach((s) => s.mockRestore());
      }
      const all = written.join('');
      expect(all).not.toContain('hunter2');
      expect(all).toContain('mongodb+srv://***@cluster0.example.net');
      expect(all).not.toContain('connected to');
      expect(all).toContain('retrying');
      if (logFormat === 'json') {
        for (const line of all.split('\n').filter(Boolean))
          expect(JSON.parse(line)).toHaveProperty('level');
      }
    },
  );
});

describe('.env.example', () => {
  it('lists every variable the service reads', () => {
    const example = readFileSync(join(ROOT, '.env.example'), 'utf8');
    const listed = new Set([...example.matchAll(/^([A-Z0-9_]+)=/gm)].map((m) => m[1]));
    const read = [
      ...Object.values(SYNC_ENV_VARIABLES).filter((v): v is string => !!v),
      ...Object.values(SYNC_API_ENV_VARIABLES),
      ...Object.values(SYNC_HEALTH_ENV_VARIABLES),
      ...['PORT', 'HOST', 'LOCAL_MONGODB_URI', 'LOCAL_DB_NAME', 'LOG_LEVEL', 'LOG_FORMAT'],
      ...['SHUTDOWN_TIMEOUT_MS', 'API_DOCS_ENABLED', 'EMBEDDED_LOCAL_PORT', 'EMBEDDED_ATLAS_PORT'],
      'EMBEDDED_DATA_DIR',
    ];
    expect(read.filter((v) => !listed.has(v))).toEqual([]);
  });
});
