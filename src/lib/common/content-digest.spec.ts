import { Decimal128, ObjectId } from 'mongodb';
import { contentDigest, matchesStampDigest } from './content-digest';

describe('contentDigest', () => {
  const id = new ObjectId();

  it('ignores field order at every level and the stamp', () => {
    const a = { _id: id, x: 1, nested: { p: 'a', q: [1, { r: 2, s: 3 }] } };
    const b = {
      nested: { q: [1, { s: 3, r: 2 }], p: 'a' },
      x: 1,
      _id: id,
      _sync: { v: '001700000000000-000000-dev', o: 'dev' },
    };
    expect(contentDigest(b)).toBe(contentDigest(a));
  });

  it.each<[string, object, object]>([
    ['a changed value', { _id: 1, x: 1 }, { _id: 1, x: 2 }],
    ['a number and its string', { _id: 1, x: 1 }, { _id: 1, x: '1' }],
    ['a date and its string', { _id: 1, x: new Date(0) }, { _id: 1, x: new Date(0).toISOString() }],
    ['an int and a decimal', { _id: 1, x: 1 }, { _id: 1, x: Decimal128.fromString('1') }],
    ['array order', { _id: 1, x: [1, 2] }, { _id: 1, x: [2, 1] }],
    ['a removed field', { _id: 1, x: 1, y: null }, { _id: 1, x: 1 }],
  ])('tells apart %s', (_name, a, b) => {
    expect(contentDigest(a)).not.toBe(contentDigest(b));
  });

  it('matchesStampDigest: true only for the content the stamp describes', () => {
    const doc = { _id: 1, x: 1 };
    const stamp = { v: '001700000000000-000000-dev', o: 'dev', h: contentDigest(doc) };
    expect(matchesStampDigest({ ...doc, _sync: stamp })).toBe(true);
    expect(matchesStampDigest({ ...doc, x: 2, _sync: stamp })).toBe(false);
    expect(matchesStampDigest({ ...doc, _sync: { v: stamp.v, o: 'dev' } })).toBe(false);
    expect(matchesStampDigest(doc)).toBe(false);
  });
});
