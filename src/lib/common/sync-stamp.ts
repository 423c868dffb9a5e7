import { SYNC_STAMP_FIELD } from '../bidirectional-sync.constants';
import { isVersion, SyncVersion } from './hybrid-logical-clock';

/**
 * The stamp every synced document carries in `_sync` (about 80 bytes; more
 * with the field-level strategy). It replicates with the data, so every
 * replica compares the same versions.
 */
export interface SyncStamp {
  /** Version of the document's current content (hybrid logical clock). */
  v: SyncVersion;
  /** Instance id of the device (or `atlas`) that wrote this content. */
  o: string;
  /** Field-level strategy only: version of each top-level field. */
  f?: Record<string, SyncVersion>;
  /** Digest of the content this stamp describes (`contentDigest`); a write made without the engine leaves it behind. */
  h?: string;
}

export type SyncedDocument = Record<string, unknown> & {
  _id: unknown;
  [SYNC_STAMP_FIELD]?: SyncStamp;
};

export function readStamp(doc: Record<string, unknown> | null | undefined): SyncStamp | undefined {
  const stamp = doc?.[SYNC_STAMP_FIELD] as SyncStamp | undefined;
  return stamp && typeof stamp === 'object' && isVersion(stamp.v) && typeof stamp.o === 'string'
    ? stamp
    : undefined;
}

/** The document without its stamp (what the host's application sees as data). */
export function withoutStamp<T extends Record<string, unknown>>(doc: T): Omit<T, '_sync'> {
  const { [SYNC_STAMP_FIELD]: _stamp, ...rest } = doc;
  return rest;
}

/** True when a change touched the stamp: only the sync engine writes `_sync`. */
export function touchesStamp(fields: Iterable<string>): boolean {
  for (const f of fields)
    if (f === SYNC_STAMP_FIELD || f.startsWith(`${SYNC_STAMP_FIELD}.`)) return true;
  return false;
}

/** Top-level field names of a set of (possibly dotted) paths. */
export function topLevelFields(paths: Iterable<string>): string[] {
  return [...new Set([...paths].map((p) => p.split('.')[0]))].filter((f) => f !== SYNC_STAMP_FIELD);
}

/**
 * Where an outbox entry or tombstone points. Its `_id` is a string made of
 * the collection and the document id, so every lookup is a plain `_id`
 * index hit on any server (an embedded-document `_id` is not, on some);
 * `c` and `i` keep the collection and the id itself, with its BSON type.
 */
export interface DocumentRef {
  _id: string;
  c: string;
  i: unknown;
}

export function documentRef(collection: string, id: unknown): DocumentRef {
  return { _id: documentKeyOf(collection, id), c: collection, i: id };
}

/** The `_id` of a document's outbox entry and tombstone. */
export function documentKeyOf(collection: string, id: unknown): string {
  return `${collection}\u0000${idKey(id)}`;
}

/** A stable string key for a document id of any BSON type. */
export function idKey(id: unknown): string {
  return JSON.stringify(toComparable(id));
}

function toComparable(value: unknown): unknown {
  if (value && typeof value === 'object') {
    const v = value as { _bsontype?: string; toHexString?: () => string; toString: () => string };
    if (v._bsontype) return { $t: v._bsontype, v: v.toHexString ? v.toHexString() : v.toString() };
    if (value instanceof Date) return { $d: value.getTime() };
    if (Array.isArray(value)) return value.map(toComparable);
    return Object.fromEntries(Object.entries(value).map(([k, x]) => [k, toComparable(x)]));
  }
  return value;
}
