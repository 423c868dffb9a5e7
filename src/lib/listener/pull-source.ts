import type { ChangeStreamTailerStatus } from '../common/change-stream-tailer';

/** Injection token of the listener's `PullSource` (optional: without one, the Atlas change stream). */
export const SYNC_PULL_SOURCE = Symbol('SYNC_PULL_SOURCE');

/**
 * Where the Atlas Change Listener reads other devices' changes from. Direct mode (the
 * default) tails the Atlas change stream; fleet mode consumes the JetStream changes stream.
 * A source applies what it reads and persists its position after each applied batch.
 */
export interface PullSource {
  start(): void;
  /** Stops reading; the batch in progress is applied and its position saved first. */
  stop(): Promise<void>;
  readonly status: ChangeStreamTailerStatus;
}
