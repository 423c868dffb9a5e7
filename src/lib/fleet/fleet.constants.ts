/** Injection token of the resolved fleet configuration (`ResolvedFleetConfig`). */
export const FLEET_CONFIG = Symbol('FLEET_CONFIG');

/** Root token of every fleet subject. */
export const FLEET_SUBJECT_ROOT = 'sync';

/** JetStream headers fleet messages carry besides `Nats-Msg-Id`. */
export const FLEET_HEADERS = {
  /** JetStream's deduplication header. */
  msgId: 'Nats-Msg-Id',
  /** Version (`_sync.v`) of the state the message carries, readable without decoding. */
  version: 'Sync-Version',
  /** Instance id (`_sync.o`) of the device, or `atlas`, that wrote the state. */
  origin: 'Sync-Origin',
} as const;

/** Queue group the relays answer re-baseline requests in (one relay answers each). */
export const RELAY_QUEUE_GROUP = 'sync-relays';

/** Longest a relay waits for a device's queued pushes to be applied before answering a re-baseline's settled read (ms). */
export const REBASELINE_PUSH_WAIT_MS = 20_000;
