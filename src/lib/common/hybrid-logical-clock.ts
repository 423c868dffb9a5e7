/**
 * Hybrid logical clock (Kulkarni et al.): versions that follow wall-clock
 * time when clocks agree and never go backwards or lose causality when they
 * do not. A device that has seen a version always issues larger ones, so a
 * write made after seeing another write wins over it even when the other
 * device's clock runs minutes ahead.
 *
 * A version is a string that sorts as it compares:
 * `<15-digit ms>-<6-digit counter>-<instance id>`; the instance id breaks
 * ties between devices deterministically.
 */
export type SyncVersion = string;

const MS_DIGITS = 15;
const COUNTER_DIGITS = 6;
const MAX_COUNTER = 10 ** COUNTER_DIGITS - 1;
const VERSION_PATTERN = /^(\d{15})-(\d{6})-(.+)$/;

export interface ParsedVersion {
  ms: number;
  counter: number;
  node: string;
}

export function formatVersion(ms: number, counter: number, node: string): SyncVersion {
  return `${String(ms).padStart(MS_DIGITS, '0')}-${String(counter).padStart(COUNTER_DIGITS, '0')}-${node}`;
}

export function parseVersion(version: unknown): ParsedVersion | undefined {
  if (typeof version !== 'string') return undefined;
  const m = VERSION_PATTERN.exec(version);
  return m ? { ms: Number(m[1]), counter: Number(m[2]), node: m[3] } : undefined;
}

export function isVersion(value: unknown): value is SyncVersion {
  return parseVersion(value) !== undefined;
}

/** -1, 0 or 1; a missing version is older than any version. */
export function compareVersions(a: SyncVersion | undefined, b: SyncVersion | undefined): number {
  if (a === b) return 0;
  if (a === undefined) return -1;
  if (b === undefined) return 1;
  return a < b ? -1 : 1;
}

export function maxVersion(...versions: (SyncVersion | undefined)[]): SyncVersion | undefined {
  return versions.reduce<SyncVersion | undefined>(
    (m, v) => (compareVersions(v, m) > 0 ? v : m),
    undefined,
  );
}

/** The smallest version after `version` (same millisecond, next counter), issued as `node`. */
export function successor(version: SyncVersion | undefined, node: string): SyncVersion | undefined {
  const p = parseVersion(version);
  if (!p) return undefined;
  return p.counter < MAX_COUNTER
    ? formatVersion(p.ms, p.counter + 1, node)
    : formatVersion(p.ms + 1, 0, node);
}

/** A cluster time as the driver hands it (a BSON `Timestamp`: seconds and increment). */
export interface ClusterTime {
  high: number;
  low: number;
}

/**
 * The version every device derives alike for a write made without the engine
 * (from its change event's cluster time), issued as `node`. Without a
 * cluster time it falls back to this machine's clock, to the second.
 */
export function versionFromClusterTime(
  clusterTime: ClusterTime | undefined,
  node: string,
  now: () => number = Date.now,
): SyncVersion {
  const seconds = clusterTime ? clusterTime.high : Math.floor(now() / 1000);
  const increment = clusterTime ? clusterTime.low : 0;
  return formatVersion(seconds * 1000, Math.min(increment, MAX_COUNTER), node);
}

/** Milliseconds of wall-clock time a version claims (for lag and conflict reports). */
export function versionTime(version: SyncVersion | undefined): Date | undefined {
  const parsed = parseVersion(version);
  return parsed ? new Date(parsed.ms) : undefined;
}

export class HybridLogicalClock {
  private ms = 0;
  private counter = 0;

  constructor(
    readonly node: string,
    private readonly now: () => number = Date.now,
  ) {}

  /** A new version, larger than every version issued or received so far. */
  tick(): SyncVersion {
    const wall = this.now();
    if (wall > this.ms) {
      this.ms = wall;
      this.counter = 0;
    } else {
      this.bumpCounter();
    }
    return formatVersion(this.ms, this.counter, this.node);
  }

  /** Merges a version seen from elsewhere, so later ticks exceed it. */
  receive(version: SyncVersion | undefined): void {
    const seen = parseVersion(version);
    if (!seen) return;
    if (seen.ms > this.ms || (seen.ms === this.ms && seen.counter > this.counter)) {
      this.ms = seen.ms;
      this.counter = seen.counter;
    }
  }

  /** A new version strictly after `version` (and after everything seen). */
  tickAfter(version: SyncVersion | undefined): SyncVersion {
    this.receive(version);
    return this.tick();
  }

  /** The largest version seen or issued (persisted so restarts never go back). */
  get highWater(): SyncVersion {
    return formatVersion(this.ms, this.counter, this.node);
  }

  /** How far the clock runs ahead of this machine's wall clock (ms); large values reveal a skewed peer. */
  get driftMs(): number {
    return Math.max(0, this.ms - this.now());
  }

  private bumpCounter(): void {
    if (this.counter < MAX_COUNTER) {
      this.counter++;
    } else {
      this.ms++;
      this.counter = 0;
    }
  }
}
