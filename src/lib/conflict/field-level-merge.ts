import type { Document } from 'mongodb';
import { SYNC_STAMP_FIELD } from '../bidirectional-sync.constants';
import { compareVersions, maxVersion, SyncVersion } from '../common/hybrid-logical-clock';
import { contentDigest } from '../common/content-digest';
import type { SyncStamp } from '../common/sync-stamp';

export interface StampedState {
  doc: Document;
  stamp: SyncStamp;
}

/** The version of every top-level field (removed fields keep their removal version). */
export function fieldVersions(state: StampedState): Record<string, SyncVersion> {
  const versions: Record<string, SyncVersion> = { ...(state.stamp.f ?? {}) };
  for (const key of Object.keys(state.doc)) {
    if (key === '_id' || key === SYNC_STAMP_FIELD) continue;
    versions[key] ??= state.stamp.v;
  }
  return versions;
}

/**
 * Per-field last write wins: each top-level field takes the value of the side
 * that wrote it last, so concurrent edits of different fields both survive.
 * Commutative and idempotent, so every replica merging the same states in
 * any order ends with the same document (and stamp, digest included).
 */
export function mergeFieldLevel(a: StampedState, b: StampedState): StampedState {
  const fa = fieldVersions(a);
  const fb = fieldVersions(b);
  const doc: Document = { _id: a.doc._id ?? b.doc._id };
  const f: Record<string, SyncVersion> = {};
  for (const key of new Set([...Object.keys(fa), ...Object.keys(fb)])) {
    const fromB = compareVersions(fb[key], fa[key]) > 0;
    const source = fromB ? b.doc : a.doc;
    f[key] = (fromB ? fb[key] : fa[key])!;
    if (key in source) doc[key] = source[key];
  }
  const newer = compareVersions(b.stamp.v, a.stamp.v) > 0 ? b : a;
  const stamp = {
    v: maxVersion(a.stamp.v, b.stamp.v)!,
    o: newer.stamp.o,
    f,
    h: contentDigest(doc),
  };
  return { doc, stamp };
}
