import { BSON, Document } from 'mongodb';
import { FleetMessageDecodeError } from './fleet.errors';

/**
 * Re-baseline over NATS request/reply (`sync.rebaseline.<deviceId>`, answered by one relay of
 * the queue group `sync-relays`): a device in fleet mode asks a relay for what a direct-mode
 * re-baseline reads from Atlas. Payloads are canonical Extended JSON, as the change messages.
 */
export const REBASELINE_FORMAT = 'fleet-rebaseline/1';

/**
 * One request; `bracket` is the JSON of a `$type` filter (null: the whole collection).
 * Extended JSON writes an undefined field as null: readers treat both alike.
 */
export type RebaselineRequest =
  | { op: 'position' }
  | { op: 'collections' }
  | { op: 'count'; collection: string }
  | { op: 'id-ends'; collection: string }
  | { op: 'id-types'; collection: string }
  | { op: 'page'; collection: string; bracket: string | null; after?: { id: unknown } | null }
  | { op: 'tombstones'; collection: string; after?: string | null }
  | { op: 'states'; collection: string; ids: unknown[]; settled?: boolean }
  | { op: 'empty'; collection: string };

/** What Atlas holds of some documents by `idKey()`, as arrays (`v` null: present, unstamped). */
export interface WireStates {
  docs: { k: string; v: string | null }[];
  tombstones: { k: string; v: string }[];
}

/** The reply: `result` (its shape follows the request's `op`) or `error`. */
export interface RebaselineReply {
  /**
   * The changes stream's last sequence, read before Atlas was (`position` and `page`): the
   * device consumes from the one of `position`, so nothing after its reads is missed.
   */
  seq?: number | null;
  result?: unknown;
  error?: string | null;
}

export function encodeRebaselinePayload(payload: RebaselineRequest | RebaselineReply): Uint8Array {
  return Buffer.from(
    BSON.EJSON.stringify({ f: REBASELINE_FORMAT, p: payload }, { relaxed: false }),
    'utf8',
  );
}

/** Decodes either side's payload, values as the MongoDB driver returns them (as the change codec). */
export function decodeRebaselinePayload<T extends RebaselineRequest | RebaselineReply>(
  data: Uint8Array,
): T {
  let wire: { f?: unknown; p?: unknown };
  try {
    const typed = BSON.EJSON.parse(Buffer.from(data).toString('utf8'), { relaxed: false });
    wire = BSON.deserialize(BSON.serialize(typed as Document)) as typeof wire;
  } catch (err) {
    throw new FleetMessageDecodeError(`not Extended JSON: ${(err as Error).message}`, {
      cause: err,
    });
  }
  if (wire?.f !== REBASELINE_FORMAT || !wire.p || typeof wire.p !== 'object')
    throw new FleetMessageDecodeError(`unknown re-baseline format ${JSON.stringify(wire?.f)}`);
  return wire.p as T;
}
