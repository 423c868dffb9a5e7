import type { Db, Document } from 'mongodb';

/** Documents per page (a re-baseline page served over NATS may hold fewer: see the relay). */
export const PAGE_SIZE = 500;

/** One page of one `_id` type bracket of a collection in `_id` order, after `after.id` if given. */
export function readPageById(
  db: Db,
  collection: string,
  bracket: Document | undefined,
  after?: { id: unknown },
  projection?: Document,
  limit = PAGE_SIZE,
): Promise<Document[]> {
  const range: Document = { ...(bracket ?? {}), ...(after ? { $gt: after.id } : {}) };
  return db
    .collection(collection)
    .find(Object.keys(range).length ? { _id: range } : {}, projection ? { projection } : {})
    .sort({ _id: 1 })
    .limit(limit)
    .toArray();
}

/** One `_id` type bracket of a collection in `_id` order, a page at a time, starting after `afterId`. */
export async function* pagesById(
  db: Db,
  collection: string,
  bracket: Document | undefined,
  after?: { id: unknown },
  projection?: Document,
): AsyncGenerator<Document[]> {
  let last = after;
  for (;;) {
    const page = await readPageById(db, collection, bracket, last, projection);
    if (!page.length) return;
    last = { id: page[page.length - 1]._id };
    yield page;
  }
}
