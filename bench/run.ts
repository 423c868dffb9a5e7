/**
 * Benchmark program (not a test): `npm run bench -- --help`.
 *
 * Starts its own SecantusDB servers (or uses BENCH_ATLAS_URI / BENCH_LOCAL_URIS),
 * runs each scenario of issue 6 several times, prints medians, writes
 * bench-results/latest.json and (for a full run) docs/benchmarks.md with an SVG
 * chart. Every server and device process is torn down on exit, error or Ctrl-C.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs, ScenarioName } from './lib/args';
import { buildDeviceProcess, PROJECT_ROOT } from './lib/build';
import type { BenchContext } from './lib/context';
import { describeDemand, floorDemand } from './lib/demand';
import { killAllHosts, readyMarks } from './lib/device-host';
import { loadAverage, procRssBytes } from './lib/proc';
import { summarizeProfile, topCommands } from './lib/profile';
import type { CommandStats } from './lib/protocol';
import type { BenchResults, ProfileEntry } from './lib/results';
import { BENCH_SERVER_CACHE, ServerPool, usingExternalServers } from './lib/servers';
import { jsonSafe } from './lib/stats';
import { evaluateTargets } from './lib/targets';
import { MECHANISM_HEADING, mechanismSection } from './report/mechanism-section';
import { analysisSection, ANALYSIS_HEADING, lagChart, renderMarkdown } from './report/markdown';
import { markSection, mergeResults, replaceSection } from './report/page-sections';
import { runMechanism } from './scenarios/mechanism';
import { runBaseline } from './scenarios/baseline';
import { measureCatchup, runCatchup } from './scenarios/catchup';
import { runFanin } from './scenarios/fanin';
import { measureLag, runLag } from './scenarios/lag';
import { runPlanner } from './scenarios/planner';
import { serviceNodeFlags } from '../test/support/service-command';
import { measureMode, runThroughput } from './scenarios/throughput';

function git(...args: string[]): string {
  try {
    return execFileSync('git', args, { cwd: PROJECT_ROOT, encoding: 'utf8' }).trim();
  } catch {
    return '';
  }
}

function engineCommit(): string {
  const head = git('rev-parse', '--short', 'HEAD') || 'unknown commit';
  const dirty = git('status', '--porcelain', '--', 'src').length > 0;
  return `commit ${head}${dirty ? ' with uncommitted changes under src/' : ''}`;
}

async function profilePass(ctx: BenchContext): Promise<ProfileEntry[]> {
  const entries: ProfileEntry[] = [];
  const profile = (label: string) => {
    const file = join(ctx.profileDir, `${label}.cpuprofile`);
    return existsSync(file) ? summarizeProfile(file, readyMarks.get(label) ?? 0) : null;
  };
  const entry = (
    scenario: string,
    process: string,
    label: string,
    commands: CommandStats | undefined,
    rest: Pick<ProfileEntry, 'serverCpu' | 'footprint'>,
  ): ProfileEntry => ({
    scenario,
    process,
    summary: profile(label),
    commands: topCommands(commands ?? {}),
    ...rest,
  });

  ctx.log('profiling pass: Local → Atlas saturation');
  const up = await measureMode(ctx, 'localToAtlas', 'prof', { profile: true, withConfirm: false });
  entries.push(
    entry(
      'Local → Atlas saturation',
      'device',
      'throughput-localToAtlas-prof',
      up.commandStats,
      up,
    ),
  );
  ctx.log('profiling pass: Atlas → Local saturation');
  const down = await measureMode(ctx, 'atlasToLocal', 'prof', {
    profile: true,
    withConfirm: false,
  });
  entries.push(
    entry(
      'Atlas → Local saturation',
      'device',
      'throughput-atlasToLocal-prof',
      down.commandStats,
      down,
    ),
  );
  const rate = Math.max(...ctx.args.lagRates);
  ctx.log(`profiling pass: lag at ${rate}/s`);
  const lag = await measureLag(ctx, rate, 'prof', { profile: true });
  entries.push(
    entry(
      `Lag at ${rate}/s`,
      'device A (sender)',
      `lag${rate}-sender-prof`,
      lag.commandStats?.sender,
      {
        serverCpu: lag.serverCpu,
        footprint: lag.footprint.sender,
      },
    ),
    entry(
      `Lag at ${rate}/s`,
      'device B (receiver)',
      `lag${rate}-receiver-prof`,
      lag.commandStats?.receiver,
      {
        serverCpu: lag.serverCpu,
        footprint: lag.footprint.receiver,
      },
    ),
  );
  // A smaller backlog than the measured runs: where the time goes does not change with
  // the size (memory and rate are flat from 20,000 up), and command monitoring slows it.
  const profiled = Math.min(ctx.args.catchup, PROFILED_CATCHUP);
  ctx.log(`profiling pass: catch-up of ${profiled} changes`);
  const cu = await measureCatchup(ctx, profiled, 'prof', { profile: true });
  entries.push(
    entry(`Catch-up of ${profiled} changes`, 'device', 'catchup-prof', cu.commandStats, cu),
  );
  return entries;
}

const PROFILED_CATCHUP = 20_000;

/** Scenarios that count the engine's commands per synced change. */
const COUNTED: ScenarioName[] = ['throughput', 'lag', 'catchup'];

const LATENCY_KEYS = new Set(['p50', 'p95', 'p99', 'max', 'confirmLagP99']);

/** The lag rate the targets are judged at: 1,000/s when it ran, else the highest rate. */
function reportLagRate(results: BenchResults): number {
  const rates = results.meta.parameters.lagRates as number[] | undefined;
  return rates?.length ? (rates.includes(1000) ? 1000 : Math.max(...rates)) : 1000;
}

/**
 * Scenarios with a section of their own: a run of only these writes just
 * their sections (and the Analysis, from its source) into the page another
 * run produced, and just their keys into docs/benchmarks.json.
 */
const OWN_SECTIONS: Partial<Record<ScenarioName, (r: BenchResults) => string[] | undefined>> = {
  mechanism: (r) => r.mechanism && markSection('mechanism', mechanismSection(r.mechanism)),
};

const DOCS_MD = join(PROJECT_ROOT, 'docs', 'benchmarks.md');
const DOCS_JSON = join(PROJECT_ROOT, 'docs', 'benchmarks.json');
const ANALYSIS_FILE = join(PROJECT_ROOT, 'bench', 'ANALYSIS.md');

const readAnalysis = () =>
  existsSync(ANALYSIS_FILE) ? readFileSync(ANALYSIS_FILE, 'utf8') : undefined;

function readDocsJson(): Record<string, unknown> | undefined {
  return existsSync(DOCS_JSON) ? JSON.parse(readFileSync(DOCS_JSON, 'utf8')) : undefined;
}

/** The scenarios of a run that has nothing but sections of its own, else undefined. */
function ownSectionsOnly(results: BenchResults): ScenarioName[] | undefined {
  const ran = (results.meta.parameters.scenarios as ScenarioName[] | undefined) ?? [];
  return ran.length && existsSync(DOCS_MD) && ran.every((s) => OWN_SECTIONS[s]) ? ran : undefined;
}

function writeSections(results: BenchResults, ran: ScenarioName[], log: (m: string) => void): void {
  let page = readFileSync(DOCS_MD, 'utf8');
  for (const name of ran) {
    const block = OWN_SECTIONS[name]!(results);
    if (block)
      page = replaceSection(page, name, block, {
        heading: MECHANISM_HEADING,
        insertBefore: "## Server cost of the engine's filter shapes",
      });
  }
  const analysis = readAnalysis();
  if (analysis)
    page = replaceSection(page, 'analysis', analysisSection(analysis), {
      heading: ANALYSIS_HEADING,
    });
  writeFileSync(DOCS_MD, page);
  const merged = mergeResults(
    readDocsJson(),
    jsonSafe(results) as unknown as Record<string, unknown>,
    ran,
  );
  writeFileSync(DOCS_JSON, `${JSON.stringify(merged, null, 2)}\n`);
  log(
    `wrote the ${ran.join(', ')} section of docs/benchmarks.md (and the Analysis) and its key in docs/benchmarks.json`,
  );
}

function writeDocs(results: BenchResults, log: (m: string) => void): void {
  const ran = ownSectionsOnly(results);
  if (ran) return writeSections(results, ran, log);
  // A full page from a run that lacks an own-section scenario keeps that section's last figures.
  const previous = readDocsJson() as Partial<BenchResults> | undefined;
  if (!results.mechanism && previous?.mechanism) results.mechanism = previous.mechanism;
  const lagRate = reportLagRate(results);
  const chart = lagChart(results);
  const chartName = 'benchmarks-lag.svg';
  if (chart) writeFileSync(join(PROJECT_ROOT, 'docs', chartName), chart);
  const md = renderMarkdown(results, {
    chartFile: chart ? chartName : undefined,
    analysis: readAnalysis(),
    lagRate,
  });
  writeFileSync(DOCS_MD, md);
  // The results behind the page, kept with it (bench-results/ is not committed).
  writeFileSync(DOCS_JSON, `${JSON.stringify(jsonSafe(results), null, 2)}\n`);
  log(`wrote docs/benchmarks.md, docs/benchmarks.json${chart ? ` and docs/${chartName}` : ''}`);
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (args.reportOnly) {
    // JSON holds ∞ (undelivered) as null.
    const results = JSON.parse(
      readFileSync(resolve(PROJECT_ROOT, args.outDir, 'latest.json'), 'utf8'),
      (k, v) => (v === null && LATENCY_KEYS.has(k) ? Infinity : v),
    ) as BenchResults;
    // Judged again, so an older results file shows today's targets (its missing figures as not measured).
    results.targets = evaluateTargets(results, reportLagRate(results));
    writeDocs(results, console.log);
    return;
  }
  const t0 = Date.now();
  const log = (message: string) =>
    console.log(`[bench ${((Date.now() - t0) / 1000).toFixed(0).padStart(4)} s] ${message}`);
  const outDir = resolve(PROJECT_ROOT, args.outDir);
  const profileDir = join(outDir, 'profiles');
  rmSync(profileDir, { recursive: true, force: true });
  mkdirSync(outDir, { recursive: true });

  // Enough oplog for an offline device's backlog (its writes, stamps and outbox traffic), and no more:
  // a bigger oplog of 1 KiB entries outgrows the server's 1 GB cache and slows every later scenario.
  const pool = new ServerPool(Math.max(200_000, 20 * args.catchup));
  let interrupted = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupted) return;
    interrupted = true;
    log(`${signal}: stopping device processes and servers`);
    killAllHosts();
    void pool.destroy().finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('exit', () => {
    killAllHosts();
    pool.killNow();
  });

  const cpus = os.cpus();
  const results: BenchResults = {
    meta: {
      startedAt: new Date(t0).toISOString(),
      command: args.commandLine,
      runs: args.runs,
      machine: {
        cpuModel: cpus[0]?.model.trim() ?? 'unknown',
        cpuCount: cpus.length,
        cpuMHz: cpus[0]?.speed ?? 0,
        totalMemGiB: os.totalmem() / 1024 ** 3,
        node: process.version,
        deviceNodeFlags: serviceNodeFlags(),
        platform: os.platform(),
        kernel: os.release(),
        loadAvgStart: loadAverage(),
      },
      servers: '',
      engineCommit: engineCommit(),
      syncOptions: args.syncOptions,
      serverRssMiB: {},
      parameters: {
        scenarios: args.scenarios,
        catchup: args.catchup,
        catchupCapSeconds: args.catchupCapSeconds,
        lagRates: args.lagRates,
        lagSeconds: args.lagSeconds,
        waitCapSeconds: args.waitCapSeconds,
        throughputSeconds: args.throughputSeconds,
        faninDevices: args.faninDevices,
        faninServers: args.faninServers,
        faninWrites: args.faninWrites,
        faninCapSeconds: args.faninCapSeconds,
        commandCounts: args.commandCounts,
      },
    },
    targets: [],
  };

  try {
    log('compiling the device process');
    const deviceEntry = buildDeviceProcess(join(PROJECT_ROOT, 'bench-results', '.build'));
    log(
      usingExternalServers
        ? 'connecting to the given servers'
        : 'starting SecantusDB servers (Atlas, device A, device B)',
    );
    const [atlas, localA, localB] = await pool.startAtlasAndLocals(2);
    const info = await atlas.client.db('admin').command({ buildInfo: 1 });
    results.meta.servers = usingExternalServers
      ? `external (BENCH_ATLAS_URI / BENCH_LOCAL_URIS), MongoDB ${info.version}`
      : `SecantusDB ${info.secantusVersion ?? '?'} (reports MongoDB ${info.version}), each server one Python process on loopback: ` +
        `"Atlas", device A's and device B's local servers (fan-in adds ${args.faninServers}); in-memory storage (WiredTiger cache ${BENCH_SERVER_CACHE}), retryable writes off for every client (docs/test-server.md D10), oplog cap ${pool.oplogMaxEntries.toLocaleString('en-US')} entries`;
    const ctx: BenchContext = {
      args,
      pool,
      atlas,
      localA,
      localB,
      deviceEntry,
      profileDir,
      syncOptions: args.syncOptions,
      log,
    };

    const scenarios: Record<ScenarioName, () => Promise<void>> = {
      baseline: async () => void (results.baseline = await runBaseline(ctx)),
      planner: async () => void (results.planner = await runPlanner(ctx)),
      throughput: async () => void (results.throughput = await runThroughput(ctx)),
      lag: async () => void (results.lag = await runLag(ctx)),
      catchup: async () => void (results.catchup = await runCatchup(ctx)),
      fanin: async () => void (results.fanin = await runFanin(ctx)),
      mechanism: async () =>
        void (results.mechanism = {
          producedBy: {
            engineCommit: results.meta.engineCommit,
            command: results.meta.command,
            startedAt: results.meta.startedAt,
            servers: results.meta.servers,
            loadAvgStart: loadAverage(),
          },
          ...(await runMechanism(ctx)),
        }),
    };
    if (args.commandCounts && args.scenarios.some((s) => COUNTED.includes(s))) {
      const batch = args.syncOptions.changeStreamBatchSize ?? 100;
      log(
        `engine demand floor (engineering notes §7; change-stream batches of ${batch}): one event read on the source, ` +
          'one document written on the destination, progress saved once per batch',
      );
      for (const d of ['localToAtlas', 'atlasToLocal'] as const)
        for (const line of describeDemand(floorDemand(d, batch))) log(`  ${d}: ${line}`);
    }
    for (const name of args.scenarios) {
      log(`scenario ${name}`);
      await scenarios[name]();
      results.meta.serverRssMiB[name] = Object.fromEntries(
        pool.all.map((s) => [s.name, Math.round((procRssBytes(s.pid) ?? NaN) / 2 ** 20)]),
      );
    }
    if (args.profile && args.scenarios.some((s) => ['throughput', 'lag', 'catchup'].includes(s)))
      results.profiles = await profilePass(ctx);

    const lagRate = args.lagRates.includes(1000) ? 1000 : Math.max(...args.lagRates);
    results.targets = evaluateTargets(results, lagRate);
    results.meta.finishedAt = new Date().toISOString();
    results.meta.durationSeconds = (Date.now() - t0) / 1000;
    results.meta.machine.loadAvgEnd = loadAverage();

    const jsonFile = join(outDir, 'latest.json');
    writeFileSync(jsonFile, JSON.stringify(jsonSafe(results), null, 2));
    log(`wrote ${jsonFile}`);
    if (args.writeDocs) writeDocs(results, log);
    console.log('\nTargets (medians):');
    for (const t of results.targets)
      console.log(
        `  ${t.met === null ? '–     ' : t.met ? 'MET   ' : 'MISSED'} ${t.name}: ${t.measured} (required ${t.required})`,
      );
    console.log(`\nTotal ${((Date.now() - t0) / 60000).toFixed(1)} min.`);
  } finally {
    killAllHosts();
    await pool.destroy();
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
