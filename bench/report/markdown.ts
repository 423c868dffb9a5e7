import { cpuMs } from '../scenarios/baseline';
import type { BenchResults, ProfileEntry } from '../lib/results';
import { LatencySummary, median } from '../lib/stats';
import { demandSection } from './demand-section';
import { mechanismSection } from './mechanism-section';
import { markSection } from './page-sections';
import { lineChartSvg, Series, sparkline } from './svg';

const int = (x: number | null | undefined) =>
  x === null || x === undefined || Number.isNaN(x)
    ? '–'
    : Number.isFinite(x)
      ? Math.round(x).toLocaleString('en-US')
      : '∞';
const ms = (x: number | null | undefined, digits = 0) =>
  x === null || x === undefined || Number.isNaN(x)
    ? '–'
    : Number.isFinite(x)
      ? x >= 10_000
        ? `${(x / 1000).toFixed(1)} s`
        : `${x.toFixed(digits)} ms`
      : '> cap';
const pct = (x: number | undefined) =>
  x === undefined || Number.isNaN(x) ? '–' : `${x.toFixed(0)}%`;
const ratio = (x: number, base: number | undefined) => (base ? `${(x / base).toFixed(3)}×` : '–');
const mib = (x: number | undefined) =>
  x === undefined || Number.isNaN(x) ? '–' : `${x.toFixed(0)} MiB`;

function table(header: string[], rows: string[][]): string {
  return [
    `| ${header.join(' | ')} |`,
    `| ${header.map(() => '---').join(' | ')} |`,
    ...rows.map((r) => `| ${r.join(' | ')} |`),
  ].join('\n');
}

function latencyCells(s: LatencySummary | undefined): string[] {
  return s ? [ms(s.p50, 1), ms(s.p95, 1), ms(s.p99, 1), ms(s.max, 1)] : ['–', '–', '–', '–'];
}

/** Server CPU ms, `not measured` when an older results file lacks the figure. */
function measuredCpuMs(x: number | undefined): string {
  return x === undefined ? 'not measured' : cpuMs(x);
}

function cpuCells(cpu: Record<string, { cpuPercent: number }>): string {
  return Object.entries(cpu)
    .map(([name, c]) => `${name} ${pct(c.cpuPercent)}`)
    .join(', ');
}

/** Median server CPU ms per delivered change during saturation (all directions of the mode together). */
function cpuPerChange(runs: NonNullable<BenchResults['throughput']>['runs'], mode: string): string {
  const per = (server: string) =>
    median(
      runs.map((run) => {
        const mr = run.find((x) => x.mode === mode);
        if (!mr) return NaN;
        const delivered = Object.values(mr.directions).reduce(
          (a, d) => a + d!.perSecond.reduce((x, y) => x + y, 0),
          0,
        );
        return ((mr.serverCpu[server]?.cpuSeconds ?? NaN) * 1000) / delivered;
      }),
    );
  return `${per('local').toFixed(1)} / ${per('atlas').toFixed(1)} ms`;
}

/** The lag chart (SVG): p50/p99 per second of each offered load, with the raw change-stream p99 for reference. */
export function lagChart(r: BenchResults): string | undefined {
  if (!r.lag) return undefined;
  const colors = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd'];
  const series: Series[] = [];
  Object.entries(r.lag.representative).forEach(([rate, run], i) => {
    const color = colors[i % colors.length];
    series.push({
      label: `sync p99 at ${rate}/s`,
      color,
      points: run.series.map((p) => [p.second + 0.5, p.p99]),
    });
    series.push({
      label: `sync p50 at ${rate}/s`,
      color,
      dashed: true,
      points: run.series.map((p) => [p.second + 0.5, p.p50]),
    });
    const raw = r.baseline?.median.changeStreamLoaded[rate];
    if (raw)
      series.push({
        label: `raw change stream p99 at ${rate}/s`,
        color: i ? '#ff9896' : '#aec7e8',
        dashed: true,
        points: [
          [0, raw.p99],
          [run.series.length, raw.p99],
        ],
      });
  });
  return lineChartSvg(series, {
    title: 'Lag over time: write on device A → visible on device B (representative run)',
    xLabel: 'second of the load window (operations grouped by scheduled write time)',
    yLabel: 'lag (log scale); ✕ = not delivered within the wait cap',
  });
}

function profileSection(p: ProfileEntry): string {
  const lines = [`#### ${p.scenario}: ${p.process}`, ''];
  lines.push(
    `Sync process: ${pct(p.footprint.cpuPercent)} of a core, RSS peak ${mib(p.footprint.rssPeakMiB)}. ` +
      `Servers in the same window: ${cpuCells(p.serverCpu)}.`,
    '',
  );
  if (p.summary) {
    lines.push(
      `CPU profile after start-up (${p.summary.busyMs.toFixed(0)} ms busy in ${p.summary.wallMs.toFixed(0)} ms): ` +
        Object.entries(p.summary.categories)
          .map(([c, share]) => `${c} ${share.toFixed(0)}%`)
          .join(', ') +
        '.',
      '',
      table(
        ['self time', 'share of busy', 'function', 'where', 'category'],
        p.summary.top
          .slice(0, 8)
          .map((t) => [
            ms(t.selfMs),
            `${t.percentOfBusy.toFixed(1)}%`,
            `\`${t.fn}\``,
            t.where ? `\`${t.where}\`` : '–',
            t.category,
          ]),
      ),
      '',
    );
  }
  if (p.commands.length) {
    lines.push(
      'Driver commands by total time waited on the server (getMore includes the `maxAwaitTimeMS` idle wait):',
      '',
      table(
        ['command', 'count', 'total', 'avg', 'max'],
        p.commands.map((c) => [
          `\`${c.command}\``,
          int(c.count),
          ms(c.totalMs),
          ms(c.avgMs, 1),
          ms(c.maxMs),
        ]),
      ),
      '',
    );
  }
  return lines.join('\n');
}

export const ANALYSIS_HEADING = '## Analysis';

/** The hand-written Analysis (bench/ANALYSIS.md), marked so a partial run can refresh it alone. */
export function analysisSection(analysis: string): string[] {
  return markSection('analysis', [ANALYSIS_HEADING, '', analysis.trim()]);
}

export function renderMarkdown(
  r: BenchResults,
  opts: { chartFile?: string; analysis?: string; lagRate: number },
): string {
  const m = r.meta;
  const bulk = r.baseline?.median.bulkWriteAtlas;
  const out: string[] = [];
  out.push(
    '# Benchmarks',
    '',
    '<!-- Generated by bench/run.ts (npm run bench). Numbers are overwritten on every full run; a run of only `mechanism` with --docs replaces its own section (it says which run produced it); the Analysis section comes from bench/ANALYSIS.md. -->',
    '',
    'How much the sync module carries, how fast changes arrive, how quickly it catches up and what it',
    'costs, each as a ratio to the raw driver on the same servers measured in the same run',
    "(engineering notes §5); the targets are issue 13's. Medians of",
    `${m.runs} runs; every run's numbers are in \`docs/benchmarks.json\` (a copy of \`bench-results/latest.json\`).`,
    '',
    '## How these numbers were produced',
    '',
    `- **Command:** \`${m.command}\` (total ${m.durationSeconds ? `${(m.durationSeconds / 60).toFixed(1)} min` : '–'}, ${m.startedAt}).`,
    `- **Machine:** ${m.machine.cpuCount} × ${m.machine.cpuModel}${m.machine.cpuMHz ? ` @ ${m.machine.cpuMHz} MHz` : ''}, ` +
      `${m.machine.totalMemGiB.toFixed(1)} GiB RAM, Node ${m.machine.node}, ${m.machine.platform} ${m.machine.kernel}. ` +
      `Load average ${m.machine.loadAvgStart.toFixed(2)} at start, ${m.machine.loadAvgEnd?.toFixed(2) ?? '–'} at the end ` +
      "(the machine is shared: other sessions' test runs may overlap).",
    `- **Device processes:** Node flags \`${(m.machine.deviceNodeFlags ?? []).join(' ') || 'none'}\`, ` +
      'those `npm start` gives the service (its heap budget: README, "Memory").',
    `- **Servers:** ${m.servers}. Server RSS after each scenario: ${Object.entries(
      m.serverRssMiB ?? {},
    )
      .map(([s, x]) => `${s} ${Object.values(x).join('/')}`)
      .join(', ')} MiB (Atlas/device A/device B).`,
    `- **Engine:** ${m.engineCommit}. Module options: ${Object.keys(m.syncOptions).length ? `\`${JSON.stringify(m.syncOptions)}\`` : 'the module defaults (e.g. `outboxDrainInterval` 250 ms, `outboxBatchSize` 500, `changeStreamBatchSize` 100, `applyConcurrency` 16)'}.`,
    '- **Devices** run as child processes (`bench/device-process.ts`, compiled to plain JavaScript first), one Nest application per device built as `test/support/sync-device.ts` builds it; ' +
      'the benchmark process writes with its own driver client and watches the destination with its own change stream. Documents are 1 KiB (`bench/lib/docs.ts`).',
    '',
    '## Targets',
    '',
    table(
      ['target', 'required', 'measured (median)', 'met'],
      r.targets.map((t) => [
        t.name,
        t.required,
        t.measured,
        t.met === null ? '–' : t.met ? '**yes**' : '**no**',
      ]),
    ),
    '',
  );

  if (r.baseline) {
    const b = r.baseline;
    out.push(
      '## 1. Baselines (raw driver, same servers, same run)',
      '',
      table(
        ['measure', 'median', 'runs'],
        [
          [
            '`bulkWrite` unordered, 1 KiB inserts, batches of 1000 — "Atlas" server',
            `${int(b.median.bulkWriteAtlas)} docs/s`,
            b.runs.map((x) => int(x.bulkWriteAtlas)).join(', '),
          ],
          [
            "same, a device's local server",
            `${int(b.median.bulkWriteLocal)} docs/s`,
            b.runs.map((x) => int(x.bulkWriteLocal)).join(', '),
          ],
          [
            'change stream, write → event, one write at a time: p50 / p95 / p99',
            latencyCells(b.median.changeStreamIdle).slice(0, 3).join(' / '),
            b.runs.map((x) => ms(x.changeStreamIdle.p99, 1)).join(', '),
          ],
          ...Object.entries(b.median.changeStreamLoaded).map(([rate, s]) => [
            `change stream under the lag scenario's load (${rate}/s, 60/30/10 mix): p50 / p95 / p99`,
            latencyCells(s).slice(0, 3).join(' / '),
            b.runs.map((x) => ms(x.changeStreamLoaded[rate]?.p99, 1)).join(', '),
          ]),
          [
            'change stream delivery while bulk inserts run flat out',
            `${int(b.median.changeStreamThroughput)} events/s`,
            b.runs.map((x) => int(x.changeStreamThroughput)).join(', '),
          ],
          [
            'server CPU per raw `bulkWrite` insert — "Atlas" server',
            measuredCpuMs(b.median.insertCpuMs?.atlas),
            b.runs.map((x) => cpuMs(x.insertCpuMs?.atlas)).join(', '),
          ],
          [
            "same, a device's local server (the unit of the local-CPU target)",
            measuredCpuMs(b.median.insertCpuMs?.local),
            b.runs.map((x) => cpuMs(x.insertCpuMs?.local)).join(', '),
          ],
          [
            'server CPU per raw change-stream event delivered flat out ("Atlas" server, the insert that caused it included)',
            measuredCpuMs(b.median.changeStreamEventCpuMs),
            b.runs.map((x) => cpuMs(x.changeStreamEventCpuMs)).join(', '),
          ],
        ],
      ),
      '',
      `During the Atlas \`bulkWrite\` the processes used ${b.runs[0] ? cpuCells(b.runs[0].bulkWriteCpu) : '–'}` +
        (b.runs[0]?.bulkWriteLocalCpu
          ? `, during the local one ${cpuCells(b.runs[0].bulkWriteLocalCpu)}`
          : '') +
        ' (first run): ' +
        'the raw baseline is itself bound by the single-process Python server.',
      '',
    );
  }

  if (r.throughput) {
    const t = r.throughput;
    out.push(
      '## 2. Sustained throughput',
      '',
      `One device. **Saturation:** for ${m.parameters.throughputSeconds} s the benchmark keeps 1,000 documents in flight through the pipeline ` +
        '(1 KiB inserts, `insertMany` of 500 whenever the backlog allows) and counts arrivals at the destination with a change stream; ' +
        "the rate is taken over the last two thirds of the window. Local → Atlas writes into the device's local database; Atlas → Local writes " +
        "documents stamped as another device's pushes into Atlas. **Confirmation:** after the backlog drains, an open-loop load of 0.8 × the " +
        `saturation rate runs for 5 s; it counts as *bounded* when every change arrives within 2 s of the window's end and the p99 lag of the ` +
        'second half stays under 1 s. The sustained figure is the confirmed load.',
      '',
      table(
        [
          'mode',
          'direction',
          'saturation events/s',
          '× bulkWrite',
          'confirmed (bounded) load',
          'p99 lag at 0.8×',
          'bounded runs',
          'server CPU per change: local / Atlas',
        ],
        Object.entries(t.median).flatMap(([mode, dirs]) =>
          Object.entries(dirs).map(([d, x]) => [
            mode === 'both' ? 'both at once' : 'one direction',
            d === 'localToAtlas' ? 'Local → Atlas' : 'Atlas → Local',
            int(x!.saturationRate),
            ratio(x!.saturationRate, bulk),
            Number.isFinite(x!.confirmedRate)
              ? `${int(x!.confirmedRate)}/s (${ratio(x!.confirmedRate, bulk)})`
              : 'none',
            ms(x!.confirmLagP99),
            `${x!.boundedRuns}/${t.runs.length}`,
            cpuPerChange(t.runs, mode),
          ]),
        ),
      ),
      '',
      'Per-second deliveries during saturation (first run): ' +
        t.runs[0]
          .flatMap((mr) =>
            Object.entries(mr.directions).map(
              ([d, x]) => `${mr.mode}/${d}: ${x!.perSecond.join(' ')}`,
            ),
          )
          .join('; ') +
        '.',
      '',
    );
  }

  if (r.lag) {
    const l = r.lag;
    out.push(
      '## 3. Lag percentiles',
      '',
      `Device A's local database receives an open-loop 60/30/10 insert/update/delete mix on 1 KiB documents for ${m.parameters.lagSeconds} s; ` +
        "each change's lag runs from its *scheduled* write time (so a lagging generator cannot hide latency) until device B's local " +
        "database shows it (B's own change stream, matched by a sequence number in the document; a document the engine coalesced " +
        `away counts when its tombstone lands). Changes not visible ${m.parameters.waitCapSeconds} s after the window are *undelivered* and count as ∞.`,
      '',
      table(
        [
          'offered load',
          'p50',
          'p95',
          'p99',
          'max',
          'undelivered',
          'raw change-stream p99 at the same load',
          'p99 − raw p99',
        ],
        Object.entries(l.median).map(([rate, s]) => {
          const raw = r.baseline?.median.changeStreamLoaded[rate];
          return [
            `${rate}/s`,
            ...latencyCells(s),
            `${int(s.undelivered)} of ${int(s.n)}`,
            ms(raw?.p99, 1),
            raw && Number.isFinite(s.p99) ? ms(s.p99 - raw.p99) : '–',
          ];
        }),
      ),
      '',
    );
    if (opts.chartFile) out.push(`![Lag over time](${opts.chartFile})`, '');
    const all = Object.values(l.representative).flatMap((x) =>
      x.series.flatMap((p) => [p.p50, p.p99]),
    );
    const finite = all.filter(Number.isFinite);
    const lo = Math.min(...finite, 1);
    const hi = Math.max(...finite, 10);
    out.push(
      `Per second of the window (log scale ${ms(lo)} … ${ms(hi)}, ✕ = undelivered):`,
      '',
      '```text',
      ...Object.entries(l.representative).flatMap(([rate, run]) => [
        `${rate.padStart(5)}/s p50 ${sparkline(
          run.series.map((p) => p.p50),
          lo,
          hi,
        )}`,
        `${rate.padStart(5)}/s p99 ${sparkline(
          run.series.map((p) => p.p99),
          lo,
          hi,
        )}`,
      ]),
      '```',
      '',
      table(
        ['offered load', 'op', 'p50', 'p95', 'p99', 'max'],
        Object.entries(l.representative).flatMap(([rate, run]) =>
          (['insert', 'update', 'delete'] as const).map((op) => [
            `${rate}/s`,
            op,
            ...latencyCells(run.byOp[op]),
          ]),
        ),
      ),
      '',
      `Generator health (representative runs): ` +
        Object.entries(l.representative)
          .map(
            ([rate, run]) =>
              `${rate}/s achieved ${run.load.achievedRate.toFixed(0)}/s, worst send delay ${ms(run.load.lateMaxMs)}`,
          )
          .join('; ') +
        '.',
      '',
    );
  }

  if (r.catchup) {
    const c = r.catchup;
    const rows = [...c.runs, ...(c.small ? [c.small] : [])].map((x, i) => [
      i < c.runs.length ? `run ${i + 1}` : 'smaller backlog',
      `${int(x.local)} + ${int(x.atlas)}`,
      ms(x.readyMs),
      x.convergeMs === null
        ? `> ${m.parameters.catchupCapSeconds} s (${int(x.synced)} synced)`
        : ms(x.convergeMs),
      `${ms(x.localToAtlasMs)} / ${ms(x.atlasToLocalMs)}`,
      `${int(x.rate)}/s (${ratio(x.rate, bulk)})`,
      `${mib(x.footprint.rssPeakMiB)} (idle ${mib(x.idleRssMiB)})`,
      pct(x.footprint.cpuPercent),
      cpuCells(x.serverCpu),
    ]);
    out.push(
      '## 4. Catch-up',
      '',
      'The device runs once (so its resume tokens are stored) and is stopped (its Nest application closed). While it is offline the ' +
        "benchmark inserts half the changes into its local database and half into Atlas (stamped as another device's pushes), then " +
        'starts a new device process and waits until both sides hold every change. Time runs from the process start.',
      '',
      table(
        [
          '',
          'local + Atlas changes',
          'module ready',
          'converged',
          'L→A / A→L done',
          'rate',
          'RSS peak',
          'sync CPU',
          'servers CPU',
        ],
        rows,
      ),
      '',
      `Median: ${int(c.median.rate)} changes/s (${ratio(c.median.rate, bulk)} bulkWrite), converged in ${ms(c.median.convergeMs)}, ` +
        `${c.median.converged}/${c.runs.length} runs converged within the cap.`,
      '',
      `Progress of the representative run (changes synced per direction, each second): L→A ${c.representative.progress.map((p) => p.localToAtlas).join(' ')}; ` +
        `A→L ${c.representative.progress.map((p) => p.atlasToLocal).join(' ')}.`,
      '',
    );
  }

  if (r.fanin?.length) {
    const first = r.fanin[0];
    out.push(
      '## 5. Fan-in',
      '',
      `Simulated devices, each its own Nest application with its own local database, spread over ${first.servers} local servers, all in ` +
        'one device process (a process per device would need ~100 MiB each; one process still gives every device its own module, ' +
        'Atlas client, capture stream and listener). One shared Atlas. Each device inserts ' +
        `${first.writesPerDevice} documents, one per second, staggered across devices; convergence is when every device and Atlas ` +
        `hold all of them (wait capped at ${m.parameters.faninCapSeconds} s after the last write). Devices start 10 at a time; before ` +
        'the writes the benchmark measures what the idle devices cost.',
      '',
      table(
        [
          'devices',
          'start',
          'idle RSS',
          'idle: token writes / polls per device·s',
          'idle CPU: process, servers',
          'runs',
        ],
        r.fanin.map((f) => [
          `${f.devices}`,
          ms(f.startMs),
          `${mib(f.idleRssMiB)} (${(f.idleRssMiB / f.devices).toFixed(1)} per device)`,
          `${f.idle.tokenWritesPerDeviceSecond.toFixed(1)} / ${f.idle.getMoresPerDeviceSecond.toFixed(1)}`,
          `${pct(f.idle.processCpuPercent)}; ${cpuCells(f.idle.serverCpu)}`,
          f.notRepeated ? `${f.runs.length} (${f.notRepeated})` : `${f.runs.length}`,
        ]),
      ),
      '',
      table(
        [
          'devices',
          'run',
          'writes',
          'write window',
          'all converged after last write',
          'per device p50 / max',
          'devices converged',
          'Atlas complete',
          'process RSS peak',
          'process CPU',
          'servers CPU',
        ],
        r.fanin.flatMap((f) =>
          f.runs.map((x, i) => [
            `${f.devices}`,
            `${i + 1}`,
            int(x.total),
            ms(x.writeWindowMs),
            x.convergeMs === null ? `> ${m.parameters.faninCapSeconds} s` : ms(x.convergeMs),
            `${ms(x.perDevice.p50)} / ${ms(x.perDevice.max)}`,
            `${x.converged}/${f.devices}`,
            ms(x.atlasMs),
            mib(x.footprint.rssPeakMiB),
            pct(x.footprint.cpuPercent),
            cpuCells(x.serverCpu),
          ]),
        ),
      ),
      '',
    );
  }

  {
    const rows: string[][] = [];
    if (r.lag)
      for (const [rate, run] of Object.entries(r.lag.representative)) {
        rows.push([
          `lag, ${rate}/s`,
          'device A (writes, pushes)',
          mib(run.footprint.sender.rssPeakMiB),
          pct(run.footprint.sender.cpuPercent),
          cpuCells(run.serverCpu),
        ]);
        rows.push([
          `lag, ${rate}/s`,
          'device B (pulls, applies)',
          mib(run.footprint.receiver.rssPeakMiB),
          pct(run.footprint.receiver.cpuPercent),
          '',
        ]);
      }
    if (r.throughput)
      for (const mr of r.throughput.runs[0] ?? [])
        rows.push([
          `throughput saturation, ${mr.mode}`,
          'device',
          mib(mr.footprint.rssPeakMiB),
          pct(mr.footprint.cpuPercent),
          cpuCells(mr.serverCpu),
        ]);
    if (r.catchup)
      rows.push([
        'catch-up',
        'device',
        mib(r.catchup.representative.footprint.rssPeakMiB),
        pct(r.catchup.representative.footprint.cpuPercent),
        cpuCells(r.catchup.representative.serverCpu),
      ]);
    for (const f of r.fanin ?? [])
      if (f.runs[0])
        rows.push([
          `fan-in`,
          `${f.devices} devices in one process`,
          mib(f.runs[0].footprint.rssPeakMiB),
          pct(f.runs[0].footprint.cpuPercent),
          cpuCells(f.runs[0].serverCpu),
        ]);
    if (rows.length)
      out.push(
        '## 6. Footprint',
        '',
        "RSS and CPU are the device process's own (`process.memoryUsage().rss`, `process.cpuUsage()`, sampled every 200 ms over IPC); " +
          'server CPU comes from `/proc/<pid>/stat` over the same window (100% = one core; the machine has ' +
          `${m.machine.cpuCount}). "bench" is the benchmark process itself (load generator and watchers).`,
        '',
        table(
          ['scenario', 'process', 'RSS peak', 'CPU', 'servers and bench CPU in the window'],
          rows,
        ),
        '',
      );
  }

  out.push(...demandSection(r, '## 7. Engine demand per synced change'));
  if (r.mechanism) out.push(...markSection('mechanism', mechanismSection(r.mechanism)));

  if (r.planner) {
    out.push(
      "## Server cost of the engine's filter shapes",
      '',
      `Each shape runs ${r.planner.opsPerShape} operations (one \`bulkWrite\`, or one query) against collections of ${r.planner.sizes.join(' and ')} documents on the "Atlas" server. ` +
        'A cost per operation that grows with the collection means the server scans the collection instead of using the `_id` index: ' +
        'each operation is then O(n) and a batch O(n × batch).',
      '',
      table(
        [
          'filter shape',
          'sent by',
          ...r.planner.sizes.map((n) => `ms/op at ${n}`),
          'growth',
          'verdict',
        ],
        r.planner.shapes.map((s) => [
          `\`${s.shape}\``,
          s.usedBy,
          ...r.planner!.sizes.map((n) => s.msPerOp[n].toFixed(3)),
          `×${s.growth.toFixed(1)}`,
          s.growth > 2.5 ? '**scan, O(n)**' : 'index',
        ]),
      ),
      '',
    );
  }

  if (r.profiles?.length) {
    out.push(
      '## Where the time goes (profiling pass)',
      '',
      'One extra run of the scenarios that miss targets, with the device process under `node --cpu-prof` and driver command ' +
        'monitoring on; profiles are in `bench-results/profiles/` (open them in Chrome DevTools).',
      '',
      ...r.profiles.map(profileSection),
    );
  }

  if (opts.analysis) out.push(...analysisSection(opts.analysis));
  return out.join('\n');
}
