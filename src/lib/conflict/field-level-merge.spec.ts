import { formatVersion } from '../common/hybrid-logical-clock';
import { mergeFieldLevel } from './field-level-merge';

const v = (ms: number, node = 'a') => formatVersion(ms, 0, node);

describe('mergeFieldLevel', () => {
  const base = { _id: 1, name: 'Tea', price: 1, note: 'x' };
  const a = {
    doc: { ...base, price: 2 },
    stamp: { v: v(20, 'a'), o: 'a', f: { name: v(10), price: v(20, 'a'), note: v(10) } },
  };
  const b = {
    doc: { _id: 1, name: 'Green tea', price: 1 },
    stamp: { v: v(30, 'b'), o: 'b', f: { name: v(30, 'b'), price: v(10), note: v(30, 'b') } },
  };

  it('keeps each field from its latest writer, including removals', () => {
    const merged = mergeFieldLevel(a, b);
    expect(merged.doc).toEqual({ _id: 1, name: 'Green tea', price: 2 });
    expect(merged.stamp.v).toBe(v(30, 'b'));
    expect(merged.stamp.f).toEqual({ name: v(30, 'b'), price: v(20, 'a'), note: v(30, 'b') });
  });

  it('is commutative and idempotent', () => {
    expect(mergeFieldLevel(a, b)).toEqual(mergeFieldLevel(b, a));
    const once = mergeFieldLevel(a, b);
    expect(mergeFieldLevel(once, b)).toEqual(once);
  });
});
