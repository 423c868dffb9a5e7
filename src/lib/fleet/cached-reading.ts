/** Options of a `CachedReading`. */
export interface CachedReadingOptions {
  /** A reading is reused this long (ms): health and a scrape ask together. Default 1000. */
  reuseMs?: number;
  /** A caller waits at most this long for a new reading (ms), then gets the last. Default 1000. */
  timeoutMs?: number;
}

/**
 * A figure read from the NATS server (a consumer's or a stream's depth) for health and
 * metrics: read at most once per `reuseMs`, concurrent callers share one request, a caller
 * never waits longer than `timeoutMs`, and a failed or skipped reading leaves the last value.
 */
export class CachedReading<T> {
  private value?: T;
  private readAt = 0;
  private reading?: Promise<void>;
  private readonly reuseMs: number;
  private readonly timeoutMs: number;

  constructor(
    private readonly query: () => Promise<T>,
    options: CachedReadingOptions = {},
  ) {
    this.reuseMs = options.reuseMs ?? 1000;
    this.timeoutMs = options.timeoutMs ?? 1000;
  }

  /** The last value (undefined before the first successful reading). */
  get last(): T | undefined {
    return this.value;
  }

  /** Sets the value from elsewhere (e.g. a fetch that carried it). */
  set(value: T): void {
    this.value = value;
  }

  /** A fresh value when `ask` and the last one is older than `reuseMs`; else the last one. */
  async read(ask = true): Promise<T | undefined> {
    if (!ask || Date.now() - this.readAt < this.reuseMs) return this.value;
    this.reading ??= this.query()
      .then((value) => {
        this.value = value;
        this.readAt = Date.now();
      })
      .catch(() => undefined) // not there yet, or the server is slow: the last value stands
      .finally(() => (this.reading = undefined));
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.reading,
      new Promise((resolve) => (timer = setTimeout(resolve, this.timeoutMs))),
    ]);
    clearTimeout(timer);
    return this.value;
  }
}
