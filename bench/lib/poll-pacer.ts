import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Paces a polling loop so its probes take at most `1 / factor` of the
 * servers' time: after a probe the next one is due `max(minMs, factor × the
 * probe's duration)` later. On SecantusDB a count reads the whole collection
 * (docs/test-server.md D9), so a fixed 100 ms poll of a 100,000-document
 * collection would itself load the server the benchmark measures.
 */
export class PollPacer {
  private nextAt = 0;
  /** Longest gap between two probes: the resolution of a time measured by probing. */
  maxGapMs = 0;

  constructor(
    private readonly minMs: number,
    private readonly factor = 10,
  ) {}

  due(): boolean {
    return performance.now() >= this.nextAt;
  }

  async probe<T>(run: () => Promise<T>): Promise<T> {
    const started = performance.now();
    const result = await run();
    const gap = Math.max(this.minMs, this.factor * (performance.now() - started));
    this.nextAt = performance.now() + gap;
    this.maxGapMs = Math.max(this.maxGapMs, gap);
    return result;
  }

  /** Waits until the next probe is due. */
  async untilDue(): Promise<void> {
    const wait = this.nextAt - performance.now();
    if (wait > 0) await sleep(wait);
  }
}
