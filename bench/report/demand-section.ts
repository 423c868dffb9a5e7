import {
  cpuMsPerChange,
  Demand,
  floorDemand,
  perChange,
  sideCounts,
  SIDES,
  topCommandNames,
  topTargets,
} from '../lib/demand';
import type { BenchResults } from '../lib/results';
import { median } from '../lib/stats';
import { MODES, saturationCpuPerChange } from '../scenarios/throughput';

interface DemandRow {
  scenario: string;
  direction: string;
  demand: Demand;
  /** Server CPU ms per change: the device's local server, Atlas. */
  cpu?: [number, number];
}

const DIRECTION = { localToAtlas: 'Local → Atlas', atlasToLocal: 'Atlas → Local' } as const;

function rows(r: BenchResults): DemandRow[] {
  const out: DemandRow[] = [];
  const t = r.throughput;
  for (const mode of MODES) {
    const demand = t?.demandMedian?.[mode];
    if (!t || !demand) continue;
    const ofMode = t.runs.map((run) => run.find((x) => x.mode === mode)).filter((x) => !!x);
    out.push({
      scenario: `throughput saturation, ${mode === 'both' ? 'both at once' : 'one direction'}`,
      direction: mode === 'both' ? 'both' : DIRECTION[mode],
      demand,
      cpu: [
        median(ofMode.map((x) => saturationCpuPerChange(x, 'local'))),
        median(ofMode.map((x) => saturationCpuPerChange(x, 'atlas'))),
      ],
    });
  }
  for (const [rate, d] of Object.entries(r.lag?.demandMedian ?? {})) {
    const runs = r.lag?.runs[rate] ?? [];
    const parts = [
      ['sender', 'device A pushes: Local → Atlas', 'localA', d.sender],
      ['receiver', 'device B pulls: Atlas → Local', 'localB', d.receiver],
    ] as const;
    for (const [who, direction, local, demand] of parts) {
      if (!demand) continue;
      const cpu = (server: string) =>
        median(
          runs.map((x) =>
            x.demand ? cpuMsPerChange(x.serverCpu, server, x.demand[who].changes) : NaN,
          ),
        );
      const undelivered = r.lag?.median[rate]?.undelivered ?? 0;
      out.push({
        scenario:
          `lag, ${rate}/s mix` +
          (undelivered > 0
            ? ` (${Math.round(undelivered).toLocaleString('en-US')} undelivered: work on changes still in flight counts too)`
            : ''),
        direction,
        demand,
        cpu: [cpu(local), cpu('atlas')],
      });
    }
  }
  const c = r.catchup;
  if (c?.median.demand)
    out.push({
      scenario: `catch-up of ${c.runs[0]?.n.toLocaleString('en-US')} changes`,
      direction: 'both (from process start)',
      demand: c.median.demand,
      cpu: [
        median(
          c.runs.map((x) =>
            x.demand ? cpuMsPerChange(x.serverCpu, 'local', x.demand.changes) : NaN,
          ),
        ),
        median(
          c.runs.map((x) =>
            x.demand ? cpuMsPerChange(x.serverCpu, 'atlas', x.demand.changes) : NaN,
          ),
        ),
      ],
    });
  return out;
}

const cpuCell = (cpu?: [number, number]) =>
  cpu && cpu.some(Number.isFinite) ? `${cpu[0].toFixed(2)} / ${cpu[1].toFixed(2)} ms` : '–';

/**
 * "Engine demand per synced change": what the module's driver clients asked of
 * each server (commands, documents written, documents read), next to the
 * server CPU per change and the floor of engineering notes §7.
 */
export function demandSection(r: BenchResults, heading: string): string[] {
  const measured = rows(r);
  if (!measured.length) return [];
  const batch = Number(r.meta.syncOptions.changeStreamBatchSize ?? 100);
  const floors: DemandRow[] = (['localToAtlas', 'atlasToLocal'] as const).map((d) => ({
    scenario: `**floor** (batches of ${batch})`,
    direction: DIRECTION[d],
    demand: floorDemand(d, batch),
  }));
  const table = (header: string[], body: string[][]) => [
    `| ${header.join(' | ')} |`,
    `| ${header.map(() => '---').join(' | ')} |`,
    ...body.map((x) => `| ${x.join(' | ')} |`),
  ];
  return [
    heading,
    '',
    "Driver command monitoring in each device process counts what the module's own clients (the host's Mongoose connection, " +
      "the module's Atlas client) send to each server: commands, documents the server reports written (inserted, modified or " +
      'upserted, deleted; a ranged delete of 500 outbox entries is one command and 500 documents) and documents returned (cursor ' +
      "batches, change events included). The benchmark's own writers and watchers run in the benchmark process, so they are not " +
      'counted, nor are the readiness polls. Figures are per change the device synced (its own count) over the window: saturation ' +
      'until its backlog drained, the lag window and its drain, the catch-up from process start to convergence. They depend on ' +
      'the engine only, not on the server, so they are the ones to compare with `mongod`. "lookups" are update events of an ' +
      "`updateLookup` change stream that reached the client (each a server-side read of the document); events the server's " +
      '`$match` drops are not seen by the client and not counted, whatever they cost the server. The floor (engineering notes §7): ' +
      'one change event read on the source, one document written on the destination, progress saved once per batch.',
    '',
    ...table(
      [
        'scenario',
        'direction',
        'changes',
        'server CPU per change: local / Atlas',
        'local server, per change',
        'Atlas, per change',
        'local commands per change',
        'Atlas commands per change',
      ],
      [...measured, ...floors].map((x) => [
        x.scenario,
        x.direction,
        Number.isFinite(x.demand.changes)
          ? Math.round(x.demand.changes).toLocaleString('en-US')
          : '–',
        cpuCell(x.cpu),
        sideCounts(x.demand.local),
        sideCounts(x.demand.atlas),
        topCommandNames(x.demand.local) || '–',
        topCommandNames(x.demand.atlas) || '–',
      ]),
    ),
    '',
    'Where the documents go, per change (command and collection; `changeStream` is a change-stream cursor):',
    '',
    ...measured.map(
      (x) =>
        `- ${x.scenario}, ${x.direction}: ` +
        SIDES.map(
          (s) =>
            `${s} writes ${topTargets(x.demand[s], 'written') || 'none'}; ${s} reads ${topTargets(x.demand[s], 'returned') || 'none'}`,
        ).join('; ') +
        (x.demand.local.statements
          ? ` (local write statements ${perChange(x.demand.local.statements)})`
          : '') +
        '.',
    ),
    '',
  ];
}
