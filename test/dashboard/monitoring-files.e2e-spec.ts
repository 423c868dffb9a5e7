import { spawnSync } from 'node:child_process';
import { accessSync, constants, readFileSync } from 'node:fs';
import { delimiter, join, resolve } from 'node:path';
import type { MongoClient } from 'mongodb';
import { ApiTestApp } from '../api/api-test-app';
import { itUnless, MongoHarness, uniqueDbName, waitFor } from '../support/mongo-harness';

const ROOT = resolve(__dirname, '..', '..');
const MONITORING = join(ROOT, 'docs', 'monitoring');
const ALERTS = join(MONITORING, 'prometheus-alerts.yml');
const ALERT_TESTS = join(MONITORING, 'prometheus-alerts.test.yml');
const GRAFANA = join(MONITORING, 'grafana-dashboard.json');

/** promtool on PATH or where scripts/install-promtool.js puts it. */
function findPromtool(): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), join(ROOT, '.tools', 'bin')];
  return dirs
    .filter(Boolean)
    .map((d) => join(d, 'promtool'))
    .find((file) => {
      try {
        accessSync(file, constants.X_OK);
        return true;
      } catch {
        return false;
      }
    });
}
const promtool = findPromtool();
const withPromtool = itUnless(
  promtool ? undefined : 'promtool is not installed (run node scripts/install-promtool.js)',
);

/** PromQL expressions of the alert rules (the `expr:` values, block or inline). */
function alertExpressions(yaml: string): string[] {
  const exprs: string[] = [];
  const lines = yaml.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const match = lines[i].match(/^(\s*)expr:\s*(\|)?\s*(.*)$/);
    if (!match) continue;
    if (!match[2]) {
      exprs.push(match[3]);
      continue;
    }
    const block: string[] = [];
    while (
      i + 1 < lines.length &&
      (/^\s*$/.test(lines[i + 1]) || lines[i + 1].search(/\S/) > match[1].length)
    )
      block.push(lines[++i]);
    exprs.push(block.join('\n'));
  }
  return exprs;
}

function grafanaExpressions(): string[] {
  const dashboard = JSON.parse(readFileSync(GRAFANA, 'utf8')) as {
    panels: { targets?: { expr: string }[] }[];
  };
  return dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr));
}

/** Metric names, and `name{label="value"}` equality matchers, a PromQL expression uses. */
function selectors(expr: string): { metric: string; label?: string; value?: string }[] {
  const found: { metric: string; label?: string; value?: string }[] = [];
  for (const m of expr.matchAll(/\b(bidirectional_sync_[a-z_]+)(\{([^}]*)\})?/g)) {
    found.push({ metric: m[1] });
    for (const l of (m[3] ?? '').matchAll(/(\w+)\s*=\s*"([^"$]*)"/g))
      if (l[1] !== 'job' && l[1] !== 'instance')
        found.push({ metric: m[1], label: l[1], value: l[2] });
  }
  return found;
}

/**
 * The Grafana dashboard and the Prometheus alert rules in docs/monitoring
 * name only metrics (and label values) that the service's Prometheus endpoint
 * exposes, hold the specification's three alerts, and pass promtool.
 */
describe('monitoring files (docs/monitoring)', () => {
  const harness = new MongoHarness();
  let app: ApiTestApp;
  let atlasClient: MongoClient;
  let exposition = '';

  beforeAll(async () => {
    const [local, atlas] = await harness.start(2, { name: 'monitoring' });
    const atlasDbName = uniqueDbName('atlas');
    app = await ApiTestApp.start({
      localUri: local.uri,
      localDbName: uniqueDbName('local'),
      atlasUri: atlas.uri,
      atlasDbName,
    });
    atlasClient = await harness.client(atlas);
    // One change each way, so lag quantiles and change counters are exposed.
    await app.db.collection('menuitems').insertOne({ _id: 'espresso' as never, name: 'Espresso' });
    await atlasClient
      .db(atlasDbName)
      .collection('menuitems')
      .insertOne({ _id: 'tea' as never, name: 'Tea' });
    await waitFor(() => app.db.collection('menuitems').findOne({ _id: 'tea' as never }), {
      message: 'Atlas insert applied locally',
    });
    await waitFor(
      async () => {
        exposition = (await app.http.get('/api/sync/bidirectional/metrics/prometheus').expect(200))
          .text;
        return /bidirectional_sync_lag_seconds\{direction="local_to_atlas",quantile="0.5"\}/.test(
          exposition,
        );
      },
      { message: 'lag exposed' },
    );
  }, 60_000);

  afterAll(async () => {
    await app?.close();
    await atlasClient?.close(true);
    await harness.stopAll();
  }, 60_000);

  const exposed = () => new Set([...exposition.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]));

  it.each([
    ['the alert rules', () => alertExpressions(readFileSync(ALERTS, 'utf8'))],
    ['the Grafana dashboard', grafanaExpressions],
  ])('%s name only metrics and label values that /metrics/prometheus exposes', (_, read) => {
    const exprs = read();
    expect(exprs.length).toBeGreaterThanOrEqual(3);
    const used = exprs.flatMap(selectors);
    expect(used.length).toBeGreaterThan(0);
    const names = exposed();
    const missing = used.filter((s) => !names.has(s.metric)).map((s) => s.metric);
    expect([...new Set(missing)]).toEqual([]);
    const missingValues = used
      .filter((s) => s.label)
      .filter(
        (s) => !new RegExp(`^${s.metric}\\{[^}]*${s.label}="${s.value}"`, 'm').test(exposition),
      )
      .map((s) => `${s.metric}{${s.label}="${s.value}"}`);
    expect(missingValues).toEqual([]);
  });

  it("holds the specification's three alerts with its thresholds", () => {
    const yaml = readFileSync(ALERTS, 'utf8');
    const rule = (name: string) => {
      const start = yaml.indexOf(`- alert: ${name}`);
      expect(start).toBeGreaterThanOrEqual(0);
      const next = yaml.indexOf('- alert:', start + 1);
      return yaml.slice(start, next < 0 ? undefined : next);
    };
    expect(rule('BidirectionalSyncHighLag')).toMatch(/lag_seconds[^\n]*> 30\b/); // lag over 30 s
    expect(rule('BidirectionalSyncDown')).toMatch(/for: 5m/); // down for 5 minutes
    expect(rule('BidirectionalSyncHighConflictRate')).toMatch(/conflicts_last_hour\) > 10\b/); // over 10 an hour
  });

  it('the Grafana dashboard is an importable dashboard with unique panel ids', () => {
    const dashboard = JSON.parse(readFileSync(GRAFANA, 'utf8'));
    expect(dashboard).toMatchObject({ title: 'Bidirectional sync', uid: 'bidirectional-sync' });
    const ids = dashboard.panels.map((p: { id: number }) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const p of dashboard.panels) {
      expect(p.datasource).toEqual({ type: 'prometheus', uid: '${datasource}' });
      expect(p.gridPos).toEqual(
        expect.objectContaining({ w: expect.any(Number), h: expect.any(Number) }),
      );
    }
  });

  withPromtool('promtool check rules accepts the alert rules', () => {
    const res = spawnSync(promtool!, ['check', 'rules', ALERTS], { encoding: 'utf8' });
    expect(`${res.stdout}${res.stderr}`).toContain('SUCCESS: 3 rules found');
    expect(res.status).toBe(0);
  });

  withPromtool('promtool test rules: each alert fires when it should and not before', () => {
    const res = spawnSync(promtool!, ['test', 'rules', ALERT_TESTS], {
      encoding: 'utf8',
      cwd: MONITORING,
    });
    expect(`${res.stdout}${res.stderr}`).toContain('SUCCESS');
    expect(res.status).toBe(0);
  });
});
