import type { SyncDirection } from '../events/sync-events';

/** One point of the dashboard's time series: what happened during one sampling interval. */
export interface SyncDashboardSample {
  /** End of the interval (ms since the epoch). */
  t: number;
  /** Lag percentiles (ms) of the changes synced during the interval; null when none were. */
  lag: Record<SyncDirection, { p50: number | null; p99: number | null }>;
  /** Changes synced successfully per second during the interval. */
  throughput: Record<SyncDirection, number>;
}

/** Lags kept per direction and interval; beyond it new lags replace random ones (reservoir). */
const MAX_LAGS_PER_INTERVAL = 1024;

const DIRECTIONS: readonly SyncDirection[] = ['localToAtlas', 'atlasToLocal'];

/**
 * A bounded in-memory time series of lag percentiles and throughput per
 * direction: `add()` collects lags as changes are recorded, `sample()` closes
 * one interval. Holds at most `capacity` samples (15 minutes at one per
 * second by default), so memory stays constant however long it runs.
 */
export class SyncDashboardHistory {
  private readonly samples: SyncDashboardSample[] = [];
  private readonly lags: Record<SyncDirection, number[]> = { localToAtlas: [], atlasToLocal: [] };
  private readonly seen: Record<SyncDirection, number> = { localToAtlas: 0, atlasToLocal: 0 };
  private lastCounts?: Record<SyncDirection, number>;
  private lastAt?: number;

  constructor(
    readonly capacity = 900,
    private readonly random: () => number = Math.random,
  ) {}

  /** One change's lag, for the interval in progress. */
  add(direction: SyncDirection, lagMs: number): void {
    const kept = this.lags[direction];
    const seen = ++this.seen[direction];
    if (kept.length < MAX_LAGS_PER_INTERVAL) kept.push(lagMs);
    else {
      const slot = Math.floor(this.random() * seen);
      if (slot < MAX_LAGS_PER_INTERVAL) kept[slot] = lagMs;
    }
  }

  /**
   * Closes the interval ending at `now`. `successful` are the monitor's
   * running counts of successful changes; throughput is their growth per
   * second since the previous sample (nothing is stored for the first call,
   * which only sets the baseline).
   */
  sample(now: number, successful: Record<SyncDirection, number>): SyncDashboardSample | undefined {
    const previous = this.lastCounts;
    const since = this.lastAt;
    this.lastCounts = { ...successful };
    this.lastAt = now;
    const lag = {} as SyncDashboardSample['lag'];
    for (const direction of DIRECTIONS) {
      lag[direction] = percentiles(this.lags[direction]);
      this.lags[direction] = [];
      this.seen[direction] = 0;
    }
    if (!previous || since === undefined || now <= since) return undefined;
    const seconds = (now - since) / 1000;
    const throughput = {} as SyncDashboardSample['throughput'];
    for (const direction of DIRECTIONS) {
      const grown = Math.max(0, successful[direction] - previous[direction]);
      throughput[direction] = Math.round((grown / seconds) * 100) / 100;
    }
    const point: SyncDashboardSample = { t: now, lag, throughput };
    this.samples.push(point);
    if (this.samples.length > this.capacity)
      this.samples.splice(0, this.samples.length - this.capacity);
    return point;
  }

  /** Samples newer than `after` (all of them by default), oldest first. */
  since(after = 0): SyncDashboardSample[] {
    if (!this.samples.length || this.samples[this.samples.length - 1].t <= after) return [];
    return this.samples.filter((s) => s.t > after);
  }

  get size(): number {
    return this.samples.length;
  }
}

/** Nearest-rank p50 and p99, rounded to 0.1 ms. */
function percentiles(values: number[]): { p50: number | null; p99: number | null } {
  if (!values.length) return { p50: null, p99: null };
  const sorted = [...values].sort((a, b) => a - b);
  const at = (p: number): number => {
    const value = sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)];
    return Math.round(value * 10) / 10;
  };
  return { p50: at(0.5), p99: at(0.99) };
}
