import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';

/**
 * Values to put into a nats-server configuration, keyed by their dotted path: `port`,
 * `host`, `jetstream.store_dir`, `cluster.port`, `cluster.routes` (an array), ...
 */
export type NatsConfigValues = Record<string, string | number | string[]>;

/**
 * Renders a nats-server configuration file with some values replaced, so tests and dev
 * servers run the documented file itself with only ports and paths changed (not a second,
 * hand-written copy). Every replaced key must be present in the file (written as
 * `key: value` on one line, or `key: [` ... `]` for arrays, inside `name {` ... `}` blocks),
 * so a renamed key fails loudly instead of leaving the documented value in force.
 * `include`s are inlined (nats-server resolves them next to the including file, and the
 * rendered file lives elsewhere), so values in included files can be replaced too.
 */
export function renderNatsConfig(file: string, values: NatsConfigValues): string {
  const pending = new Set(Object.keys(values));
  const out: string[] = [];
  renderInto(out, resolve(file), values, pending, []);
  if (pending.size)
    throw new Error(`${file} has no ${[...pending].join(', ')} to replace (renderNatsConfig)`);
  return out.join('\n');
}

function renderInto(
  out: string[],
  file: string,
  values: NatsConfigValues,
  pending: Set<string>,
  path: string[],
): void {
  const baseDir = dirname(file);
  let skippingArray = false;
  out.push(`# --- rendered from ${file}`);
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (skippingArray) {
      if (/^\s*\]/.test(line)) skippingArray = false;
      continue;
    }
    const include = /^(\s*)include\s+(['"]?)([^'"\s]+)\2\s*$/.exec(line);
    if (include) {
      const target = isAbsolute(include[3]) ? include[3] : resolve(baseDir, include[3]);
      renderInto(out, target, values, pending, path);
      continue;
    }
    const open = /^\s*([A-Za-z_][\w]*)\s*:?\s*\{\s*(#.*)?$/.exec(line);
    if (open) {
      path.push(open[1]);
      out.push(line);
      continue;
    }
    if (/^\s*\}\s*$/.test(line)) {
      path.pop();
      out.push(line);
      continue;
    }
    const entry = /^(\s*)([A-Za-z_][\w]*)\s*[:=]\s*(.*)$/.exec(line);
    const key = entry ? [...path, entry[2]].join('.') : undefined;
    if (entry && key !== undefined && key in values) {
      const value = values[key];
      pending.delete(key);
      if (entry[3].trim() === '[') skippingArray = true;
      out.push(`${entry[1]}${entry[2]}: ${formatValue(value)}`);
      continue;
    }
    out.push(line);
  }
}

function formatValue(value: string | number | string[]): string {
  if (Array.isArray(value)) return `[${value.map((v) => JSON.stringify(v)).join(', ')}]`;
  return typeof value === 'number' ? String(value) : JSON.stringify(value);
}

/**
 * A value for an environment variable a nats-server configuration reads as `$NAME`.
 * nats-server parses such a value as configuration text, so `12345` would become a number
 * and `2021-...` a date (and fail); quoted, it is always the string itself.
 */
export function natsConfigString(value: string): string {
  return JSON.stringify(value);
}
