import type { Db, Document } from 'mongodb';

const PAGE = 500;

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
    const range: Document = { ...(bracket ?? {}), ...(last ? { $gt: last.id } : {}) };
    const page = await db
      .collection(collection)
      .find(Object.keys(range).length ? { _id: range } : {}, projection ? { projection } : {})
      .sort({ _id: 1 })
      .limit(PAGE)
      .toArray();
    if (!page.length) return;
    last = { id: page[page.length - 1]._id };
    yield page;
  }
}
