import { Decimal128, Long, ObjectId } from 'mongodb';
import { changedFields, fieldHashes } from './dirty-marker.repository';

describe('dirty marker bases', () => {
  const doc = { _id: new ObjectId(), name: 'Latte', price: 3, tags: ['hot'], nested: { a: 1 } };

  it('hashes top-level fields, without _id and _sync', () => {
    const hashes = fieldHashes({ ...doc, _sync: { v: 'x', o: 'y' } })!;
    expect(hashes.map((h) => h.f)).toEqual(['name', 'price', 'tags', 'nested']);
    expect(fieldHashes(null)).toBeNull();
  });

  it('sees no change when only the stamp changed', () => {
    const base = fieldHashes(doc);
    expect(changedFields(base, fieldHashes({ ...doc, _sync: { v: 'z', o: 'q' } }))).toBe('none');
  });

  it('names changed, added and removed fields', () => {
    const base = fieldHashes(doc);
    const { tags: _tags, ...rest } = doc;
    const now = fieldHashes({ ...rest, price: 4, size: 'L', nested: { a: 2 } });
    expect(changedFields(base, now)).toEqual(['price', 'nested', 'size', 'tags']);
  });

  it('tells BSON types apart (an int is not a long, a double not a decimal)', () => {
    expect(changedFields(fieldHashes({ n: 1 }), fieldHashes({ n: Long.fromNumber(1) }))).toEqual([
      'n',
    ]);
    expect(
      changedFields(fieldHashes({ n: 1.5 }), fieldHashes({ n: Decimal128.fromString('1.5') })),
    ).toEqual(['n']);
  });

  it('treats a created, deleted or unknown document as a whole change', () => {
    expect(changedFields(null, fieldHashes(doc))).toBe('all');
    expect(changedFields(fieldHashes(doc), null)).toBe('all');
    expect(changedFields(undefined, fieldHashes(doc))).toBe('all');
    expect(changedFields(undefined, null)).toBe('all');
    expect(changedFields(null, null)).toBe('none');
  });
});
