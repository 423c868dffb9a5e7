import type { Collection, Db } from 'mongodb';
import {
  BenchContext,
  deviceSpec,
  outboxEmptied,
  ratePerSecond,
  settle,
  startHost,
} from '../lib/context';
import type { DeviceHost, Footprint } from '../lib/device-host';
import {
  cpuMsPerChange,
  Demand,
  demandBetween,
  describeDemand,
  medianDemand,
  type SyncDirection,
} from '../lib/demand';
import { PeerStamper } from '../lib/docs';
import { runInsertLoad, runSaturation } from '../lib/load';
import { CpuMeter, CpuShare } from '../lib/proc';
import type { CommandStats } from '../lib/protocol';
import { dropDatabases, uniqueDbName } from '../lib/servers';
import { LatencySummary, median, summarize } from '../lib/stats';
import { VisibilityTracker } from '../lib/tracker';
import { DestinationWatcher } from '../lib/watch';

export type Direction = 'localToAtlas' | 'atlasToLocal';
export type Mode = Direction | 'both';
export const MODES: Mode[] = ['localToAtlas', 'atlasToLocal', 'both'];

/** Documents kept in flight through the pipeline during saturation. */
const BACKLOG = 1000;
const CONFIRM_FRACTION = 0.8;
/** The backlog must drain within this before confirming (else capacity is below BACKLOG / 5 s). */
const SATURATION_DRAIN_MS = 5000;
const CONFIRM_SECONDS = 5;
/** "Lag stays bounded": stragglers arrive within this after the window, and late-window p99 stays under LAG_BOUND_MS. */
const DRAIN_BOUND_MS = 2000;
const LAG_BOUND_MS = 1000;

export interface Confirmation {
  offered: number;
  achieved: number;
  bounded: boolean;
  lag: LatencySummary;
  /** Lag of operations scheduled in the second half of the window. */
  lagSecondHalf: LatencySummary;
  /** ms after the window until the last straggler arrived (null: not within the cap). */
  drainMs: number | null;
}

export interface DirectionMeasure {
  /** Events/s delivered over the last two thirds of the saturation window. */
  saturationRate: number;
  perSecond: number[];
  written: number;
  confirm?: Confirmation;
  /** Why no confirmation ran. */
  confirmSkipped?: string;
}

export interface ModeRun {
  mode: Mode;
  directions: Partial<Record<Direction, DirectionMeasure>>;
  footprint: Footprint;
  serverCpu: Record<string, CpuShare>;
  /** The engine's commands and documents per synced change, from the saturation start until its backlog drained. */
  demand?: Demand;
  commandStats?: CommandStats;
}

export interface ThroughputResult {
  runs: ModeRun[][];
  /** Median demand per synced change of each mode (both directions together for `both`). */
  demandMedian?: Partial<Record<Mode, Demand>>;
  median: Record<
    Mode,
    Partial<
      Record<
        Direction,
        {
          saturationRate: number;
          boundedRuns: number;
          confirmedRate: number;
          confirmLagP99: number;
        }
      >
    >
  >;
}

interface Lane {
  direction: Direction;
  source: Collection<any>;
  destDb: Db;
  destColl: string;
  stamper?: PeerStamper;
}

function lanes(
  mode: Mode,
  ctx: BenchContext,
  atlasDb: string,
  localDb: string,
  suffix: string,
): Lane[] {
  const up: Lane = {
    direction: 'localToAtlas',
    source: ctx.localA.client.db(localDb).collection(`up${suffix}`),
    destDb: ctx.atlas.client.db(atlasDb),
    destColl: `up${suffix}`,
  };
  const down: Lane = {
    direction: 'atlasToLocal',
    source: ctx.atlas.client.db(atlasDb).collection(`down${suffix}`),
    destDb: ctx.localA.client.db(localDb),
    destColl: `down${suffix}`,
    stamper: new PeerStamper(),
  };
  return mode === 'both' ? [up, down] : mode === 'localToAtlas' ? [up] : [down];
}

function watch(lane: Lane, tracker: VisibilityTracker): Promise<DestinationWatcher> {
  return DestinationWatcher.open(lane.destDb, lane.destColl, tracker);
}

async function confirm(
  ctx: BenchContext,
  mode: Mode,
  atlasDb: string,
  localDb: string,
  rates: Partial<Record<Direction, number>>,
): Promise<Partial<Record<Direction, Confirmation>>> {
  const ls = lanes(mode, ctx, atlasDb, localDb, 'c');
  const trackers = ls.map(() => new VisibilityTracker());
  const watchers = await Promise.all(ls.map((l, i) => watch(l, trackers[i])));
  try {
    const t0 = performance.now();
    const reports = await Promise.all(
      ls.map((l, i) =>
        runInsertLoad(l.source, trackers[i], {
          rate: Math.max(1, Math.round(CONFIRM_FRACTION * rates[l.direction]!)),
          durationMs: CONFIRM_SECONDS * 1000,
          idPrefix: 'c',
          stamper: l.stamper,
        }),
      ),
    );
    const windowEnd = performance.now();
    // Past DRAIN_BOUND_MS the load is unbounded anyway; a little longer tells how late stragglers are.
    const drained = await Promise.all(trackers.map((t) => t.drained(DRAIN_BOUND_MS + 1000)));
    const out: Partial<Record<Direction, Confirmation>> = {};
    ls.forEach((l, i) => {
      const results = trackers[i].results();
      const lastSeen = Math.max(...results.map((r) => r.seenAt));
      const lag = summarize(results.map((r) => r.seenAt - r.issuedAt));
      const lagSecondHalf = summarize(
        results
          .filter((r) => r.issuedAt >= t0 + (CONFIRM_SECONDS * 1000) / 2)
          .map((r) => r.seenAt - r.issuedAt),
      );
      const drainMs = drained[i] ? Math.max(0, lastSeen - windowEnd) : null;
      out[l.direction] = {
        offered: reports[i].scheduled / CONFIRM_SECONDS,
        achieved: reports[i].achievedRate,
        lag,
        lagSecondHalf,
        drainMs,
        bounded: drainMs !== null && drainMs <= DRAIN_BOUND_MS && lagSecondHalf.p99 <= LAG_BOUND_MS,
      };
    });
    return out;
  } finally {
    await Promise.all(watchers.map((w) => w.close()));
  }
}

/** One mode, one run: saturation, then (unless profiling) a bounded-lag confirmation at 0.8x. */
export async function measureMode(
  ctx: BenchContext,
  mode: Mode,
  label: string,
  { profile = false, withConfirm = true }: { profile?: boolean; withConfirm?: boolean } = {},
): Promise<ModeRun> {
  const atlasDb = uniqueDbName(`tp_${label}`);
  const localDb = uniqueDbName(`tpa_${label}`);
  let host: DeviceHost | undefined;
  await settle(ctx, `throughput ${mode} ${label}`);
  try {
    host = await startHost(
      ctx,
      `throughput-${mode}-${label}`,
      [deviceSpec(ctx, ctx.localA, localDb, atlasDb, `tp-${label}`)],
      {
        monitorCommands: ctx.args.commandCounts || profile,
        ...(profile ? { cpuProfileDir: ctx.profileDir } : {}),
      },
    );
    const ls = lanes(mode, ctx, atlasDb, localDb, '');
    const trackers = ls.map(() => new VisibilityTracker());
    const watchers = await Promise.all(ls.map((l, i) => watch(l, trackers[i])));
    const seconds = ctx.args.throughputSeconds;
    const counted = ctx.args.commandCounts || profile;
    const before = counted ? await host.sampleNow() : undefined;
    const meter = new CpuMeter({
      atlas: ctx.atlas.pid,
      local: ctx.localA.pid,
      bench: process.pid,
    }).begin();
    const epoch0 = Date.now();
    const t0 = performance.now();
    const written = await Promise.all(
      ls.map((l, i) =>
        runSaturation(l.source, trackers[i], {
          durationMs: seconds * 1000,
          idPrefix: 's',
          backlogCap: BACKLOG,
          stamper: l.stamper,
        }),
      ),
    );
    const tEnd = performance.now();
    const serverCpu = meter.end();
    const footprint = host.footprint(epoch0, Date.now());
    const from = t0 + (seconds * 1000) / 3;
    const directions: Partial<Record<Direction, DirectionMeasure>> = {};
    ls.forEach((l, i) => {
      const inWindow = trackers[i].arrivals.filter((a) => a >= from && a <= tEnd).length;
      directions[l.direction] = {
        saturationRate: (inWindow * 1000) / (tEnd - from),
        perSecond: ratePerSecond(trackers[i].arrivals, t0, seconds),
        written: written[i],
      };
    });
    // Let the backlog drain before confirming at a fixed load.
    const drained = await Promise.all(trackers.map((t) => t.drained(SATURATION_DRAIN_MS)));
    await Promise.all(watchers.map((w) => w.close()));
    // Counted from an empty pipeline to an empty one again (outbox included), so every
    // command a change caused is in the window (plus the idle polls of the drain, a few).
    if (before && mode !== 'atlasToLocal') await outboxEmptied(ctx.localA, localDb);
    const demand = before
      ? demandBetween(before, await host.sampleNow(), modeDirections(mode))
      : undefined;
    if (withConfirm) {
      if (drained.every(Boolean)) {
        const rates = Object.fromEntries(
          Object.entries(directions).map(([d, m]) => [d, m!.saturationRate]),
        ) as Record<Direction, number>;
        const confirmed = await confirm(ctx, mode, atlasDb, localDb, rates);
        for (const [d, c] of Object.entries(confirmed)) directions[d as Direction]!.confirm = c;
      } else {
        for (const m of Object.values(directions))
          m!.confirmSkipped = `saturation backlog (${BACKLOG}) not drained within ${SATURATION_DRAIN_MS / 1000} s`;
      }
    }
    const commandStats = await host.stop();
    host = undefined;
    return {
      mode,
      directions,
      footprint,
      serverCpu,
      demand,
      commandStats: profile ? commandStats : undefined,
    };
  } finally {
    await host?.stop();
    await dropDatabases([
      [ctx.atlas, atlasDb],
      [ctx.localA, localDb],
    ]);
  }
}

function modeDirections(mode: Mode): SyncDirection[] {
  return mode === 'both' ? ['localToAtlas', 'atlasToLocal'] : [mode];
}

/** Server CPU per change delivered during saturation, as the report's table has it. */
export function saturationCpuPerChange(m: ModeRun, server: string): number {
  const delivered = Object.values(m.directions).reduce(
    (a, d) => a + d!.perSecond.reduce((x, y) => x + y, 0),
    0,
  );
  return cpuMsPerChange(m.serverCpu, server, delivered);
}

function logDemand(ctx: BenchContext, label: string, m: ModeRun): void {
  if (!m.demand) return;
  ctx.log(
    `${label}: per synced change (${m.demand.changes} changes), server CPU local ` +
      `${saturationCpuPerChange(m, 'local').toFixed(2)} ms / Atlas ${saturationCpuPerChange(m, 'atlas').toFixed(2)} ms`,
  );
  for (const line of describeDemand(m.demand)) ctx.log(`  ${line}`);
}

export async function runThroughput(ctx: BenchContext): Promise<ThroughputResult> {
  const runs: ModeRun[][] = [];
  for (let r = 0; r < ctx.args.runs; r++) {
    const run: ModeRun[] = [];
    for (const mode of MODES) {
      const m = await measureMode(ctx, mode, `${mode.slice(0, 4)}${r}`);
      run.push(m);
      ctx.log(
        `throughput run ${r + 1} ${mode}: ` +
          Object.entries(m.directions)
            .map(
              ([d, x]) =>
                `${d} ${x!.saturationRate.toFixed(0)}/s` +
                (x!.confirm
                  ? ` (at ${x!.confirm.offered.toFixed(0)}/s: p99 ${x!.confirm.lag.p99.toFixed(0)} ms, ${x!.confirm.bounded ? 'bounded' : 'NOT bounded'})`
                  : ` (${x!.confirmSkipped ?? 'no confirmation'})`),
            )
            .join('; '),
      );
      logDemand(ctx, `throughput run ${r + 1} ${mode} demand`, m);
    }
    runs.push(run);
  }
  const med = {} as ThroughputResult['median'];
  for (const mode of MODES) {
    med[mode] = {};
    const ofMode = runs.map((run) => run.find((m) => m.mode === mode)!);
    for (const d of ['localToAtlas', 'atlasToLocal'] as Direction[]) {
      const list = ofMode.map((m) => m.directions[d]).filter((x): x is DirectionMeasure => !!x);
      if (!list.length) continue;
      const bounded = list.filter((x) => x.confirm?.bounded);
      med[mode][d] = {
        saturationRate: median(list.map((x) => x.saturationRate)),
        boundedRuns: bounded.length,
        confirmedRate: bounded.length ? median(bounded.map((x) => x.confirm!.offered)) : NaN,
        confirmLagP99: median(list.map((x) => x.confirm?.lag.p99 ?? NaN)),
      };
    }
  }
  const demandMedian: ThroughputResult['demandMedian'] = {};
  for (const mode of MODES) {
    const d = medianDemand(runs.map((run) => run.find((m) => m.mode === mode)?.demand));
    if (d) demandMedian[mode] = d;
  }
  return { runs, median: med, demandMedian };
}
