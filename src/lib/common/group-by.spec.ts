import { groupBy } from './group-by';

describe('groupBy', () => {
  it('groups by key in order of first appearance, keeping each group in input order', () => {
    const items = ['a1', 'b1', 'a2', 'c1', 'b2', 'a3'];
    const groups = groupBy(items, (s) => s[0]);
    expect([...groups.keys()]).toEqual(['a', 'b', 'c']);
    expect(groups.get('a')).toEqual(['a1', 'a2', 'a3']);
    expect(groups.get('b')).toEqual(['b1', 'b2']);
  });

  it('takes time linear in the batch size (a batch of one collection must not be copied per item)', () => {
    const items = Array.from({ length: 200_000 }, (_, i) => ({ c: 'one', i }));
    const started = performance.now();
    const groups = groupBy(items, (x) => x.c);
    // Copying the group per item would be ~2·10^10 element copies here: minutes, not milliseconds.
    expect(performance.now() - started).toBeLessThan(2000);
    expect(groups.get('one')).toHaveLength(200_000);
    expect(groups.get('one')![199_999].i).toBe(199_999);
  });
});
