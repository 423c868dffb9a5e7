import { headers as natsHeaders, MsgHdrs } from '@nats-io/nats-core';
import { BSON, Document } from 'mongodb';
import { SYNC_STAMP_FIELD } from '../bidirectional-sync.constants';
import { isVersion, SyncVersion } from '../common/hybrid-logical-clock';
import { readStamp, SyncStamp } from '../common/sync-stamp';
import { FLEET_HEADERS } from './fleet.constants';
import { FleetMessageDecodeError } from './fleet.errors';
import { fleetMessageId } from './fleet-subjects';

/** Format of the payload; a relay or device refuses a format it does not know. */
export const FLEET_MESSAGE_FORMAT = 'fleet-change/1';

/**
 * One document state travelling through NATS: an Atlas change (changes stream) or a device
 * push (push stream). It carries the whole state and its stamp, as the engine applies it
 * today, never a delta, so applying it twice or late is harmless.
 */
export interface FleetChangeMessage {
  collection: string;
  /** The document's `_id`, any BSON type. */
  id: unknown;
  /** `upsert`: `document` is the full new state; `delete`: `stamp` is the tombstone's. */
  op: 'upsert' | 'delete';
  /** The state's `_sync` stamp (for an upsert, the same as `document._sync`). */
  stamp: SyncStamp;
  /** The full document with its `_sync` stamp (upserts only). */
  document?: Document;
  /**
   * Pushes only: the version the edit was made on (the outbox entry's `base`); `null` when
   * unknown. The relay's compare-and-set uses it to tell a fast-forward from a conflict.
   */
  base?: SyncVersion | null;
  /** Pushes only: when the host made the edit (ms since the epoch), if known. */
  writtenAt?: Date;
}

/** An encoded message, ready for `js.publish(subject, data, { msgID, headers })`. */
export interface EncodedFleetMessage {
  data: Uint8Array;
  msgId: string;
  headers: MsgHdrs;
}

interface WireMessage {
  /** A string: canonical Extended JSON would turn a number into an Int32 object. */
  f: string;
  c: string;
  i: unknown;
  op: 'upsert' | 'delete';
  s: SyncStamp;
  d?: Document;
  b?: SyncVersion | null;
  /** `writtenAt`, ms since the epoch. */
  w?: number;
}

/**
 * Encodes a message as canonical MongoDB Extended JSON, so Dates, ObjectIds, Decimal128,
 * Long, Binary and the rest come back with their BSON types; the message id is derived from
 * (collection, id, version).
 */
export function encodeFleetMessage(message: FleetChangeMessage): EncodedFleetMessage {
  assertConsistent(message, FleetMessageDecodeError);
  const wire: WireMessage = {
    f: FLEET_MESSAGE_FORMAT,
    c: message.collection,
    i: message.id,
    op: message.op,
    s: message.stamp,
  };
  if (message.op === 'upsert') wire.d = message.document;
  if (message.base !== undefined) wire.b = message.base;
  if (message.writtenAt) wire.w = message.writtenAt.getTime();
  const msgId = fleetMessageId(message.collection, message.id, message.stamp.v);
  const headers = natsHeaders();
  headers.set(FLEET_HEADERS.version, message.stamp.v);
  headers.set(FLEET_HEADERS.origin, message.stamp.o);
  return {
    data: Buffer.from(BSON.EJSON.stringify(wire, { relaxed: false }), 'utf8'),
    msgId,
    headers,
  };
}

/**
 * Decodes what `encodeFleetMessage()` wrote; anything else throws `FleetMessageDecodeError`.
 * The document comes back exactly as the MongoDB driver would return it from the same BSON
 * (default options), so writing it produces the BSON that was encoded (a double holding an
 * integer becomes an int32, as it does on every driver read and write today).
 */
export function decodeFleetMessage(data: Uint8Array): FleetChangeMessage {
  let wire: Partial<WireMessage>;
  try {
    // Canonical parsing keeps every BSON type (a Long beyond 2^53 stays exact); the BSON
    // round trip then hands out values as the MongoDB driver does with its defaults (int32
    // and double as numbers, small Longs as numbers), the shapes the engine reads today.
    const typed = BSON.EJSON.parse(Buffer.from(data).toString('utf8'), { relaxed: false });
    wire = BSON.deserialize(BSON.serialize(typed as Document)) as Partial<WireMessage>;
  } catch (err) {
    throw new FleetMessageDecodeError(`not Extended JSON: ${(err as Error).message}`, {
      cause: err,
    });
  }
  if (!wire || typeof wire !== 'object' || wire.f !== FLEET_MESSAGE_FORMAT)
    throw new FleetMessageDecodeError(`unknown message format ${JSON.stringify(wire?.f)}`);
  if (typeof wire.c !== 'string' || !wire.c) throw new FleetMessageDecodeError('no collection');
  if (wire.i === undefined) throw new FleetMessageDecodeError('no document id');
  if (wire.op !== 'upsert' && wire.op !== 'delete')
    throw new FleetMessageDecodeError(`unknown operation ${JSON.stringify(wire.op)}`);
  const stamp = readStamp({ [SYNC_STAMP_FIELD]: wire.s });
  if (!stamp) throw new FleetMessageDecodeError('no valid _sync stamp');
  const message: FleetChangeMessage = {
    collection: wire.c,
    id: wire.i,
    op: wire.op,
    stamp: wire.s as SyncStamp,
  };
  if (wire.op === 'upsert') message.document = wire.d;
  if (wire.b !== undefined) message.base = wire.b;
  if (typeof wire.w === 'number' && Number.isFinite(wire.w)) message.writtenAt = new Date(wire.w);
  assertConsistent(message, FleetMessageDecodeError);
  return message;
}

/** An upsert's document must be the state the stamp describes, with the message's id. */
function assertConsistent(
  message: FleetChangeMessage,
  ErrorType: new (message: string) => Error,
): void {
  if (!isVersion(message.stamp?.v) || typeof message.stamp.o !== 'string')
    throw new ErrorType(`${message.collection}: the stamp has no valid version and origin`);
  if (message.base !== undefined && message.base !== null && !isVersion(message.base))
    throw new ErrorType(
      `${message.collection}: base ${JSON.stringify(message.base)} is not a version`,
    );
  if (message.op === 'delete') {
    if (message.document !== undefined) throw new ErrorType('a delete carries no document');
    return;
  }
  const doc = message.document;
  if (!doc || typeof doc !== 'object') throw new ErrorType('an upsert carries the full document');
  if (
    BSON.EJSON.stringify({ i: doc._id }, { relaxed: false }) !==
    BSON.EJSON.stringify({ i: message.id }, { relaxed: false })
  )
    throw new ErrorType(`${message.collection}: the document's _id is not the message's id`);
  const docStamp = readStamp(doc);
  if (!docStamp || docStamp.v !== message.stamp.v || docStamp.o !== message.stamp.o)
    throw new ErrorType(
      `${message.collection}: the document's _sync stamp is not the message's stamp`,
    );
}
