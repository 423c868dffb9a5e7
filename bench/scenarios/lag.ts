import { BenchContext, deviceSpec, outboxEmptied, settle, startHost } from '../lib/context';
import type { DeviceHost, Footprint } from '../lib/device-host';
import { cpuMsPerChange, Demand, demandBetween, describeDemand, medianDemand } from '../lib/demand';
import { LoadReport, runMixedLoad } from '../lib/load';
import { CpuMeter, CpuShare } from '../lib/proc';
import type { CommandStats } from '../lib/protocol';
import { dropDatabases, uniqueDbName } from '../lib/servers';
import {
  LatencySummary,
  medianIndex,
  medianSummary,
  percentile,
  sortedCopy,
  summarize,
} from '../lib/stats';
import { OpKind, VisibilityTracker } from '../lib/tracker';
import { DestinationWatcher } from '../lib/watch';

export interface LagPoint {
  /** Second of the load window in which the operations were scheduled. */
  second: number;
  n: number;
  p50: number;
  p99: number;
  max: number;
}

export interface LagRun {
  rate: number;
  lag: LatencySummary;
  byOp: Record<OpKind, LatencySummary>;
  series: LagPoint[];
  load: LoadReport;
  /** Footprint of the writing device (A) and the receiving device (B) during the window and drain. */
  footprint: { sender: Footprint; receiver: Footprint };
  serverCpu: Record<string, CpuShare>;
  /** The engine's demand per synced change over the window and drain: A's pushes (Local → Atlas), B's pulls (Atlas → Local). */
  demand?: { sender: Demand; receiver: Demand };
  commandStats?: { sender: CommandStats; receiver: CommandStats };
}

export interface LagResult {
  runs: Record<string, LagRun[]>;
  /** Median demand per rate. */
  demandMedian?: Record<string, { sender?: Demand; receiver?: Demand }>;
  median: Record<string, LatencySummary>;
  /** The run with the median p99, per rate (charted). */
  representative: Record<string, LagRun>;
}

function series(
  results: { issuedAt: number; seenAt: number }[],
  t0: number,
  seconds: number,
): LagPoint[] {
  const buckets: number[][] = Array.from({ length: seconds }, () => []);
  for (const r of results) {
    const i = Math.floor((r.issuedAt - t0) / 1000);
    if (i >= 0 && i < seconds) buckets[i].push(r.seenAt - r.issuedAt);
  }
  return buckets.map((b, second) => {
    const s = sortedCopy(b);
    return {
      second,
      n: s.length,
      p50: percentile(s, 50),
      p99: percentile(s, 99),
      max: s[s.length - 1] ?? NaN,
    };
  });
}

/** Device A writes an open-loop 60/30/10 mix at `rate`; lag is measured until B's local database shows each change. */
export async function measureLag(
  ctx: BenchContext,
  rate: number,
  label: string,
  { profile = false }: { profile?: boolean } = {},
): Promise<LagRun> {
  const atlasDb = uniqueDbName(`lag_${label}`);
  const dbA = uniqueDbName(`laga_${label}`);
  const dbB = uniqueDbName(`lagb_${label}`);
  const hosts: DeviceHost[] = [];
  let watcher: DestinationWatcher | undefined;
  const counted = ctx.args.commandCounts || profile;
  const hostOptions = {
    monitorCommands: counted,
    ...(profile ? { cpuProfileDir: ctx.profileDir } : {}),
  };
  await settle(ctx, `lag ${rate}/s ${label}`);
  try {
    hosts.push(
      ...(await Promise.all([
        startHost(
          ctx,
          `lag${rate}-sender-${label}`,
          [deviceSpec(ctx, ctx.localA, dbA, atlasDb, `lag-a-${label}`)],
          hostOptions,
        ),
        startHost(
          ctx,
          `lag${rate}-receiver-${label}`,
          [deviceSpec(ctx, ctx.localB, dbB, atlasDb, `lag-b-${label}`)],
          hostOptions,
        ),
      ])),
    );
    const [sender, receiver] = hosts;
    const tracker = new VisibilityTracker();
    watcher = await DestinationWatcher.open(ctx.localB.client.db(dbB), 'lag', tracker, {
      tombstones: true,
    });
    const before = counted
      ? await Promise.all([sender.sampleNow(), receiver.sampleNow()])
      : undefined;
    const meter = new CpuMeter({
      atlas: ctx.atlas.pid,
      localA: ctx.localA.pid,
      localB: ctx.localB.pid,
      bench: process.pid,
    }).begin();
    const epoch0 = Date.now();
    const t0 = performance.now();
    const load = await runMixedLoad(ctx.localA.client.db(dbA).collection('lag'), tracker, {
      rate,
      durationMs: ctx.args.lagSeconds * 1000,
      idPrefix: 'd',
    });
    await tracker.drained(ctx.args.waitCapSeconds * 1000);
    const serverCpu = meter.end();
    const epoch1 = Date.now();
    if (before) await outboxEmptied(ctx.localA, dbA);
    const after = before
      ? await Promise.all([sender.sampleNow(), receiver.sampleNow()])
      : undefined;
    const results = tracker.results();
    const lags = results.map((r) => r.seenAt - r.issuedAt);
    const byOp = Object.fromEntries(
      (['insert', 'update', 'delete'] as OpKind[]).map((op) => [
        op,
        summarize(results.filter((r) => r.op === op).map((r) => r.seenAt - r.issuedAt)),
      ]),
    ) as Record<OpKind, LatencySummary>;
    const run: LagRun = {
      rate,
      lag: summarize(lags),
      byOp,
      series: series(results, t0, Math.ceil(ctx.args.lagSeconds)),
      load,
      footprint: {
        sender: sender.footprint(epoch0, epoch1),
        receiver: receiver.footprint(epoch0, epoch1),
      },
      serverCpu,
      demand:
        before && after
          ? {
              sender: demandBetween(before[0], after[0], ['localToAtlas']),
              receiver: demandBetween(before[1], after[1], ['atlasToLocal']),
            }
          : undefined,
    };
    await watcher.close();
    watcher = undefined;
    const [senderStats, receiverStats] = await Promise.all(hosts.splice(0).map((h) => h.stop()));
    if (profile) run.commandStats = { sender: senderStats, receiver: receiverStats };
    return run;
  } finally {
    await watcher?.close();
    await Promise.all(hosts.map((h) => h.stop()));
    await dropDatabases([
      [ctx.atlas, atlasDb],
      [ctx.localA, dbA],
      [ctx.localB, dbB],
    ]);
  }
}

function logLagDemand(ctx: BenchContext, label: string, run: LagRun): void {
  if (!run.demand) return;
  const parts = [
    ['sender (device A, Local → Atlas)', run.demand.sender, 'localA'],
    ['receiver (device B, Atlas → Local)', run.demand.receiver, 'localB'],
  ] as const;
  for (const [who, d, local] of parts) {
    ctx.log(
      `${label}, ${who}: per synced change (${d.changes} changes), server CPU its local ` +
        `${cpuMsPerChange(run.serverCpu, local, d.changes).toFixed(2)} ms / Atlas (both devices) ` +
        `${cpuMsPerChange(run.serverCpu, 'atlas', d.changes).toFixed(2)} ms`,
    );
    for (const line of describeDemand(d)) ctx.log(`  ${line}`);
  }
}

const fmt = (ms: number) => (Number.isFinite(ms) ? `${ms.toFixed(0)} ms` : `> cap`);

export async function runLag(ctx: BenchContext): Promise<LagResult> {
  const runs: Record<string, LagRun[]> = {};
  for (let r = 0; r < ctx.args.runs; r++) {
    for (const rate of ctx.args.lagRates) {
      const run = await measureLag(ctx, rate, `${rate}r${r}`);
      (runs[rate] ??= []).push(run);
      ctx.log(
        `lag run ${r + 1} at ${rate}/s: p50 ${fmt(run.lag.p50)}, p95 ${fmt(run.lag.p95)}, p99 ${fmt(run.lag.p99)}, ` +
          `undelivered ${run.lag.undelivered}/${run.lag.n}; sender RSS ${run.footprint.sender.rssPeakMiB.toFixed(0)} MiB, ` +
          `CPU ${run.footprint.sender.cpuPercent.toFixed(0)}%`,
      );
      logLagDemand(ctx, `lag run ${r + 1} at ${rate}/s demand`, run);
    }
  }
  const median: Record<string, LatencySummary> = {};
  const representative: Record<string, LagRun> = {};
  for (const [rate, list] of Object.entries(runs)) {
    median[rate] = medianSummary(list.map((x) => x.lag));
    representative[rate] = list[medianIndex(list.map((x) => x.lag.p99))];
  }
  const demandMedian: LagResult['demandMedian'] = {};
  for (const [rate, list] of Object.entries(runs))
    demandMedian[rate] = {
      sender: medianDemand(list.map((x) => x.demand?.sender)),
      receiver: medianDemand(list.map((x) => x.demand?.receiver)),
    };
  return { runs, median, representative, demandMedian };
}
