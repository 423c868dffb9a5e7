import type { BidirectionalSyncModuleOptions } from '../../src/lib/config/sync-options.interface';

export const SCENARIOS = [
  'baseline',
  'planner',
  'throughput',
  'lag',
  'catchup',
  'fanin',
  'mechanism',
] as const;
export type ScenarioName = (typeof SCENARIOS)[number];

export interface BenchArgs {
  runs: number;
  scenarios: ScenarioName[];
  /** Changes accumulated while the device is offline (half local, half on Atlas). */
  catchup: number;
  catchupCapSeconds: number;
  lagRates: number[];
  lagSeconds: number;
  /** How long to wait for stragglers after a load window before counting them undelivered. */
  waitCapSeconds: number;
  throughputSeconds: number;
  faninDevices: number[];
  faninServers: number;
  faninWrites: number;
  faninCapSeconds: number;
  profile: boolean;
  /** Count the engine's driver commands per synced change (command monitoring) in throughput, lag and catch-up runs. */
  commandCounts: boolean;
  writeDocs: boolean;
  /** Re-render docs/benchmarks.md from the last results without running anything. */
  reportOnly: boolean;
  outDir: string;
  syncOptions: Partial<BidirectionalSyncModuleOptions>;
  commandLine: string;
}

const HELP = `npm run bench -- [options]

  --runs N              runs per scenario, medians reported (default 3)
  --only a,b            scenarios: ${SCENARIOS.join(', ')} (default all)
  --catchup N           changes accumulated offline, half local + half on Atlas (default 100000)
  --catchup-cap S       give up waiting for catch-up convergence after S seconds (default 900)
  --lag-rates R1,R2     offered loads for the lag scenario (default 100,1000)
  --lag-seconds S       load window per lag run (default 10)
  --wait-cap S          wait for stragglers after a load window (default 8)
  --throughput-seconds S  saturation window per direction (default 5)
  --fanin-devices N,M   simulated device counts (default 10,100)
  --fanin-servers K     local servers holding their databases (default 4)
  --fanin-writes M      inserts per device, one per second (default 5)
  --fanin-cap S         give up waiting for fan-in convergence after S seconds (default 120)
  --sync-options JSON   module options for every device (default: the module's defaults)
  --no-profile          skip the --cpu-prof pass
  --no-command-counts   do not count the engine's driver commands per change (command
                        monitoring costs the device process some CPU; the profiling pass counts anyway)
  --docs / --no-docs    write docs/benchmarks.md (default: only for a full run); a run of only
                        scenarios with a section of their own (mechanism) replaces just that
                        section, its key in docs/benchmarks.json and the Analysis (from
                        bench/ANALYSIS.md), leaving the rest of the page as it was
  --out DIR             results directory (default bench-results)
  --report-only         re-render docs/benchmarks.md from DIR/latest.json (e.g. after editing bench/ANALYSIS.md)
  --quick               1 run, short windows, small sizes (smoke test)

Environment: BENCH_ATLAS_URI and BENCH_LOCAL_URIS (comma-separated) use existing
servers (replica-set primaries) instead of starting SecantusDB; server CPU is then
not measured.`;

export function parseArgs(argv: string[]): BenchArgs {
  const args: BenchArgs = {
    runs: 3,
    scenarios: [...SCENARIOS],
    catchup: 100_000,
    catchupCapSeconds: 900,
    lagRates: [100, 1000],
    lagSeconds: 10,
    waitCapSeconds: 8,
    throughputSeconds: 5,
    faninDevices: [10, 100],
    faninServers: 4,
    faninWrites: 5,
    faninCapSeconds: 120,
    profile: true,
    commandCounts: true,
    writeDocs: true,
    reportOnly: false,
    outDir: 'bench-results',
    syncOptions: {},
    commandLine: ['npm run bench', ...(argv.length ? ['--', ...argv] : [])].join(' '),
  };
  let docsChosen: boolean | undefined;
  let partial = false;
  const num = (name: string, raw: string | undefined, min = 0): number => {
    const n = Number(raw);
    if (raw === undefined || !Number.isFinite(n) || n < min)
      throw new Error(`${name} needs a number >= ${min}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = (): string | undefined => argv[++i];
    switch (a) {
      case '--runs':
        args.runs = Math.round(num(a, next(), 1));
        break;
      case '--only': {
        const list = (next() ?? '').split(',').filter(Boolean);
        const bad = list.filter((s) => !(SCENARIOS as readonly string[]).includes(s));
        if (bad.length || !list.length) throw new Error(`--only: unknown scenario(s) ${bad}`);
        args.scenarios = SCENARIOS.filter((s) => list.includes(s));
        partial = true;
        break;
      }
      case '--catchup':
        args.catchup = Math.round(num(a, next(), 2));
        break;
      case '--catchup-cap':
        args.catchupCapSeconds = num(a, next(), 1);
        break;
      case '--lag-rates':
        args.lagRates = (next() ?? '').split(',').map((r) => num(a, r, 1));
        break;
      case '--lag-seconds':
        args.lagSeconds = num(a, next(), 1);
        break;
      case '--wait-cap':
        args.waitCapSeconds = num(a, next(), 1);
        break;
      case '--throughput-seconds':
        args.throughputSeconds = num(a, next(), 2);
        break;
      case '--fanin-devices':
        args.faninDevices = (next() ?? '').split(',').map((d) => Math.round(num(a, d, 2)));
        break;
      case '--fanin-servers':
        args.faninServers = Math.round(num(a, next(), 1));
        break;
      case '--fanin-writes':
        args.faninWrites = Math.round(num(a, next(), 1));
        break;
      case '--fanin-cap':
        args.faninCapSeconds = num(a, next(), 1);
        break;
      case '--sync-options':
        args.syncOptions = JSON.parse(next() ?? '{}');
        break;
      case '--no-profile':
        args.profile = false;
        break;
      case '--no-command-counts':
        args.commandCounts = false;
        break;
      case '--docs':
        docsChosen = true;
        break;
      case '--no-docs':
        docsChosen = false;
        break;
      case '--report-only':
        args.reportOnly = true;
        docsChosen = true;
        break;
      case '--out':
        args.outDir = next() ?? args.outDir;
        break;
      case '--quick':
        Object.assign(args, {
          runs: 1,
          catchup: 1000,
          lagSeconds: 4,
          waitCapSeconds: 5,
          throughputSeconds: 3,
          faninDevices: [4, 10],
          faninServers: 2,
          faninWrites: 3,
        });
        partial = true;
        break;
      case '-h':
      case '--help':
        console.log(HELP);
        process.exit(0);
        break;
      default:
        throw new Error(`unknown option ${a}\n\n${HELP}`);
    }
  }
  args.writeDocs = docsChosen ?? !partial;
  return args;
}
