/** State of the local capture, as health shows it. */
export interface LocalCaptureStatus {
  running: boolean;
  connected: boolean;
  consecutiveFailures: number;
  lastError?: string;
}

/**
 * What `BidirectionalSyncService` needs from the local capture, whichever
 * runs: the change stream (replica sets) or the dirty markers the Mongoose
 * plugin records (standalone servers).
 */
export interface LocalCapture {
  readonly status: LocalCaptureStatus;
  start(): void;
  stop(): Promise<void>;
  /** Resolves once every local write made before the call has been captured (or capture stopped). */
  caughtUp(): Promise<void>;
}
