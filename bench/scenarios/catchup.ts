import type { Collection } from 'mongodb';
import { BenchContext, deviceSpec, outboxEmptied, settle, sleep, startHost } from '../lib/context';
import type { DeviceHost, Footprint } from '../lib/device-host';
import { cpuMsPerChange, Demand, demandBetween, describeDemand, medianDemand } from '../lib/demand';
import type { ProcSample } from '../lib/protocol';
import { makeDoc, PeerStamper } from '../lib/docs';
import { PollPacer } from '../lib/poll-pacer';
import { CpuMeter, CpuShare } from '../lib/proc';
import type { CommandStats } from '../lib/protocol';
import { dropDatabases, uniqueDbName } from '../lib/servers';
import { median, medianIndex } from '../lib/stats';

export interface CatchupRun {
  /** Changes accumulated while offline: `local` on the device, `atlas` on Atlas. */
  n: number;
  local: number;
  atlas: number;
  /** ms to write the backlog with the raw driver (both sides at once). */
  accumulateMs: number;
  /** ms from process start until the module's streams were running. */
  readyMs: number;
  /** ms from process start until both sides held every change (null: not within the cap). */
  convergeMs: number | null;
  localToAtlasMs: number | null;
  atlasToLocalMs: number | null;
  /** Changes per second until converged (or changes synced per second until the cap). */
  rate: number;
  synced: number;
  /** Resolution of the convergence times: the device's sample interval, or the longest gap between two paced count probes. */
  probeResolutionMs: number;
  /** RSS of the device process while online and idle, before going offline. */
  idleRssMiB: number;
  footprint: Footprint;
  serverCpu: Record<string, CpuShare>;
  /** Synced changes per direction, and the process's memory (MiB), at each second after process start. */
  progress: {
    second: number;
    localToAtlas: number;
    atlasToLocal: number;
    rssMiB: number;
    heapUsedMiB: number;
    heapTotalMiB: number;
  }[];
  /** The engine's demand per synced change (both directions) from the process start until converged (or the cap). */
  demand?: Demand;
  commandStats?: CommandStats;
}

export interface CatchupResult {
  runs: CatchupRun[];
  /** A smaller backlog (n/4), to show whether memory grows with the backlog. */
  small?: CatchupRun;
  median: {
    rate: number;
    convergeMs: number;
    rssPeakMiB: number;
    cpuPercent: number;
    converged: number;
    demand?: Demand;
  };
  representative: CatchupRun;
}

const DIRECTIONS = ['l2a', 'a2l'] as const;

async function writeBacklog(
  coll: Collection<any>,
  count: number,
  prefix: string,
  stamper?: PeerStamper,
): Promise<void> {
  for (let k = 0; k < count; k += 1000) {
    const docs = [];
    for (let i = k; i < Math.min(count, k + 1000); i++) {
      const doc = makeDoc(`${prefix}${i.toString(36)}`, i);
      docs.push(stamper ? stamper.stamp(doc) : doc);
    }
    await coll.insertMany(docs, { ordered: false });
  }
}

export async function measureCatchup(
  ctx: BenchContext,
  n: number,
  label: string,
  { profile = false }: { profile?: boolean } = {},
): Promise<CatchupRun> {
  const atlasDb = uniqueDbName(`cu_${label}`);
  const localDb = uniqueDbName(`cua_${label}`);
  const spec = deviceSpec(ctx, ctx.localA, localDb, atlasDb, `cu-${label}`);
  const local = Math.floor(n / 2);
  const atlas = n - local;
  let host: DeviceHost | undefined;
  try {
    // Online once, so both resume tokens are stored; then offline.
    host = await startHost(ctx, `catchup-first-${label}`, [spec]);
    await sleep(500);
    const idleRssMiB = host.rssMiB;
    await host.stop({ graceful: true });
    host = undefined;

    const localColl = ctx.localA.client.db(localDb).collection('cu');
    const atlasColl = ctx.atlas.client.db(atlasDb).collection('cu');
    const a0 = performance.now();
    await Promise.all([
      writeBacklog(localColl, local, 'l'),
      writeBacklog(atlasColl, atlas, 'a', new PeerStamper()),
    ]);
    const accumulateMs = performance.now() - a0;

    await settle(ctx, `catch-up ${label}`);
    const meter = new CpuMeter({
      atlas: ctx.atlas.pid,
      local: ctx.localA.pid,
      bench: process.pid,
    }).begin();
    const epoch0 = Date.now();
    const t0 = performance.now();
    const cap = t0 + ctx.args.catchupCapSeconds * 1000;
    // Progress and the moment each direction completes come from the device's own
    // counters (a sample every 200 ms, no server cost); counts on the servers confirm
    // them, paced because on SecantusDB a count reads the whole collection.
    const counted: { l2a?: number; a2l?: number } = {};
    const progress: CatchupRun['progress'] = [];
    const onSample = ({ synced: c, rss, heapUsed, heapTotal }: ProcSample): void => {
      const at = performance.now() - t0;
      if (counted.l2a === undefined && c.localToAtlas >= local) counted.l2a = at;
      if (counted.a2l === undefined && c.atlasToLocal >= atlas) counted.a2l = at;
      const second = Math.floor(at / 1000);
      const entry = {
        second,
        localToAtlas: c.localToAtlas,
        atlasToLocal: c.atlasToLocal,
        rssMiB: Math.round(rss / 2 ** 20),
        heapUsedMiB: Math.round(heapUsed / 2 ** 20),
        heapTotalMiB: Math.round(heapTotal / 2 ** 20),
      };
      if (progress[progress.length - 1]?.second === second) progress[progress.length - 1] = entry;
      else progress.push(entry);
    };
    const starting = startHost(ctx, `catchup-${label}`, [spec], {
      // "Ready" (both streams running) comes only after the capture has read the local
      // backlog; the device must not be killed for taking long at that.
      readyTimeoutMs: (ctx.args.catchupCapSeconds + 60) * 1000,
      onSample,
      monitorCommands: ctx.args.commandCounts || profile,
      ...(profile ? { cpuProfileDir: ctx.profileDir } : {}),
    });
    let readyMs = NaN;
    let startFailure: unknown;
    void starting.then(
      () => (readyMs = performance.now() - t0),
      (err) => (startFailure = err),
    );
    // A direction completes at its counter's time when no count after that time still
    // fell short; otherwise (or without a counter within 2 s) at the confirming count.
    const directions = {
      l2a: { need: local, done: null as number | null, shortAt: -1, confirmedAt: -1 },
      a2l: { need: atlas, done: null as number | null, shortAt: -1, confirmedAt: -1 },
    };
    let synced = 0;
    let coarse = false;
    const pacer = new PollPacer(1000);
    const counterNews = (): boolean =>
      DIRECTIONS.some(
        (k) =>
          directions[k].done === null &&
          counted[k] !== undefined &&
          counted[k]! > directions[k].shortAt,
      );
    while (performance.now() < cap) {
      if (startFailure) throw startFailure;
      if (pacer.due() || counterNews()) {
        const [onAtlas, onLocal] = await pacer.probe(() =>
          Promise.all([atlasColl.estimatedDocumentCount(), localColl.estimatedDocumentCount()]),
        );
        const now = performance.now() - t0;
        const have = { l2a: onAtlas - atlas, a2l: onLocal - local };
        synced = have.l2a + have.a2l;
        for (const k of DIRECTIONS) {
          const d = directions[k];
          if (d.done !== null) continue;
          if (have[k] < d.need) d.shortAt = now;
          else if (d.confirmedAt < 0) d.confirmedAt = now;
        }
      }
      const now = performance.now() - t0;
      for (const k of DIRECTIONS) {
        const d = directions[k];
        if (d.done !== null || d.confirmedAt < 0) continue;
        const counter = counted[k];
        if (counter !== undefined && counter > d.shortAt) d.done = counter;
        else if (now - d.confirmedAt > 2000) {
          d.done = d.confirmedAt;
          coarse = true;
        }
      }
      if (directions.l2a.done !== null && directions.a2l.done !== null) break;
      await sleep(100);
    }
    const l2a = directions.l2a.done;
    const a2l = directions.a2l.done;
    host = await starting;
    const convergeMs = l2a !== null && a2l !== null ? Math.max(l2a, a2l) : null;
    const elapsed = (convergeMs ?? performance.now() - t0) / 1000;
    const serverCpu = meter.end();
    const footprint = host.footprint(epoch0, Date.now());
    // From the process start (its counters start at zero): start-up and the capture's
    // read of the backlog are part of catching up.
    const countCommands = ctx.args.commandCounts || profile;
    if (countCommands && convergeMs !== null) await outboxEmptied(ctx.localA, localDb);
    const demand = countCommands
      ? demandBetween(undefined, await host.sampleNow(), ['localToAtlas', 'atlasToLocal'])
      : undefined;
    const commandStats = await host.stop();
    host = undefined;
    return {
      n,
      local,
      atlas,
      accumulateMs,
      readyMs,
      convergeMs,
      localToAtlasMs: l2a,
      atlasToLocalMs: a2l,
      rate: synced / elapsed,
      synced,
      probeResolutionMs: coarse ? pacer.maxGapMs : 200,
      idleRssMiB,
      footprint,
      serverCpu,
      progress,
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

const describe = (r: CatchupRun) =>
  `${r.n} changes: ${r.convergeMs === null ? `NOT converged within the cap (${r.synced}/${r.n} synced)` : `converged in ${(r.convergeMs / 1000).toFixed(1)} s (±${(r.probeResolutionMs / 1000).toFixed(1)} s)`}, ` +
  `${r.rate.toFixed(0)} changes/s, RSS peak ${r.footprint.rssPeakMiB.toFixed(0)} MiB (idle ${r.idleRssMiB.toFixed(0)}; heap used/reserved ${r.footprint.heapPeakMiB.toFixed(0)}/${r.footprint.heapTotalPeakMiB.toFixed(0)}, external ${r.footprint.externalPeakMiB.toFixed(0)}), CPU ${r.footprint.cpuPercent.toFixed(0)}%`;

function logCatchupDemand(ctx: BenchContext, label: string, r: CatchupRun): void {
  if (!r.demand) return;
  ctx.log(
    `${label}: per synced change, both directions (${r.demand.changes} changes), server CPU local ` +
      `${cpuMsPerChange(r.serverCpu, 'local', r.demand.changes).toFixed(2)} ms / Atlas ` +
      `${cpuMsPerChange(r.serverCpu, 'atlas', r.demand.changes).toFixed(2)} ms`,
  );
  for (const line of describeDemand(r.demand)) ctx.log(`  ${line}`);
}

export async function runCatchup(ctx: BenchContext): Promise<CatchupResult> {
  const runs: CatchupRun[] = [];
  for (let r = 0; r < ctx.args.runs; r++) {
    const run = await measureCatchup(ctx, ctx.args.catchup, `r${r}`);
    runs.push(run);
    ctx.log(`catch-up run ${r + 1}: ${describe(run)}`);
    logCatchupDemand(ctx, `catch-up run ${r + 1} demand`, run);
  }
  const smallN = Math.max(2, Math.floor(ctx.args.catchup / 4));
  const small = await measureCatchup(ctx, smallN, 'small');
  ctx.log(`catch-up (memory vs backlog): ${describe(small)}`);
  logCatchupDemand(ctx, 'catch-up (smaller backlog) demand', small);
  return {
    runs,
    small,
    median: {
      rate: median(runs.map((r) => r.rate)),
      convergeMs: median(runs.map((r) => r.convergeMs ?? Infinity)),
      rssPeakMiB: median(runs.map((r) => r.footprint.rssPeakMiB)),
      cpuPercent: median(runs.map((r) => r.footprint.cpuPercent)),
      converged: runs.filter((r) => r.convergeMs !== null).length,
      demand: medianDemand(runs.map((r) => r.demand)),
    },
    representative: runs[medianIndex(runs.map((r) => r.rate))],
  };
}
