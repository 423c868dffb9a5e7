/** How a device reaches Atlas: directly (today's mode) or through relays on NATS JetStream. */
export type SyncTransport = 'direct' | 'nats';

/** What this process is in fleet mode: a device, or a relay between the devices and Atlas. */
export type FleetRole = 'device' | 'relay';

/**
 * Options of fleet mode. Every option has an environment variable (`FLEET_ENV_VARIABLES`,
 * read by `fleetOptionsFromEnv()`) and a default (in `ResolvedFleetConfig`).
 *
 * @publicApi
 */
export interface FleetModuleOptions {
  /** `SYNC_TRANSPORT`: `direct` (default; nothing of NATS is used) or `nats`. */
  transport?: SyncTransport;
  /** `SYNC_FLEET_ROLE`: `device` (default) or `relay`. */
  role?: FleetRole;
  /**
   * `NATS_URL`: one or more comma-separated server URLs (`nats://`, `tls://`, `ws://`,
   * `wss://`). Default `nats://127.0.0.1:4222`. Credentials belong in the options below.
   */
  servers?: string[];
  /** `NATS_CREDS`: path of a `.creds` file (user JWT and nkey seed; decentralized auth). */
  credsFile?: string;
  /** `NATS_USER`: user name (with `password`). */
  user?: string;
  /** `NATS_PASSWORD`: password of `user`. Never logged or reported. */
  password?: string;
  /** `NATS_TOKEN`: authentication token. Never logged or reported. */
  token?: string;
  /**
   * `NATS_DEVICE_ID` (default: `SYNC_INSTANCE_ID`): the device's id in its subjects
   * (`sync.push.<id>.<partition>`, `sync.rebaseline.<id>`), its consumer name and its inbox
   * prefix `_INBOX.<id>`. It must equal the instance id the device stamps in `_sync.o` (the
   * relay rejects a push whose stamp names another device) and, being a subject token, may
   * only hold A-Z a-z 0-9 _ -. Required for a device in fleet mode.
   */
  deviceId?: string;
  /** `NATS_CHANGES_STREAM`: the stream of Atlas changes, `sync.changes.<collection>`. Default `SYNC_CHANGES`. */
  changesStream?: string;
  /** `NATS_PUSH_STREAM`: the work-queue stream of device pushes, `sync.push.>`. Default `SYNC_PUSH`. */
  pushStream?: string;
  /**
   * `NATS_CHANGES_MAX_AGE` (ms): how long the changes stream keeps a change. A device
   * offline for longer re-baselines. Default 7 days.
   */
  changesMaxAge?: number;
  /** `NATS_CHANGES_MAX_BYTES`: size cap of the changes stream, oldest dropped first (-1: none). Default 1 GiB. */
  changesMaxBytes?: number;
  /**
   * `NATS_PUSH_MAX_BYTES`: size cap of the push stream (-1: none). When full, publishes are
   * refused and devices keep their outbox entries; nothing is dropped. Default 1 GiB.
   */
  pushMaxBytes?: number;
  /** `NATS_DUPLICATE_WINDOW` (ms): how long JetStream remembers a `Nats-Msg-Id`. Default 5 minutes. */
  duplicateWindow?: number;
  /** `NATS_STREAM_REPLICAS`: replicas of both streams (1, or 3/5 on a cluster). Default 1. */
  streamReplicas?: number;
  /**
   * `NATS_PUSH_PARTITIONS`: push subjects are `sync.push.<device>.<partition>`, the
   * partition a hash of (collection, id), so one document's pushes always share a partition.
   * Change it only while the push stream is empty. Default 16.
   */
  pushPartitions?: number;
  /** `NATS_CONNECT_TIMEOUT` (ms): time allowed for the first connection. Default 5000. */
  connectTimeout?: number;
  /** `NATS_RECONNECT_WAIT` (ms): pause between reconnect attempts to one server. Default 1000. */
  reconnectTimeWait?: number;
  /** `NATS_MAX_RECONNECT_ATTEMPTS`: attempts per server before giving up (-1: never). Default -1. */
  maxReconnectAttempts?: number;
  /** Client name the server shows in its monitoring (default `nest-bidirectional-sync:<role>[:<deviceId>]`). */
  connectionName?: string;
}
