/// <reference lib="dom" />
/// <reference lib="dom.iterable" />
import { ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Db, MongoClient } from 'mongodb';
import { chromium, type Browser, type Page } from 'playwright-core';
import request from 'supertest';
import { findFreePort } from '../../src/dev-servers/embedded-mongo-server';
import { MongoHarness, uniqueDbName, waitFor } from '../support/mongo-harness';
import { requireChromium } from '../support/chromium';
import { serviceArgv, ensureServiceBuilt } from '../support/service-command';
import { SyncDevice } from '../support/sync-device';

const ROOT = resolve(__dirname, '..', '..');
const API_KEY = 'dashboard-key-0123456789abcdef';
const PATH = '/api/sync/bidirectional';
/** `UPDATE_DASHBOARD_SCREENSHOT=1` writes the README's screenshot; otherwise it goes to a temp dir. */
const SCREENSHOT_TO_DOCS = process.env.UPDATE_DASHBOARD_SCREENSHOT === '1';

/**
 * The operator dashboard in a real headless Chromium, served by the real
 * service (`node dist/main.js`, as `npm start` runs it) syncing test servers,
 * with a second device (a Nest app with the module) to make changes flow
 * both ways and to make a conflict.
 */
describe('the operator dashboard in a headless browser', () => {
  const harness = new MongoHarness();
  const atlasDbName = uniqueDbName('atlas');
  const serviceDbName = uniqueDbName('service');
  let serviceLocal: Db;
  let atlas: Db;
  let clients: MongoClient[] = [];
  let device: SyncDevice | undefined;
  let child: ChildProcess | undefined;
  let output = '';
  let workDir: string;
  let port = 0;
  let browser: Browser | undefined;
  let page: Page;
  const consoleErrors: string[] = [];
  const rejectedToggles: string[] = [];
  const url = () => `http://127.0.0.1:${port}`;
  const health = async () => (await request(url()).get(`${PATH}/health`).expect(200)).body;

  beforeAll(async () => {
    const executablePath = requireChromium();
    ensureServiceBuilt();

    const [atlasSrv, serviceSrv, deviceSrv] = await harness.start(3, { name: 'dashboard' });
    const atlasClient = await harness.client(atlasSrv);
    const serviceClient = await harness.client(serviceSrv);
    clients = [atlasClient, serviceClient];
    atlas = atlasClient.db(atlasDbName);
    serviceLocal = serviceClient.db(serviceDbName);

    workDir = mkdtempSync(join(tmpdir(), 'sync-dashboard-'));
    port = await findFreePort();
    child = spawn(process.execPath, serviceArgv(), {
      cwd: workDir,
      env: {
        PATH: process.env.PATH,
        PORT: String(port),
        HOST: '127.0.0.1',
        LOCAL_MONGODB_URI: serviceSrv.uri,
        LOCAL_DB_NAME: serviceDbName,
        ATLAS_MONGODB_URI: atlasSrv.uri,
        ATLAS_DB_NAME: atlasDbName,
        BIDIRECTIONAL_SYNC_ENABLED: 'true',
        SYNC_INSTANCE_ID: 'service-a',
        SYNC_OUTBOX_DRAIN_INTERVAL: '50',
        SYNC_API_KEY: API_KEY,
        SYNC_API_RATE_LIMIT: '10000',
        SHUTDOWN_TIMEOUT_MS: '10000',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout!.on('data', (d) => (output += d));
    child.stderr!.on('data', (d) => (output += d));
    await waitFor(
      async () => {
        if (child!.exitCode !== null) throw new Error(`service exited: ${output}`);
        const res = await request(url())
          .get(`${PATH}/health`)
          .ok(() => true);
        return res.status === 200 && res.body.health === 'healthy';
      },
      { timeoutMs: 60_000, intervalMs: 250, message: 'service healthy' },
    ).catch((err: Error) => {
      throw new Error(`${err.message}\n--- service output ---\n${output}`);
    });

    device = await SyncDevice.start({
      localUri: deviceSrv.uri,
      localDbName: uniqueDbName('device-b'),
      atlasUri: atlasSrv.uri,
      atlasDbName,
      instanceId: 'device-b',
    });

    browser = await chromium.launch({
      executablePath,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
    });
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on('console', (m) => {
      if (m.type() !== 'error') return;
      // Chromium logs every 4xx response; the wrong key's 401 is the one this test provokes.
      const expected = m.location().url.endsWith(`${PATH}/toggle`) && /\b401\b/.test(m.text());
      (expected ? rejectedToggles : consoleErrors).push(`console: ${m.text()}`);
    });
    page.on('pageerror', (err) => consoleErrors.push(`page error: ${err.message}`));
    page.on('response', (res) => {
      if (res.status() >= 500) consoleErrors.push(`HTTP ${res.status()} ${res.url()}`);
    });
  }, 240_000);

  afterAll(async () => {
    await browser?.close();
    await device?.close().catch(() => undefined);
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((ok) => child!.once('exit', ok));
      child.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([exited, new Promise((ok) => (timer = setTimeout(ok, 15_000)))]);
      clearTimeout(timer);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
    await Promise.all(clients.map((c) => c.close(true)));
    await harness.stopAll();
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  }, 60_000);

  it('the service logs the dashboard address', () => {
    expect(output).toContain(`Dashboard: http://127.0.0.1:${port}${PATH}/dashboard/`);
  });

  it('renders the real state', async () => {
    await page.goto(`${url()}${PATH}/dashboard`);
    expect(new URL(page.url()).pathname).toBe(`${PATH}/dashboard/`); // redirected to the folder
    await page.locator('#state-enabled', { hasText: 'on' }).waitFor();
    const h = await health();
    expect(h).toMatchObject({ enabled: true, role: 'active', instanceId: 'service-a' });
    await expectText('#instance-id', 'service-a');
    await expectText('#overall', h.health);
    await expectText('#state-listener', 'connected');
    await expectText('#state-capture', `${h.localCapture.mode}, connected`);
    await expectText('#state-role', /^active/);
    await expectText('#state-transport', /direct/);
    await expectText('#queue-depth', String(h.syncWorker.queueSize));
    expect(await page.getByRole('switch', { name: /Atlas → Local sync on/ }).count()).toBe(1);
    // No alert holds on a healthy service.
    expect(await page.locator('#alert-list .banner').count()).toBe(0);
  });

  it('the lag and throughput charts change when changes flow', async () => {
    const before = await chartImages();
    const docs = (prefix: string) =>
      Array.from({ length: 20 }, (_, i) => ({ _id: `${prefix}-${i}`, name: `${prefix} ${i}` }));
    // Local → Atlas from the service's database, Atlas → Local from the other device's.
    await serviceLocal.collection('menuitems').insertMany(docs('service') as never[]);
    await device!.db.collection('orders').insertMany(docs('device') as never[]);
    await waitFor(async () => (await serviceLocal.collection('orders').countDocuments()) === 20, {
      message: 'device writes reach the service',
      timeoutMs: 30_000,
    });
    await waitFor(
      async () => {
        const text = (await page.textContent('#throughput-summary')) ?? '';
        const counts = [...text.matchAll(/(\d+) since start/g)].map((m) => Number(m[1]));
        return counts.length === 2 && counts.every((n) => n >= 20);
      },
      { message: 'throughput summary counts the changes', timeoutMs: 20_000 },
    );
    await waitFor(
      async () => {
        const text = (await page.textContent('#lag-summary')) ?? '';
        return (
          /Local → Atlas: p50 [\d.]+ ms/.test(text) && /Atlas → Local: p50 [\d.]+ ms/.test(text)
        );
      },
      { message: 'lag summary shows both directions', timeoutMs: 20_000 },
    );
    const after = await chartImages();
    expect(after.lag).not.toBe(before.lag);
    expect(after.throughput).not.toBe(before.throughput);
    // The figures are the API's.
    const metrics = (await request(url()).get(`${PATH}/metrics`).expect(200)).body;
    expect(metrics.localToAtlas.successful).toBeGreaterThanOrEqual(20);
    expect(metrics.atlasToLocal.successful).toBeGreaterThanOrEqual(20);
  });

  it('the switch shows an error with a wrong key and turns sync off with the right one', async () => {
    const toggle = page.locator('#toggle');
    await page.fill('#api-key', 'not-the-key-0123456789');
    await toggle.click();
    await page.locator('#toggle-message.error', { hasText: 'Invalid API key' }).waitFor();
    expect((await health()).enabled).toBe(true);
    expect(await toggle.getAttribute('aria-checked')).toBe('true');

    await page.fill('#api-key', API_KEY);
    await toggle.click();
    await page.locator('#toggle-message:not(.error)', { hasText: 'disabled' }).waitFor();
    expect(await toggle.getAttribute('aria-checked')).toBe('false');
    expect((await health()).enabled).toBe(false);
    await expectText('#state-enabled', 'off');
  });

  it('a conflict made by two devices appears in the table', async () => {
    // Sync is off on the service (Atlas → Local), so it cannot see the device's edit before its own.
    await serviceLocal.collection('orders').insertOne({ _id: 'contested' as never, status: 'new' });
    await waitFor(
      async () =>
        (await device!.db.collection('orders').findOne({ _id: 'contested' as never }))?.status ===
        'new',
      { message: 'the order reaches the device', timeoutMs: 20_000 },
    );
    await device!.db
      .collection('orders')
      .updateOne({ _id: 'contested' as never }, { $set: { status: 'from-device' } });
    await waitFor(
      async () =>
        (await atlas.collection('orders').findOne({ _id: 'contested' as never }))?.status ===
        'from-device',
      { message: "the device's edit reaches Atlas", timeoutMs: 20_000 },
    );
    await serviceLocal
      .collection('orders')
      .updateOne({ _id: 'contested' as never }, { $set: { status: 'from-service' } });

    const row = page.locator('#conflicts-body tr', { hasText: 'contested' });
    await row.waitFor({ timeout: 30_000 });
    expect(await row.locator('td').nth(1).textContent()).toBe('orders');
    expect(await row.locator('td').nth(4).textContent()).toBe('last-write-wins');
    const api = (await request(url()).get(`${PATH}/conflicts?collection=orders`).expect(200)).body;
    expect(api.recentConflicts.map((c: { documentId: string }) => c.documentId)).toContain(
      'contested',
    );

    // Filtered by collection: another collection has none, this one has it.
    await page.fill('#conflict-collection', 'menuitems');
    await page.press('#conflict-collection', 'Enter');
    await page.locator('#conflicts-body', { hasText: 'No conflicts in menuitems.' }).waitFor();
    await page.fill('#conflict-collection', 'orders');
    await page.click('#conflict-filter button');
    await row.waitFor();
    await expectText('#conflicts-page', /^1–\d+ of \d+$/);
  });

  it('is keyboard-operable and fits a narrow screen', async () => {
    await page.setViewportSize({ width: 360, height: 800 });
    await page.evaluate(() => (document.activeElement as HTMLElement | null)?.blur());
    // Tab from the top of the page to the switch, then switch sync back on with the space bar.
    let reached = false;
    for (let i = 0; i < 40 && !reached; i++) {
      await page.keyboard.press('Tab');
      reached = await page.evaluate(() => document.activeElement?.id === 'toggle');
    }
    expect(reached).toBe(true);
    await page.keyboard.press('Space');
    await page.locator('#toggle[aria-checked="true"]').waitFor();
    expect((await health()).enabled).toBe(true);

    const overflow = await page.evaluate(
      () => document.documentElement.scrollWidth - document.documentElement.clientWidth,
    );
    expect(overflow).toBeLessThanOrEqual(0);
    // Every control has an accessible name.
    const unnamed = await page.evaluate(() =>
      [...document.querySelectorAll('input, button')]
        .filter((el) => {
          const labelled = (el as HTMLInputElement).labels?.length;
          return !labelled && !el.getAttribute('aria-label') && !el.textContent?.trim();
        })
        .map((el) => el.outerHTML),
    );
    expect(unnamed).toEqual([]);
  });

  it('takes the screenshot shown in the README', async () => {
    await page.setViewportSize({ width: 1280, height: 900 });
    await page.locator('#state-enabled', { hasText: 'on' }).waitFor();
    await page.waitForTimeout(1500); // a couple more points on the charts
    await page.evaluate(() => window.scrollTo(0, 0));
    const file = SCREENSHOT_TO_DOCS
      ? join(ROOT, 'docs', 'dashboard.png')
      : join(workDir, 'dashboard.png');
    const png = await page.screenshot({ fullPage: true });
    writeFileSync(file, png);
    expect(png.subarray(1, 4).toString()).toBe('PNG');
    expect(png.length).toBeGreaterThan(20_000);
  });

  it('logged no errors in the browser console', () => {
    expect(consoleErrors).toEqual([]);
    expect(rejectedToggles).toHaveLength(1); // the wrong key's, and nothing else
  });

  it('the service stops promptly on SIGTERM while the page holds its live stream open', async () => {
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((ok) =>
      child!.once('exit', (code, signal) => ok({ code, signal })),
    );
    const started = Date.now();
    child!.kill('SIGTERM');
    const { code, signal } = await exited;
    // On failure, say how it ended and what the service logged last.
    if (code !== 0 && signal !== 'SIGTERM')
      console.log(
        `service exit code ${code}, signal ${signal}; last output:\n${output.slice(-3000)}`,
      );
    expect(code === 0 || signal === 'SIGTERM').toBe(true);
    expect(Date.now() - started).toBeLessThan(8000);
    expect(output).not.toMatch(/Shutdown did not finish/);
  });

  async function expectText(selector: string, expected: string | RegExp): Promise<void> {
    await waitFor(
      async () => {
        const text = ((await page.textContent(selector)) ?? '').trim();
        return typeof expected === 'string' ? text === expected : expected.test(text);
      },
      { message: `${selector} shows ${expected}`, timeoutMs: 10_000 },
    ).catch(async (err: Error) => {
      throw new Error(
        `${err.message}; it shows ${JSON.stringify(await page.textContent(selector))}`,
      );
    });
  }

  function chartImages(): Promise<{ lag: string; throughput: string }> {
    return page.evaluate(() => ({
      lag: document.querySelector<HTMLCanvasElement>('#lag-chart canvas')!.toDataURL(),
      throughput: document
        .querySelector<HTMLCanvasElement>('#throughput-chart canvas')!
        .toDataURL(),
    }));
  }
});
