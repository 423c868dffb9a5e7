import { redactMessage } from './sync.errors';

/**
 * Copy of `value` with credentials removed from every connection string in
 * every string it holds (plain objects and arrays are walked, errors are
 * copied with redacted message and stack, other class instances are kept).
 * Used on API responses, health details and log lines.
 */
export function redactDeep<T>(value: T, depth = 8): T {
  return walk(value, depth) as T;
}

function walk(value: unknown, depth: number): unknown {
  if (typeof value === 'string') return redactMessage(value);
  if (value === null || typeof value !== 'object' || depth <= 0) return value;
  if (value instanceof Error) {
    const copy = new Error(redactMessage(value.message));
    copy.name = value.name;
    copy.stack = value.stack === undefined ? undefined : redactMessage(value.stack);
    return copy;
  }
  if (Array.isArray(value)) return value.map((v) => walk(v, depth - 1));
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return value;
  return Object.fromEntries(
    Object.entries(value as Record<string, unknown>).map(([k, v]) => [k, walk(v, depth - 1)]),
  );
}
