import { createHash } from 'node:crypto';
import { BSON } from 'mongodb';
import type { SyncVersion } from '../common/hybrid-logical-clock';
import { FLEET_SUBJECT_ROOT } from './fleet.constants';

/**
 * The subjects of fleet mode (docs/fleet.md has the whole design and the permissions):
 *
 * - `sync.changes.<collection>`: Atlas changes, published by the active relay into the
 *   changes stream, read by devices through their own durable consumer;
 * - `sync.push.<deviceId>.<partition>`: a device's pushes, into the work-queue push stream;
 *   the partition is a hash of (collection, id), so the relays can keep per-document order;
 * - `sync.rebaseline.<deviceId>`: re-baseline page requests (request/reply);
 * - `_INBOX.<deviceId>.>`: the device's replies (its inbox prefix).
 */

const SAFE_TOKEN_CHAR = /[A-Za-z0-9_-]/;

/**
 * A collection name as one subject token. MongoDB names may hold `.`, `*`, `>` and spaces,
 * which split or widen a subject; every byte outside A-Z a-z 0-9 _ - is written `%XX`
 * (UTF-8, upper-case hex, `%` included), so the mapping is one-to-one and reversible.
 */
export function encodeSubjectToken(value: string): string {
  if (!value) throw new Error('a subject token cannot be empty');
  let token = '';
  for (const char of value) {
    if (SAFE_TOKEN_CHAR.test(char)) token += char;
    else
      for (const byte of Buffer.from(char, 'utf8'))
        token += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return token;
}

/** The inverse of `encodeSubjectToken()`. */
export function decodeSubjectToken(token: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < token.length; i++) {
    if (token[i] === '%') {
      const hex = token.slice(i + 1, i + 3);
      if (!/^[0-9A-F]{2}$/.test(hex)) throw new Error(`invalid escape in subject token "${token}"`);
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else bytes.push(token.charCodeAt(i));
  }
  return Buffer.from(bytes).toString('utf8');
}

export const CHANGES_SUBJECTS = `${FLEET_SUBJECT_ROOT}.changes.*`;
export const PUSH_SUBJECTS = `${FLEET_SUBJECT_ROOT}.push.>`;
/** What the relays subscribe to (queue group `RELAY_QUEUE_GROUP`) to serve re-baselines. */
export const REBASELINE_SUBJECTS = `${FLEET_SUBJECT_ROOT}.rebaseline.*`;

export function changeSubject(collection: string): string {
  return `${FLEET_SUBJECT_ROOT}.changes.${encodeSubjectToken(collection)}`;
}

/** The collection a `sync.changes.<collection>` subject names. */
export function collectionOfChangeSubject(subject: string): string {
  const prefix = `${FLEET_SUBJECT_ROOT}.changes.`;
  const token = subject.startsWith(prefix) ? subject.slice(prefix.length) : '';
  if (!token || token.includes('.')) throw new Error(`"${subject}" is not a change subject`);
  return decodeSubjectToken(token);
}

export function pushSubject(deviceId: string, partition: number): string {
  return `${FLEET_SUBJECT_ROOT}.push.${deviceId}.${partition}`;
}

/** Every push subject of one device (all its partitions). */
export function devicePushFilter(deviceId: string): string {
  return `${FLEET_SUBJECT_ROOT}.push.${deviceId}.>`;
}

/** The push subjects of every device in one partition: a relay's consumer filter. */
export function pushPartitionFilter(partition: number): string {
  return `${FLEET_SUBJECT_ROOT}.push.*.${partition}`;
}

/** The device and partition of a push subject. The device token is what the server authorized. */
export function parsePushSubject(subject: string): { deviceId: string; partition: number } {
  const parts = subject.split('.');
  if (
    parts.length !== 4 ||
    parts[0] !== FLEET_SUBJECT_ROOT ||
    parts[1] !== 'push' ||
    !/^\d+$/.test(parts[3])
  )
    throw new Error(`"${subject}" is not a push subject`);
  return { deviceId: parts[2], partition: Number(parts[3]) };
}

export function rebaselineSubject(deviceId: string): string {
  return `${FLEET_SUBJECT_ROOT}.rebaseline.${deviceId}`;
}

/** The inbox prefix of a device: its permissions let it subscribe to nothing else. */
export function deviceInboxPrefix(deviceId: string): string {
  return `_INBOX.${deviceId}`;
}

/** The canonical Extended JSON of a document id: equal ids of any BSON type give equal text. */
function canonicalId(id: unknown): string {
  return BSON.EJSON.stringify({ id }, { relaxed: false });
}

/**
 * The push partition of a document: FNV-1a (32 bit) of the collection and the id's
 * canonical Extended JSON, modulo the partition count. Stable across processes and releases.
 */
export function pushPartition(collection: string, id: unknown, partitions: number): number {
  let hash = 0x811c9dc5;
  for (const byte of Buffer.from(`${collection}\u0000${canonicalId(id)}`, 'utf8')) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash % partitions;
}

/**
 * The `Nats-Msg-Id` of one state of one document: SHA-256 of (collection, id, version),
 * base64url. A version names exactly one write (it carries the writer's instance id), so a
 * replay of the same change after a failover or a retried push gets the same id and JetStream
 * stores it once (within the duplicate window).
 */
export function fleetMessageId(collection: string, id: unknown, version: SyncVersion): string {
  return createHash('sha256')
    .update(`${collection}\u0000${canonicalId(id)}\u0000${version}`, 'utf8')
    .digest('base64url');
}
