import { WaiterList } from './waiter-list';

/** Exponential backoff after failed turns. */
export interface ReconnectPolicy {
  /** First delay (ms). */
  initialMs: number;
  /** Delay cap (ms). */
  maxMs: number;
  /** Consecutive failures after which the worker reports itself unhealthy. */
  maxAttempts: number;
}

/** Exponential backoff with full jitter in [delay/2, delay]. */
export function backoffDelay(
  attempt: number,
  policy: Pick<ReconnectPolicy, 'initialMs' | 'maxMs'>,
  random = Math.random,
): number {
  const base = Math.min(policy.maxMs, policy.initialMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(base / 2 + (random() * base) / 2);
}

/** Wait until woken (a turn that returns this sleeps until `wake()`). */
export const UNTIL_WOKEN = Infinity;

export interface WorkerLoopOptions {
  /** One turn of work; resolves with the wait before the next turn (ms, 0: at once, or `UNTIL_WOKEN`). */
  turn(): Promise<number>;
  /** The wait after a failed turn. */
  retry: Pick<ReconnectPolicy, 'initialMs' | 'maxMs'>;
  /** A failure this answers true for was dealt with: the next turn starts at once, uncounted. */
  recover?(error: unknown): Promise<boolean>;
  /** Told of each counted failure (to log it, say), with its attempt number and the wait before the next turn. */
  onFailure?(error: unknown, attempt: number, delayMs: number): void;
}

/**
 * The loop behind each of the engine's workers (the change-stream tailers,
 * the dirty-marker capture, the Sync Worker): turns that never overlap,
 * a wait between them that `wake()` ends (a wake during a turn makes the
 * next one start at once), backoff with jitter after failures, and a stop
 * that waits for the turn in progress.
 */
export class WorkerLoop {
  private loop?: Promise<void>;
  private stopping = false;
  private wakeRequested = false;
  private endWait?: () => void;
  private turnsStarted = 0;
  private turnsEnded = 0;
  private readonly turnWaiters = new WaiterList<{ after: number }>();
  private failures = 0;
  private lastFailure?: unknown;

  constructor(private readonly options: WorkerLoopOptions) {}

  get running(): boolean {
    return !!this.loop;
  }

  get stopRequested(): boolean {
    return this.stopping;
  }

  /** Failed turns in a row (0 after a successful one, or after `succeeded()`). */
  get consecutiveFailures(): number {
    return this.failures;
  }

  get lastError(): unknown {
    return this.lastFailure;
  }

  start(): void {
    if (this.loop) return;
    this.stopping = false;
    this.loop = this.run().finally(() => {
      this.loop = undefined;
      this.turnWaiters.releaseAll();
    });
  }

  /** Stops after the turn in progress (if any); resolves when the loop has ended. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.wake();
    await this.loop;
  }

  /** Ends the current wait; during a turn, the next one starts as soon as it ends. */
  wake(): void {
    this.wakeRequested = true;
    this.endWait?.();
  }

  /** Resolves once a turn that started after the call has ended (at once when the loop is not running). */
  nextTurn(): Promise<void> {
    if (!this.loop) return Promise.resolve();
    const after = this.turnsStarted;
    this.wake();
    return this.turnWaiters.wait({ after });
  }

  /** A long turn's progress counts as success (a stream that read again after a reconnect). */
  succeeded(): void {
    this.failures = 0;
    this.lastFailure = undefined;
  }

  private async run(): Promise<void> {
    while (!this.stopping) {
      this.wakeRequested = false;
      this.turnsStarted++;
      let delay: number;
      try {
        delay = await this.options.turn();
        this.succeeded();
      } catch (caught) {
        delay = await this.failed(caught);
      } finally {
        this.turnsEnded = this.turnsStarted;
        this.turnWaiters.release((w) => w.after < this.turnsEnded);
      }
      if (this.stopping) break;
      if (delay === 0 || (this.wakeRequested && this.failures === 0)) continue;
      await this.wait(delay);
    }
  }

  /** The wait after a failed turn (0 when `recover` dealt with it). */
  private async failed(caught: unknown): Promise<number> {
    if (this.stopping) return 0;
    let error = caught;
    if (this.options.recover) {
      try {
        if (await this.options.recover(error)) return 0;
      } catch (recoveryError) {
        error = recoveryError;
      }
    }
    this.failures++;
    this.lastFailure = error;
    const delay = backoffDelay(this.failures, this.options.retry);
    this.options.onFailure?.(error, this.failures, delay);
    return delay;
  }

  private wait(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = Number.isFinite(ms) ? setTimeout(done, ms) : undefined;
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.endWait = done;
    }).finally(() => (this.endWait = undefined));
  }
}
