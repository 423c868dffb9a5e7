/** Statistics helpers. Latencies that never resolved are `Infinity` (censored at the wait cap). */

export function sortedCopy(values: number[]): number[] {
  return [...values].sort((a, b) => a - b);
}

/** Nearest-rank percentile of an ascending array (`p` in 0..100); NaN when empty. */
export function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

/** Median of values (Infinity allowed); NaN when empty. */
export function median(values: number[]): number {
  const finite = values.filter((v) => !Number.isNaN(v));
  if (!finite.length) return NaN;
  const s = sortedCopy(finite);
  const mid = Math.floor(s.length / 2);
  if (s.length % 2) return s[mid];
  if (!Number.isFinite(s[mid - 1]) || !Number.isFinite(s[mid])) return s[mid];
  return (s[mid - 1] + s[mid]) / 2;
}

export function mean(values: number[]): number {
  return values.length ? values.reduce((a, b) => a + b, 0) / values.length : NaN;
}

export interface LatencySummary {
  /** Samples (including undelivered ones). */
  n: number;
  /** Samples never seen at the destination within the wait cap. */
  undelivered: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
  mean: number;
}

export function summarize(latencies: number[]): LatencySummary {
  const s = sortedCopy(latencies);
  const finite = s.filter(Number.isFinite);
  return {
    n: s.length,
    undelivered: s.length - finite.length,
    p50: percentile(s, 50),
    p95: percentile(s, 95),
    p99: percentile(s, 99),
    max: s.length ? s[s.length - 1] : NaN,
    mean: mean(finite),
  };
}

/** Per-field median of several summaries. */
export function medianSummary(list: LatencySummary[]): LatencySummary {
  const pick = (k: keyof LatencySummary) => median(list.map((x) => x[k]));
  return {
    n: pick('n'),
    undelivered: pick('undelivered'),
    p50: pick('p50'),
    p95: pick('p95'),
    p99: pick('p99'),
    max: pick('max'),
    mean: pick('mean'),
  };
}

/** Index of the run whose value is the median (the representative run for charts). */
export function medianIndex(values: number[]): number {
  const order = values.map((v, i) => [v, i] as const).sort((a, b) => a[0] - b[0]);
  return order[Math.floor((order.length - 1) / 2)]?.[1] ?? 0;
}

/** JSON cannot hold Infinity/NaN: ∞ (undelivered, not converged) becomes null, NaN (no value) is left out. */
export function jsonSafe<T>(value: T): T {
  return JSON.parse(
    JSON.stringify(value, (_k, v) =>
      typeof v !== 'number' || Number.isFinite(v) ? v : Number.isNaN(v) ? undefined : null,
    ),
  ) as T;
}

export const MiB = 1024 * 1024;
