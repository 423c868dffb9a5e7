/**
 * The last `capacity` samples in a ring buffer, for percentiles over recent
 * traffic with constant memory.
 */
/** Samples kept by default: enough for a stable p99, small enough to sort at every scrape. */
export const LATENCY_WINDOW_CAPACITY = 2048;

export class LatencyWindow {
  private readonly samples: Float64Array;
  private size = 0;
  private next = 0;

  constructor(private readonly capacity = LATENCY_WINDOW_CAPACITY) {
    this.samples = new Float64Array(capacity);
  }

  add(value: number): void {
    this.samples[this.next] = value;
    this.next = (this.next + 1) % this.capacity;
    this.size = Math.min(this.size + 1, this.capacity);
  }

  /** Percentiles (nearest rank) of the samples held, or nulls when empty. */
  percentiles(): { p50: number | null; p95: number | null; p99: number | null } {
    if (!this.size) return { p50: null, p95: null, p99: null };
    const sorted = Array.from(this.samples.subarray(0, this.size)).sort((a, b) => a - b);
    const at = (p: number): number =>
      sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
    return { p50: at(50), p95: at(95), p99: at(99) };
  }

  get count(): number {
    return this.size;
  }
}
