import { SYNC_COLLECTIONS } from '../../src/lib/bidirectional-sync.constants';
import type { BidirectionalSyncModuleOptions } from '../../src/lib/config/sync-options.interface';
import type { BenchArgs } from './args';
import { DeviceHost, HostOptions } from './device-host';
import { CpuMeter } from './proc';
import type { DeviceSpec } from './protocol';
import { NO_RETRYABLE_WRITES, type BenchServer, type ServerPool } from './servers';

/** What every scenario gets: servers, the compiled device process, options and a logger. */
export interface BenchContext {
  args: BenchArgs;
  pool: ServerPool;
  atlas: BenchServer;
  localA: BenchServer;
  localB: BenchServer;
  deviceEntry: string;
  profileDir: string;
  syncOptions: Partial<BidirectionalSyncModuleOptions>;
  log: (message: string) => void;
}

export function deviceSpec(
  ctx: BenchContext,
  local: BenchServer,
  localDbName: string,
  atlasDbName: string,
  instanceId: string,
): DeviceSpec {
  return {
    localUri: local.uri,
    localDbName,
    atlasUri: ctx.atlas.uri,
    atlasDbName,
    instanceId,
    // The module's Atlas client sets retryWrites itself; the URI's setting (D10) must win.
    options: ctx.atlas.uri.includes(NO_RETRYABLE_WRITES)
      ? {
          ...ctx.syncOptions,
          atlasClientOptions: { ...ctx.syncOptions.atlasClientOptions, retryWrites: false },
        }
      : ctx.syncOptions,
  };
}

export function startHost(
  ctx: BenchContext,
  label: string,
  devices: DeviceSpec[],
  extra: Partial<HostOptions> = {},
): Promise<DeviceHost> {
  return DeviceHost.start(label, devices, { entry: ctx.deviceEntry, ...extra });
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Delivered-per-second series of arrival instants, bucketed from `t0`. */
export function ratePerSecond(arrivals: number[], t0: number, seconds: number): number[] {
  const buckets = new Array<number>(Math.max(0, Math.ceil(seconds))).fill(0);
  for (const at of arrivals) {
    const i = Math.floor((at - t0) / 1000);
    if (i >= 0 && i < buckets.length) buckets[i]++;
  }
  return buckets;
}

/**
 * Waits (at most `capMs`) until a device's outbox is empty: a change shows on
 * Atlas before the engine deletes its outbox entry, and a demand window must
 * hold that delete too. Read with the benchmark's own client.
 */
export async function outboxEmptied(
  server: BenchServer,
  localDbName: string,
  capMs = 5000,
): Promise<boolean> {
  const outbox = server.client.db(localDbName).collection(SYNC_COLLECTIONS.outbox);
  const deadline = performance.now() + capMs;
  for (;;) {
    if ((await outbox.estimatedDocumentCount()) === 0) return true;
    if (performance.now() > deadline) return false;
    await sleep(50);
  }
}

const QUIET_PERCENT = 15;
const QUIET_CAP_MS = 60_000;

/**
 * Waits until every server the benchmark started is quiet (under 15 % of a
 * core over one second; at most 60 s), so a run does not pay for the work the
 * previous one left on the servers (its backlog, dropped databases).
 */
export async function settle(ctx: BenchContext, label: string): Promise<void> {
  const pids = Object.fromEntries(
    [ctx.atlas, ctx.localA, ctx.localB].map((s) => [s.name, s.pid] as const),
  );
  const started = performance.now();
  let busiest = '';
  while (performance.now() - started < QUIET_CAP_MS) {
    const meter = new CpuMeter(pids).begin();
    await sleep(1000);
    const shares = Object.entries(meter.end());
    const busy = shares.filter(([, s]) => s.cpuPercent >= QUIET_PERCENT);
    if (!busy.length) break;
    busiest = busy.map(([name, s]) => `${name} ${s.cpuPercent.toFixed(0)}%`).join(', ');
  }
  const waited = performance.now() - started;
  if (waited > 1500)
    ctx.log(`${label}: waited ${(waited / 1000).toFixed(0)} s for quiet servers (${busiest})`);
}
