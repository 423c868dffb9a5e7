import type { Db, Document } from 'mongodb';

/**
 * The sort bracket of an `_id` (MongoDB compares values of different types by
 * type order and range queries only match within one bracket).
 */
export function idBracket(id: unknown): string {
  if (id === null || id === undefined) return 'null';
  if (typeof id === 'number' || typeof id === 'bigint') return 'number';
  if (typeof id === 'string') return 'string';
  if (typeof id === 'boolean') return 'bool';
  if (id instanceof Date) return 'date';
  if (id instanceof RegExp) return 'regex';
  const bsontype = (id as { _bsontype?: string })._bsontype;
  if (bsontype) {
    if (['Int32', 'Double', 'Long', 'Decimal128'].includes(bsontype)) return 'number';
    if (bsontype === 'BSONSymbol') return 'string';
    if (bsontype === 'Binary' || bsontype === 'UUID') return 'binData';
    if (bsontype === 'BSONRegExp') return 'regex';
    return bsontype;
  }
  return Array.isArray(id) ? 'array' : 'object';
}

/** `$type` aliases grouped by sort bracket (for the `$type` filter of one bracket). */
export const TYPE_BRACKETS: Record<string, string> = {
  double: 'number',
  int: 'number',
  long: 'number',
  decimal: 'number',
  string: 'string',
  symbol: 'string',
};

/**
 * The `_id` type brackets of a collection on some databases, each as a
 * `$type` filter for `_id`, to walk one at a time. One bracket (the usual
 * case, seen from the smallest and largest `_id` of each side): no filter.
 */
export async function idTypeBrackets(
  dbs: Db[],
  collection: string,
): Promise<(Document | undefined)[]> {
  const ends = await Promise.all(
    dbs.flatMap((db) =>
      [1, -1].map((dir) =>
        db
          .collection(collection)
          .find({}, { projection: { _id: 1 }, sort: { _id: dir as 1 | -1 }, limit: 1 })
          .next(),
      ),
    ),
  );
  const seen = new Set(ends.filter((d) => d !== null).map((d) => idBracket(d!._id)));
  if (seen.size <= 1) return [undefined];
  const groups = new Map<string, string[]>();
  for (const db of dbs) {
    const types = await db
      .collection(collection)
      .aggregate<{ _id: string }>([{ $group: { _id: { $type: '$_id' } } }])
      .toArray();
    for (const { _id: type } of types) {
      const bracket = TYPE_BRACKETS[type] ?? type;
      const list = groups.get(bracket) ?? [];
      if (!list.includes(type)) list.push(type);
      groups.set(bracket, list);
    }
  }
  // Sorted, so a walk cut short finds its bracket again in the same order.
  return [...groups.values()]
    .map((types) => ({ $type: types.sort() }))
    .sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
}
