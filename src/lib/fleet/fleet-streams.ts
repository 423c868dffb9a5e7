import {
  AckPolicy,
  ConsumerConfig,
  ConsumerInfo,
  DeliverPolicy,
  DiscardPolicy,
  JetStreamApiError,
  JetStreamManager,
  RetentionPolicy,
  StorageType,
  StreamConfig,
  StreamInfo,
} from '@nats-io/jetstream';
import { nanos } from '@nats-io/nats-core';
import type { ResolvedFleetConfig } from './fleet-config';
import { FleetPositionExpiredError, FleetStreamConfigError } from './fleet.errors';
import { CHANGES_SUBJECTS, PUSH_SUBJECTS } from './fleet-subjects';

/** JetStream API error codes this module tells apart. */
const STREAM_NOT_FOUND = 10059;
const CONSUMER_NOT_FOUND = 10014;

/** What fleet mode manages in a stream's configuration (the rest is left as it is). */
export type ManagedStreamConfig = Pick<
  StreamConfig,
  | 'name'
  | 'subjects'
  | 'retention'
  | 'storage'
  | 'max_age'
  | 'max_bytes'
  | 'discard'
  | 'duplicate_window'
  | 'num_replicas'
  | 'deny_delete'
>;

/**
 * The changes stream: every Atlas change, one subject per collection, kept by age and size
 * (oldest dropped first), so a device can resume from its sequence within the retention.
 * Messages cannot be deleted one by one (deny_delete): a device's position must stay valid.
 */
export function changesStreamConfig(config: ResolvedFleetConfig): ManagedStreamConfig {
  return {
    name: config.changesStream,
    subjects: [CHANGES_SUBJECTS],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    max_age: nanos(config.changesMaxAge),
    max_bytes: config.changesMaxBytes,
    discard: DiscardPolicy.Old,
    duplicate_window: nanos(config.duplicateWindow),
    num_replicas: config.streamReplicas,
    deny_delete: true,
  };
}

/**
 * The push stream: device pushes as a work queue (a message is gone once a relay acks it).
 * A device deletes its outbox entry on the publish acknowledgement, so the stream is then
 * the only copy: no age limit, and when full it refuses new messages (`discard: new`), so
 * the device keeps its entry and retries, instead of dropping old ones.
 */
export function pushStreamConfig(config: ResolvedFleetConfig): ManagedStreamConfig {
  return {
    name: config.pushStream,
    subjects: [PUSH_SUBJECTS],
    retention: RetentionPolicy.Workqueue,
    storage: StorageType.File,
    max_age: 0,
    max_bytes: config.pushMaxBytes,
    discard: DiscardPolicy.New,
    duplicate_window: nanos(config.duplicateWindow),
    num_replicas: config.streamReplicas,
    deny_delete: false,
  };
}

export interface StreamProvisionResult {
  name: string;
  action: 'created' | 'updated' | 'unchanged';
  /** The fields that differed and were updated. */
  changed: string[];
}

/** Fields JetStream cannot change on an existing stream. */
const IMMUTABLE_FIELDS: (keyof ManagedStreamConfig)[] = ['retention', 'storage'];

function differences(current: StreamConfig, desired: ManagedStreamConfig): string[] {
  return (Object.keys(desired) as (keyof ManagedStreamConfig)[]).filter((key) => {
    const a = current[key] ?? (key === 'deny_delete' ? false : undefined);
    return JSON.stringify(a) !== JSON.stringify(desired[key]);
  });
}

function isApiError(err: unknown, code: number): boolean {
  return err instanceof JetStreamApiError && err.code === code;
}

/**
 * Creates the stream, or brings an existing one to the managed configuration (fields fleet
 * mode does not manage keep their values). Idempotent: a second call changes nothing.
 * Throws `FleetStreamConfigError` when the existing stream differs in a field JetStream
 * cannot change (retention, storage).
 */
export async function provisionStream(
  jsm: JetStreamManager,
  desired: ManagedStreamConfig,
): Promise<StreamProvisionResult> {
  let current: StreamInfo | undefined;
  try {
    current = await jsm.streams.info(desired.name);
  } catch (err) {
    if (!isApiError(err, STREAM_NOT_FOUND)) throw err;
  }
  if (!current) {
    try {
      await jsm.streams.add(desired);
      return { name: desired.name, action: 'created', changed: [] };
    } catch (err) {
      // Another relay created it in between: fall through to the comparison.
      current = await jsm.streams.info(desired.name).catch(() => {
        throw err;
      });
    }
  }
  const changed = differences(current.config, desired);
  if (!changed.length) return { name: desired.name, action: 'unchanged', changed };
  const immutable = changed.filter((f) =>
    IMMUTABLE_FIELDS.includes(f as keyof ManagedStreamConfig),
  );
  if (immutable.length)
    throw new FleetStreamConfigError(
      `stream ${desired.name} exists with ${immutable.map((f) => `${f} ${JSON.stringify(current.config[f as keyof StreamConfig])}`).join(', ')}; fleet mode needs ${immutable.map((f) => JSON.stringify(desired[f as keyof ManagedStreamConfig])).join(', ')} and JetStream cannot change it: delete the stream or use another name`,
    );
  await jsm.streams.update(desired.name, { ...current.config, ...desired });
  return { name: desired.name, action: 'updated', changed };
}

/** Provisions both fleet streams (a relay's job; devices have no permission for it). */
export async function provisionFleetStreams(
  jsm: JetStreamManager,
  config: ResolvedFleetConfig,
): Promise<StreamProvisionResult[]> {
  return [
    await provisionStream(jsm, changesStreamConfig(config)),
    await provisionStream(jsm, pushStreamConfig(config)),
  ];
}

/**
 * The durable pull consumer of one device on the changes stream, named after the device (its
 * permissions allow that name only), starting after `lastAppliedSequence` (0: from the start).
 */
export function deviceConsumerConfig(
  deviceId: string,
  lastAppliedSequence: number,
): Partial<ConsumerConfig> & { durable_name: string } {
  return {
    durable_name: deviceId,
    ack_policy: AckPolicy.Explicit,
    ...(lastAppliedSequence > 0
      ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: lastAppliedSequence + 1 }
      : { deliver_policy: DeliverPolicy.All }),
    ack_wait: nanos(30_000),
    max_ack_pending: 1000,
  };
}

/**
 * Makes sure the device's durable consumer continues right after the sequence the device
 * persisted (in `_sync_metadata`, like a resume token). The device's own record decides: a
 * consumer whose acknowledgements are elsewhere (the device crashed between applying and
 * acknowledging, or its store was restored) is recreated at that position. Throws
 * `FleetPositionExpiredError` when retention has dropped the next message: re-baseline.
 */
export async function ensureDeviceConsumer(
  jsm: JetStreamManager,
  stream: string,
  deviceId: string,
  lastAppliedSequence: number,
): Promise<ConsumerInfo> {
  const streamInfo = await jsm.streams.info(stream);
  const { first_seq: firstSeq, last_seq: lastSeq, messages } = streamInfo.state;
  // An empty stream after trimming has first_seq = last_seq + 1; nothing has been lost then
  // as long as the device had seen everything up to last_seq.
  const oldestAvailable = messages > 0 ? firstSeq : lastSeq + 1;
  if (lastAppliedSequence + 1 < oldestAvailable && lastAppliedSequence < lastSeq)
    throw new FleetPositionExpiredError(stream, lastAppliedSequence, firstSeq);
  let existing: ConsumerInfo | undefined;
  try {
    existing = await jsm.consumers.info(stream, deviceId);
  } catch (err) {
    if (!isApiError(err, CONSUMER_NOT_FOUND)) throw err;
  }
  if (existing && existing.ack_floor.stream_seq === lastAppliedSequence) return existing;
  if (existing) await jsm.consumers.delete(stream, deviceId);
  return jsm.consumers.add(stream, deviceConsumerConfig(deviceId, lastAppliedSequence));
}
