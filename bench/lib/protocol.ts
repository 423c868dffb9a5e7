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

/** The server a device's driver client talks to. */
export type ServerSide = 'local' | 'atlas';

/**
 * What the module's driver clients sent to one server for one command on one
 * target (a collection, `changeStream`, or '' for database commands), from
 * driver command monitoring (`bench/lib/command-counters.ts`).
 */
export interface CommandCounter {
  side: ServerSide;
  command: string;
  target: string;
  /** Commands sent, and those that failed. */
  count: number;
  failed: number;
  /** Time waited on replies (getMore includes the `maxAwaitTimeMS` idle wait). */
  totalMs: number;
  maxMs: number;
  /** Write statements sent: insert documents, update/delete statements, 1 per findAndModify, bulkWrite ops. */
  statements: number;
  /** Documents the server reports written: inserted, modified or upserted, deleted. */
  written: number;
  /** Documents returned: cursor batches (change events included), findAndModify values. */
  returned: number;
  /** Update events of `fullDocument: 'updateLookup'` change streams: each one a server-side read of the document. */
  lookups: number;
}

/** Counters by `"<side> <command> <target>"`, e.g. `local update _sync_outbox`. */
export type CommandStats = Record<string, CommandCounter>;

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
  /** Cumulative driver command counters of the module's clients (empty unless `monitorCommands`). */
  commands: CommandStats;
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
  /** Send a sample now (answered with a sample marked `requested`). */
  | { type: 'sample' }
  /** `graceful`: close the Nest applications (final push included); otherwise exit at once (a CPU profile is still written). */
  | { type: 'stop'; graceful: boolean };

export type ChildMessage =
  | ({ type: 'sample'; requested?: boolean } & ProcSample)
  /** `monoUs`: the monotonic clock (µs, the clock of V8 CPU profiles) when the devices were ready. */
  | { type: 'ready'; startMs: number; monoUs: number }
  | { type: 'stats'; commandStats: CommandStats }
  | { type: 'stopped'; commandStats: CommandStats }
  | { type: 'error'; message: string };
