import type { Collection, Document } from 'mongodb';
import { idKey } from './sync-stamp';

/** The documents of `ids` in one query, keyed by `idKey`. */
export async function findByIds(
  collection: Collection<Document>,
  ids: unknown[],
  projection?: Document,
): Promise<Map<string, Document>> {
  if (!ids.length) return new Map();
  const docs = await collection
    .find({ _id: { $in: ids } } as Document, projection ? { projection } : {})
    .toArray();
  return new Map(docs.map((d) => [idKey(d._id), d]));
}
