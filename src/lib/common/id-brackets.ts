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

/** What `idTypeBrackets()` needs to know of one side's `_id`s (a database, or the fleet relay). */
export interface IdTypeSide {
  /** The sort brackets of the smallest and the largest `_id` (none: the collection is empty). */
  endBrackets(collection: string): Promise<string[]>;
  /** The `$type` name of every `_id` type present. */
  idTypes(collection: string): Promise<string[]>;
}

/** A database as an `IdTypeSide`. */
export function dbIdTypes(db: Db): IdTypeSide {
  return {
    async endBrackets(collection) {
      const ends = await Promise.all(
        [1, -1].map((dir) =>
          db
            .collection(collection)
            .find({}, { projection: { _id: 1 }, sort: { _id: dir as 1 | -1 }, limit: 1 })
            .next(),
        ),
      );
      return ends.filter((d) => d !== null).map((d) => idBracket(d!._id));
    },
    async idTypes(collection) {
      const types = await db
        .collection(collection)
        .aggregate<{ _id: string }>([{ $group: { _id: { $type: '$_id' } } }])
        .toArray();
      return types.map((t) => t._id);
    },
  };
}

/**
 * The `_id` type brackets of a collection on some databases, each as a
 * `$type` filter for `_id`, to walk one at a time. One bracket (the usual
 * case, seen from the smallest and largest `_id` of each side): no filter.
 */
export async function idTypeBrackets(
  sides: (Db | IdTypeSide)[],
  collection: string,
): Promise<(Document | undefined)[]> {
  const asSides = sides.map((s) => ('endBrackets' in s ? s : dbIdTypes(s)));
  const ends = await Promise.all(asSides.map((side) => side.endBrackets(collection)));
  const seen = new Set(ends.flat());
  if (seen.size <= 1) return [undefined];
  const groups = new Map<string, string[]>();
  for (const side of asSides) {
    for (const type of await side.idTypes(collection)) {
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
