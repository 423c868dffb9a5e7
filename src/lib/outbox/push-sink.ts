import type { PushedEdit, PushOutcome } from './atlas-push-applier.service';

/** Injection token of the drainer's `PushSink` (optional: without one, pushes go to Atlas). */
export const SYNC_PUSH_SINK = Symbol('SYNC_PUSH_SINK');

/**
 * Where the Sync Worker sends local edits. Direct mode (the default) applies them to Atlas
 * with `AtlasPushApplier`; fleet mode publishes them to JetStream. An edit whose outcome is
 * `applied` or `stale` leaves the outbox; an `{ error }` stays queued and is retried.
 */
export interface PushSink {
  /** Makes the destination ready (Atlas: the module's indexes); retried by the next push on failure. */
  ready(): Promise<void>;
  /** Sends edits; resolves with each one's outcome (throws when nothing could be sent). */
  push<E extends PushedEdit>(edits: E[]): Promise<Map<E, PushOutcome>>;
}
