/**
 * Items grouped by key, in order of first appearance; each group keeps the
 * items' order. Linear: batches of hundreds of changes are grouped per
 * collection on every capture, push and apply.
 */
export function groupBy<T>(items: Iterable<T>, key: (item: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const k = key(item);
    const list = groups.get(k);
    if (list) list.push(item);
    else groups.set(k, [item]);
  }
  return groups;
}
