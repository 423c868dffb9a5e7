import { ChildProcess, fork } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { MiB } from './stats';
import { serviceNodeFlags } from '../../test/support/service-command';
import type { ChildMessage, CommandStats, DeviceSpec, ProcSample } from './protocol';

export interface HostOptions {
  /** Compiled device-process entry (see build.ts). */
  entry: string;
  /** Write a V8 CPU profile of this process into this directory, named `<label>.cpuprofile`. */
  cpuProfileDir?: string;
  monitorCommands?: boolean;
  /** Devices started at once (fan-in). */
  concurrency?: number;
  readyTimeoutMs?: number;
  /** Called with every sample, from the process's start (before it is ready). */
  onSample?: (sample: ProcSample) => void;
}

export interface Footprint {
  rssPeakMiB: number;
  rssMeanMiB: number;
  heapPeakMiB: number;
  /** Peak V8 heap reserved, and peak memory outside it held by JS objects (RSS minus these two is code, stacks and allocator slack). */
  heapTotalPeakMiB: number;
  externalPeakMiB: number;
  /** Average share of one core (100 = one core). */
  cpuPercent: number;
  cpuSeconds: number;
}

const live = new Set<DeviceHost>();

/** Per host label: monotonic µs when its devices were ready (profiles are summarized from there on). */
export const readyMarks = new Map<string, number>();

/** Kills every device process at once (exit and signal paths). */
export function killAllHosts(): void {
  for (const host of live) host.kill();
}

/**
 * A device process seen from the benchmark: forks it, starts its devices,
 * collects its memory/CPU samples and stops it (gracefully, so a CPU profile
 * gets written; SIGKILL after a timeout).
 */
export class DeviceHost {
  readonly samples: ProcSample[] = [];
  /** ms the devices took to start and become ready. */
  startMs = 0;
  private readonly child: ChildProcess;
  private readonly exited: Promise<void>;
  private waiters: ((m: ChildMessage) => void)[] = [];
  private lastError?: string;

  private constructor(
    readonly label: string,
    private readonly options: HostOptions,
  ) {
    // Device processes run with the Node flags the service ships with (`npm start`).
    const execArgv = serviceNodeFlags();
    if (options.cpuProfileDir) {
      mkdirSync(options.cpuProfileDir, { recursive: true });
      execArgv.push(
        '--cpu-prof',
        `--cpu-prof-dir=${options.cpuProfileDir}`,
        `--cpu-prof-name=${label}.cpuprofile`,
      );
    }
    this.child = fork(options.entry, [], {
      execArgv,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      env: { ...process.env },
    });
    live.add(this);
    this.exited = new Promise((resolve) => this.child.once('exit', () => resolve()));
    void this.exited.then(() => live.delete(this));
    this.child.on('message', (m: ChildMessage) => {
      if (m.type === 'sample') {
        this.samples.push(m);
        options.onSample?.(m);
      }
      if (m.type === 'error') this.lastError = m.message;
      for (const w of this.waiters) w(m);
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  static async start(
    label: string,
    devices: DeviceSpec[],
    options: HostOptions,
  ): Promise<DeviceHost> {
    const host = new DeviceHost(label, options);
    try {
      const readyTimeoutMs = options.readyTimeoutMs ?? 180_000;
      const ready = await host.waitFor('ready', readyTimeoutMs, () =>
        host.child.send({
          type: 'start',
          devices,
          concurrency: options.concurrency ?? 1,
          monitorCommands: !!options.monitorCommands,
          readyTimeoutMs,
        }),
      );
      const r = ready as Extract<ChildMessage, { type: 'ready' }>;
      host.startMs = r.startMs;
      readyMarks.set(label, r.monoUs);
      return host;
    } catch (err) {
      host.kill();
      throw err;
    }
  }

  private waitFor(
    type: ChildMessage['type'],
    timeoutMs: number,
    trigger: () => void,
    accept: (m: ChildMessage) => boolean = () => true,
  ): Promise<ChildMessage> {
    return new Promise((resolve, reject) => {
      const cleanup = (): void => {
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== waiter);
        this.child.off('exit', onExit);
      };
      const waiter = (m: ChildMessage): void => {
        if (m.type === type && accept(m)) {
          cleanup();
          resolve(m);
        } else if (m.type === 'error') {
          cleanup();
          reject(new Error(`${this.label}: ${m.message}`));
        }
      };
      const onExit = (code: number | null): void => {
        cleanup();
        reject(
          new Error(`${this.label} exited (${code}) before "${type}": ${this.lastError ?? ''}`),
        );
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`${this.label}: no "${type}" within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.push(waiter);
      this.child.once('exit', onExit);
      trigger();
    });
  }

  /** Driver command counts and times so far (hosts started with monitorCommands). */
  async commandStats(): Promise<CommandStats> {
    const m = await this.waitFor('stats', 30_000, () => this.child.send({ type: 'stats' }));
    return (m as Extract<ChildMessage, { type: 'stats' }>).commandStats;
  }

  /**
   * A sample taken now (it also joins `samples`): the ends of a measurement
   * window, so the command counters in it are exact at that instant.
   */
  async sampleNow(): Promise<ProcSample> {
    const m = await this.waitFor(
      'sample',
      30_000,
      () => this.child.send({ type: 'sample' }),
      (x) => x.type === 'sample' && !!x.requested,
    );
    return m as ProcSample;
  }

  /** Memory and CPU of this process between two epoch-ms instants. */
  footprint(fromMs: number, toMs: number): Footprint {
    const inside = this.samples.filter((s) => s.at >= fromMs && s.at <= toMs);
    const before = [...this.samples].reverse().find((s) => s.at <= fromMs) ?? inside[0];
    const after = inside[inside.length - 1];
    const cpuSeconds =
      before && after
        ? (after.cpuUser + after.cpuSystem - before.cpuUser - before.cpuSystem) / 1e6
        : NaN;
    const seconds = before && after ? (after.at - before.at) / 1000 : NaN;
    return {
      rssPeakMiB: Math.max(...inside.map((s) => s.rss)) / MiB,
      rssMeanMiB: inside.reduce((a, s) => a + s.rss, 0) / inside.length / MiB,
      heapPeakMiB: Math.max(...inside.map((s) => s.heapUsed)) / MiB,
      heapTotalPeakMiB: Math.max(...inside.map((s) => s.heapTotal)) / MiB,
      externalPeakMiB: Math.max(...inside.map((s) => s.external)) / MiB,
      cpuSeconds,
      cpuPercent: seconds > 0 ? (100 * cpuSeconds) / seconds : NaN,
    };
  }

  /** RSS right now (last sample), MiB. */
  get rssMiB(): number {
    return (this.samples[this.samples.length - 1]?.rss ?? NaN) / MiB;
  }

  /**
   * Ends the process and returns its command statistics. `graceful` closes the
   * Nest applications first (their shutdown pushes the whole outbox, which
   * takes long behind a backlog); otherwise the process exits at once, which
   * still writes its CPU profile. Measurements are over by the time this runs.
   */
  async stop({
    graceful = false,
    timeoutMs = 30_000,
  }: { graceful?: boolean; timeoutMs?: number } = {}): Promise<CommandStats> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return {};
    try {
      const m = await this.waitFor('stopped', timeoutMs, () =>
        this.child.send({ type: 'stop', graceful }),
      );
      await Promise.race([this.exited, new Promise((r) => setTimeout(r, 10_000))]);
      return (m as Extract<ChildMessage, { type: 'stopped' }>).commandStats;
    } catch {
      return {};
    } finally {
      this.kill();
      await this.exited;
    }
  }

  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}
