import type { BidirectionalSyncModuleOptions } from '../../src/config/sync-options.interface';
import type { BenchArgs } from './args';
import { DeviceHost, HostOptions } from './device-host';
import type { DeviceSpec } from './protocol';
import type { BenchServer, ServerPool } from './servers';

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
    options: ctx.syncOptions,
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
