import type { BidirectionalSyncModuleOptions } from '../../src/lib/config/sync-options.interface';

/** One device a device process runs. */
export interface DeviceSpec {
  localUri: string;
  localDbName: string;
  atlasUri: string;
  atlasDbName: string;
  instanceId: string;
  options?: Partial<BidirectionalSyncModuleOptions>;
}

/** Driver commands timed by command monitoring, per side and command (profiling pass only). */
export type CommandStats = Record<string, { count: number; totalMs: number; maxMs: number }>;

export interface ProcSample {
  /** Epoch ms. */
  at: number;
  rss: number;
  heapUsed: number;
  /** V8 heap reserved (used plus free pages not yet returned). */
  heapTotal: number;
  /** Memory outside the V8 heap held by JS objects (Buffers, driver sockets). */
  external: number;
  /** Cumulative CPU microseconds of the process. */
  cpuUser: number;
  cpuSystem: number;
  /** Changes the process's devices synced so far (MonitorService `successful`, summed). */
  synced: { localToAtlas: number; atlasToLocal: number };
  /** Atlas → Local changes each device applied so far, by instance id. */
  appliedByDevice: Record<string, number>;
}

export type ParentMessage =
  | {
      type: 'start';
      devices: DeviceSpec[];
      concurrency: number;
      monitorCommands: boolean;
      /** How long each device may take to have both streams running. */
      readyTimeoutMs: number;
    }
  | { type: 'stats' }
  /** `graceful`: close the Nest applications (final push included); otherwise exit at once (a CPU profile is still written). */
  | { type: 'stop'; graceful: boolean };

export type ChildMessage =
  | ({ type: 'sample' } & ProcSample)
  /** `monoUs`: the monotonic clock (µs, the clock of V8 CPU profiles) when the devices were ready. */
  | { type: 'ready'; startMs: number; monoUs: number }
  | { type: 'stats'; commandStats: CommandStats }
  | { type: 'stopped'; commandStats: CommandStats }
  | { type: 'error'; message: string };
