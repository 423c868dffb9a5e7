import { createHash } from 'node:crypto';
import { BSON, type Document } from 'mongodb';

const { EJSON } = BSON;

/**
 * How the verifier compares documents: the whole document (the `_sync` stamp
 * and Mongoose's `__v` included, unless told to ignore fields), as canonical
 * Extended JSON with object keys sorted (field order is not a difference) and
 * numbers as the driver reads them (an int32 `1` equals a double `1.0`, as in
 * a MongoDB query; a Decimal128 differs from both).
 */
export const COMPARISON_RULES =
  'whole documents incl. _sync and __v; field order ignored; numbers compared by value';

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object' || '_bsontype' in value) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** The value with every embedded document's keys sorted (arrays keep their order). */
export function canonicalize(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(canonicalize);
  if (isPlainObject(value)) {
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value).sort()) out[key] = canonicalize(value[key]);
    return out;
  }
  return value;
}

/** Canonical Extended JSON text of a value (key order independent). */
export function canonicalText(value: unknown): string {
  return EJSON.stringify(canonicalize(value) as Document, { relaxed: false });
}

/** The document without the ignored top-level fields. */
export function withoutFields(doc: Document, ignore: readonly string[]): Document {
  if (!ignore.length) return doc;
  const copy = { ...doc };
  for (const field of ignore) delete copy[field];
  return copy;
}

/** Short content hash of a document (SHA-256 of its canonical text, 128 bits). */
export function documentHash(doc: Document, ignore: readonly string[] = []): string {
  return createHash('sha256')
    .update(canonicalText(withoutFields(doc, ignore)))
    .digest('base64url')
    .slice(0, 22);
}

/** A stable string key for an `_id` of any BSON type (canonical Extended JSON). */
export function idKeyOf(id: unknown): string {
  return EJSON.stringify({ i: id } as Document, { relaxed: false });
}

/** An `_id` as a user reads it (relaxed Extended JSON: `{"$oid":"…"}`, `"abc"`, `42`). */
export function formatId(id: unknown): string {
  const text = EJSON.stringify({ i: id } as Document, { relaxed: true });
  return text.slice(5, -1);
}

/** Top-level fields whose values differ between two documents. */
export function differingFields(
  a: Document,
  b: Document,
  ignore: readonly string[] = [],
): string[] {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  const fields: string[] = [];
  for (const key of [...keys].sort()) {
    if (ignore.includes(key)) continue;
    if (!(key in a) || !(key in b) || canonicalText({ v: a[key] }) !== canonicalText({ v: b[key] }))
      fields.push(key);
  }
  return fields;
}
