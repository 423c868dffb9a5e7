import { createHash } from 'node:crypto';
import { BSON, type Document } from 'mongodb';
import { SYNC_STAMP_FIELD } from '../bidirectional-sync.constants';

/**
 * A digest of a document's content (everything but `_sync`), the same on
 * every replica whatever the field order: keys are sorted at every level and
 * values keep their BSON type (canonical Extended JSON), so `1`, `1.0` as a
 * double and `"1"` differ, and so do a Date and its string. The stamp keeps
 * the digest of the content it describes (`_sync.h`): a write made without
 * the engine changes the content but not the stamp, and shows as a mismatch.
 */
export function contentDigest(doc: Document): string {
  const { [SYNC_STAMP_FIELD]: _stamp, ...content } = doc;
  const canonical = JSON.stringify(sortKeys(BSON.EJSON.serialize(content, { relaxed: false })));
  return createHash('sha1').update(canonical).digest('base64url').slice(0, 16);
}

/** Whether the document's content is still the one its stamp describes (false without a digest). */
export function matchesStampDigest(doc: Document): boolean {
  const stamp = doc[SYNC_STAMP_FIELD] as { h?: unknown } | undefined;
  return typeof stamp?.h === 'string' && stamp.h === contentDigest(doc);
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value && typeof value === 'object') {
    const object = value as Record<string, unknown>;
    return Object.fromEntries(
      Object.keys(object)
        .sort()
        .map((k) => [k, sortKeys(object[k])]),
    );
  }
  return value;
}
