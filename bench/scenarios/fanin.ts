import { BenchContext, deviceSpec, sleep, startHost } from '../lib/context';
import type { DeviceHost, Footprint } from '../lib/device-host';
import { makeDoc } from '../lib/docs';
import { PollPacer } from '../lib/poll-pacer';
import { CpuMeter, CpuShare } from '../lib/proc';
import type { ProcSample } from '../lib/protocol';
import { BenchServer, uniqueDbName } from '../lib/servers';
import { LatencySummary, median, summarize } from '../lib/stats';

export interface FaninRun {
  total: number;
  /** ms from the first write to the last write's acknowledgement. */
  writeWindowMs: number;
  /** ms from the last write until every device and Atlas held every document (null: not within the cap). */
  convergeMs: number | null;
  /** Per device: ms from the last write until it held every document (undelivered = Infinity). */
  perDevice: LatencySummary;
  converged: number;
  atlasMs: number | null;
  footprint: Footprint;
  serverCpu: Record<string, CpuShare>;
}

/** What idle devices cost: the streams poll and save resume tokens even with nothing to sync. */
export interface IdleCost {
  seconds: number;
  /** Per device and second: resume-token writes (`update _sync_metadata`) and change-stream polls. */
  tokenWritesPerDeviceSecond: number;
  getMoresPerDeviceSecond: number;
  processCpuPercent: number;
  serverCpu: Record<string, CpuShare>;
}

export interface FaninResult {
  devices: number;
  servers: number;
  writesPerDevice: number;
  /** ms to start every device (10 at a time) and see its streams running. */
  startMs: number;
  idleRssMiB: number;
  idle: IdleCost;
  runs: FaninRun[];
  /** Why fewer runs than asked for. */
  notRepeated?: string;
  median: {
    convergeMs: number;
    perDeviceP50: number;
    perDeviceMax: number;
    rssPeakMiB: number;
    cpuPercent: number;
  };
}

export async function runFanin(ctx: BenchContext): Promise<FaninResult[]> {
  const out: FaninResult[] = [];
  for (const devices of ctx.args.faninDevices) out.push(await fanin(ctx, devices));
  return out;
}

const IDLE_SECONDS = 5;

async function fanin(ctx: BenchContext, devices: number): Promise<FaninResult> {
  const { faninServers: serverCount, faninWrites: writes } = ctx.args;
  const servers: BenchServer[] = [];
  let host: DeviceHost | undefined;
  const atlasDb = uniqueDbName('fan');
  try {
    servers.push(
      ...(await Promise.all(
        Array.from({ length: serverCount }, (_, i) => ctx.pool.startLocal(`fan${i}`)),
      )),
    );
    const dbs = Array.from({ length: devices }, (_, i) => ({
      server: servers[i % serverCount],
      name: uniqueDbName(`fan${i}`),
    }));
    const specs = dbs.map((d, i) => deviceSpec(ctx, d.server, d.name, atlasDb, `fan-${i}`));
    ctx.log(`fan-in: starting ${devices} devices on ${serverCount} local servers...`);
    // The latest sample of the devices' own counters (every 200 ms, no server cost).
    let latest: ProcSample | undefined;
    let onLatest: (() => void) | undefined;
    host = await startHost(ctx, `fanin-${devices}`, specs, {
      concurrency: 10,
      readyTimeoutMs: 900_000,
      monitorCommands: true,
      onSample: (sample) => {
        latest = sample;
        onLatest?.();
      },
    });
    await sleep(1000);
    const idleRssMiB = host.rssMiB;
    const idleMeter = new CpuMeter({
      atlas: ctx.atlas.pid,
      ...Object.fromEntries(servers.map((s) => [s.name, s.pid])),
    }).begin();
    const before = await host.commandStats();
    const idleEpoch = Date.now();
    await sleep(IDLE_SECONDS * 1000);
    const after = await host.commandStats();
    const count = (stats: typeof before, match: (k: string) => boolean) =>
      Object.entries(stats)
        .filter(([k]) => match(k))
        .reduce((a, [, v]) => a + v.count, 0);
    const perDeviceSecond = (match: (k: string) => boolean) =>
      (count(after, match) - count(before, match)) / devices / IDLE_SECONDS;
    const idle: IdleCost = {
      seconds: IDLE_SECONDS,
      tokenWritesPerDeviceSecond: perDeviceSecond((k) => k === 'local update _sync_metadata'),
      getMoresPerDeviceSecond: perDeviceSecond((k) => k.includes(' getMore')),
      processCpuPercent: host.footprint(idleEpoch, Date.now()).cpuPercent,
      serverCpu: idleMeter.end(),
    };
    ctx.log(
      `fan-in: ${devices} devices ready in ${(host.startMs / 1000).toFixed(1)} s, RSS ${idleRssMiB.toFixed(0)} MiB; idle: ` +
        `${idle.tokenWritesPerDeviceSecond.toFixed(1)} token writes and ${idle.getMoresPerDeviceSecond.toFixed(1)} polls per device-second, ` +
        `servers ${Object.entries(idle.serverCpu)
          .map(([k, v]) => `${k} ${v.cpuPercent.toFixed(0)}%`)
          .join(', ')}`,
    );

    const runs: FaninRun[] = [];
    let notRepeated: string | undefined;
    for (let r = 0; r < ctx.args.runs; r++) {
      const coll = `fan${r}`;
      const total = devices * writes;
      const meter = new CpuMeter({
        atlas: ctx.atlas.pid,
        ...Object.fromEntries(servers.map((s) => [s.name, s.pid])),
      }).begin();
      const epoch0 = Date.now();
      // Device i writes its j-th document at j s + i/devices s: a modest, even aggregate rate.
      const schedule = dbs
        .flatMap((d, i) =>
          Array.from({ length: writes }, (_, j) => ({
            d,
            i,
            j,
            at: j * 1000 + (i * 1000) / devices,
          })),
        )
        .sort((a, b) => a.at - b.at);
      // Device i holds everything once it applied every other device's writes; Atlas once
      // the devices pushed all of them. Timed by those counters, confirmed by counts.
      const appliedAtStart = specs.map((spec) => latest?.appliedByDevice[spec.instanceId] ?? 0);
      const pushedAtStart = latest?.synced.localToAtlas ?? 0;
      const counterAt: (number | null)[] = dbs.map(() => null);
      let atlasCounterAt: number | null = null;
      onLatest = () => {
        const now = performance.now();
        specs.forEach((spec, i) => {
          const applied = (latest!.appliedByDevice[spec.instanceId] ?? 0) - appliedAtStart[i];
          if (counterAt[i] === null && applied >= total - writes) counterAt[i] = now;
        });
        if (atlasCounterAt === null && latest!.synced.localToAtlas - pushedAtStart >= total)
          atlasCounterAt = now;
      };
      const t0 = performance.now();
      const acks: Promise<unknown>[] = [];
      for (const w of schedule) {
        const wait = t0 + w.at - performance.now();
        if (wait > 0) await sleep(wait);
        acks.push(
          w.d.server.client
            .db(w.d.name)
            .collection<any>(coll)
            .insertOne(makeDoc(`f${w.i}_${w.j}`, w.j)),
        );
      }
      await Promise.all(acks);
      const tLast = performance.now();
      // A copy completes at its counter's time when no count after that time fell short,
      // otherwise at the count that confirmed it.
      const doneAt: (number | null)[] = dbs.map(() => null);
      const shortAt: number[] = dbs.map(() => -Infinity);
      let atlasAt: number | null = null;
      let atlasShortAt = -Infinity;
      const completedAt = (counter: number | null, short: number, confirmedAt: number): number =>
        (counter !== null && counter > short ? counter : confirmedAt) - tLast;
      const cap = tLast + ctx.args.faninCapSeconds * 1000;
      const pacer = new PollPacer(250);
      // Counts (paced) only the copies whose counter says complete and no count since fell
      // short; whatever is still open at the cap is counted once more, unpaced.
      const countable = (i: number, final: boolean) =>
        doneAt[i] === null && (final || (counterAt[i] !== null && counterAt[i]! > shortAt[i]));
      const atlasCountable = (final: boolean) =>
        atlasAt === null && (final || (atlasCounterAt !== null && atlasCounterAt > atlasShortAt));
      const probe = async (final: boolean) => {
        const [counts, onAtlas] = await pacer.probe(async () =>
          Promise.all([
            Promise.all(
              dbs.map((d, i) =>
                countable(i, final)
                  ? d.server.client.db(d.name).collection(coll).countDocuments()
                  : null,
              ),
            ),
            atlasCountable(final)
              ? ctx.atlas.client.db(atlasDb).collection(coll).countDocuments()
              : null,
          ]),
        );
        const now = performance.now();
        counts.forEach((c, i) => {
          if (c === null || doneAt[i] !== null) return;
          if (c >= total) doneAt[i] = completedAt(counterAt[i], shortAt[i], now);
          else shortAt[i] = now;
        });
        if (onAtlas !== null && atlasAt === null) {
          if (onAtlas >= total) atlasAt = completedAt(atlasCounterAt, atlasShortAt, now);
          else atlasShortAt = now;
        }
      };
      const pending = () => doneAt.includes(null) || atlasAt === null;
      const news = () => atlasCountable(false) || dbs.some((_, i) => countable(i, false));
      while (performance.now() < cap && pending()) {
        if (news()) await probe(false);
        while (performance.now() < cap && pending() && !(pacer.due() && news())) await sleep(100);
      }
      if (pending()) await probe(true);
      onLatest = undefined;
      const behind = doneAt.flatMap((d, i) => (d === null ? [i] : []));
      if (behind.length) {
        const applied = behind.map(
          (i) => (latest?.appliedByDevice[specs[i].instanceId] ?? 0) - appliedAtStart[i],
        );
        // What the first of them lacks, read directly (not the estimated count).
        const first = dbs[behind[0]];
        const held = new Set(
          (await first.server.client.db(first.name).collection(coll).distinct('_id')).map(String),
        );
        const onAtlas = (await ctx.atlas.client.db(atlasDb).collection(coll).distinct('_id')).map(
          String,
        );
        const missing = onAtlas.filter((id) => !held.has(id));
        const firstColl = first.server.client.db(first.name).collection(coll);
        const [estimated, counted] = await Promise.all([
          firstColl.estimatedDocumentCount(),
          firstColl.countDocuments(),
        ]);
        ctx.log(
          `fan-in ${devices} devices, run ${r + 1}: ${behind.length} devices short at the cap; ` +
            `they applied ${Math.min(...applied)}–${Math.max(...applied)} of ${total - writes} changes by their counters; ` +
            `device ${behind[0]} holds ${held.size} of Atlas's ${onAtlas.length} documents (missing e.g. ${missing.slice(0, 3).join(', ')}; ` +
            `estimatedDocumentCount ${estimated}, countDocuments ${counted})`,
        );
      }
      const serverCpu = meter.end();
      const converged = doneAt.filter((x) => x !== null).length;
      const run: FaninRun = {
        total,
        writeWindowMs: tLast - t0,
        convergeMs:
          converged === devices && atlasAt !== null
            ? Math.max(atlasAt, ...(doneAt as number[]))
            : null,
        perDevice: summarize(doneAt.map((x) => x ?? Infinity)),
        converged,
        atlasMs: atlasAt,
        footprint: host.footprint(epoch0, Date.now()),
        serverCpu,
      };
      runs.push(run);
      ctx.log(
        `fan-in ${devices} devices, run ${r + 1}: ${total} writes over ${(run.writeWindowMs / 1000).toFixed(1)} s; ` +
          (run.convergeMs === null
            ? `${converged}/${devices} devices converged within ${ctx.args.faninCapSeconds} s`
            : `all ${devices} devices + Atlas converged ${(run.convergeMs / 1000).toFixed(1)} s after the last write`) +
          `; RSS ${run.footprint.rssPeakMiB.toFixed(0)} MiB, CPU ${run.footprint.cpuPercent.toFixed(0)}%`,
      );
      if (run.convergeMs === null && r + 1 < ctx.args.runs) {
        // The next run would start behind this one's backlog and measure it, not itself.
        notRepeated = `not repeated: run ${r + 1} did not converge, its backlog would carry into the next run`;
        ctx.log(`fan-in ${devices} devices: ${notRepeated}`);
        break;
      }
    }
    return {
      devices,
      servers: serverCount,
      writesPerDevice: writes,
      startMs: host.startMs,
      idleRssMiB,
      idle,
      runs,
      notRepeated,
      median: {
        convergeMs: median(runs.map((r) => r.convergeMs ?? Infinity)),
        perDeviceP50: median(runs.map((r) => r.perDevice.p50)),
        perDeviceMax: median(runs.map((r) => r.perDevice.max)),
        rssPeakMiB: median(runs.map((r) => r.footprint.rssPeakMiB)),
        cpuPercent: median(runs.map((r) => r.footprint.cpuPercent)),
      },
    };
  } finally {
    await host?.stop();
    await ctx.atlas.client
      .db(atlasDb)
      .dropDatabase()
      .catch(() => undefined);
    await ctx.pool.destroy(servers);
  }
}
