import type { Document } from 'mongodb';
import type { DataEvent } from '../capture/local-change-capture.service';
import { contentDigest } from '../common/content-digest';
import { readStamp } from '../common/sync-stamp';

/**
 * No stamp (a host insert or replace), or content that is not what the
 * stamp describes (a host update). A stamp without a digest (issued before
 * digests existed) cannot tell, and counts as unmodified.
 */
export function writtenWithoutCapture(doc: Document): boolean {
  const stamp = readStamp(doc);
  if (!stamp) return true;
  return typeof stamp.h === 'string' && stamp.h !== contentDigest(doc);
}

/** A document as the change stream reports a host replace of it (what the capture takes). */
export function asReplaceEvent(db: string, collection: string, doc: Document): DataEvent {
  return {
    _id: { rescan: true },
    operationType: 'replace',
    ns: { db, coll: collection },
    documentKey: { _id: doc._id },
    fullDocument: doc,
  } as unknown as DataEvent;
}

/** A delete as the change stream reports a host delete (what the capture takes). */
export function asDeleteEvent(db: string, collection: string, id: unknown): DataEvent {
  return {
    _id: { gapCheck: true },
    operationType: 'delete',
    ns: { db, coll: collection },
    documentKey: { _id: id },
  } as unknown as DataEvent;
}
