/**
 * The engine's demand on each server per synced change, from the driver
 * command counters a device process samples (`command-counters.ts`): commands
 * sent, documents written, documents read. It depends on the engine only, so
 * it is the figure to compare across servers (SecantusDB here, `mongod` for
 * users) and with the floor of engineering notes §7.
 */
import type { ProcSample, ServerSide } from './protocol';
import { median } from './stats';

export type SyncDirection = keyof ProcSample['synced'];

export const SIDES: ServerSide[] = ['local', 'atlas'];

export interface TargetDemand {
  commands: number;
  statements: number;
  written: number;
  returned: number;
}

/** One server's share, per synced change. */
export interface SideDemand {
  commands: number;
  failed: number;
  /** Write statements sent (an update of 500 documents by one filter is one statement). */
  statements: number;
  /** Documents the server reports written. */
  written: number;
  /** Documents returned (change events included). */
  returned: number;
  /** Server-side reads of the current document for update events (`updateLookup`), not in `returned`. */
  lookups: number;
  /** Commands per change by command name. */
  byCommand: Record<string, number>;
  /** Per change by `"<command> <target>"`, e.g. `delete _sync_outbox`. */
  byTarget: Record<string, TargetDemand>;
}

export interface Demand {
  /** The directions whose synced changes are counted. */
  directions: SyncDirection[];
  /** Changes the device synced in the window (its MonitorService count). */
  changes: number;
  seconds: number;
  local: SideDemand;
  atlas: SideDemand;
}

type Counted = Pick<ProcSample, 'at' | 'synced' | 'commands'>;

function emptySide(): SideDemand {
  return {
    commands: 0,
    failed: 0,
    statements: 0,
    written: 0,
    returned: 0,
    lookups: 0,
    byCommand: {},
    byTarget: {},
  };
}

/**
 * Demand between two samples of one device process (`before` undefined: from
 * the process's start), per change synced in `directions` over the same window.
 */
export function demandBetween(
  before: Counted | undefined,
  after: Counted,
  directions: SyncDirection[],
): Demand {
  const changes = directions.reduce(
    (sum, d) => sum + after.synced[d] - (before?.synced[d] ?? 0),
    0,
  );
  const per = (x: number) => (changes > 0 ? x / changes : NaN);
  const out: Demand = {
    directions,
    changes,
    seconds: before ? (after.at - before.at) / 1000 : NaN,
    local: emptySide(),
    atlas: emptySide(),
  };
  for (const [key, c] of Object.entries(after.commands)) {
    const b = before?.commands[key];
    const delta = {
      commands: c.count - (b?.count ?? 0),
      failed: c.failed - (b?.failed ?? 0),
      statements: c.statements - (b?.statements ?? 0),
      written: c.written - (b?.written ?? 0),
      returned: c.returned - (b?.returned ?? 0),
      lookups: c.lookups - (b?.lookups ?? 0),
    };
    if (!delta.commands && !delta.failed) continue;
    const side = out[c.side];
    side.commands += per(delta.commands);
    side.failed += per(delta.failed);
    side.statements += per(delta.statements);
    side.written += per(delta.written);
    side.returned += per(delta.returned);
    side.lookups += per(delta.lookups);
    side.byCommand[c.command] = (side.byCommand[c.command] ?? 0) + per(delta.commands);
    const target = `${c.command} ${c.target}`.trim();
    const t = (side.byTarget[target] ??= { commands: 0, statements: 0, written: 0, returned: 0 });
    t.commands += per(delta.commands);
    t.statements += per(delta.statements);
    t.written += per(delta.written);
    t.returned += per(delta.returned);
  }
  return out;
}

/** Per key, `make` builds the median entry from medians of the fields it asks for. */
function medianRecord<T>(
  records: Record<string, T>[],
  make: (get: (f: (x: T | undefined) => number) => number) => T,
): Record<string, T> {
  const keys = new Set(records.flatMap((r) => Object.keys(r)));
  return Object.fromEntries(
    [...keys].map((k) => [k, make((f) => median(records.map((r) => f(r[k]))))]),
  );
}

/** Field-by-field median over runs (a command missing from a run counts 0 there). */
export function medianDemand(list: (Demand | undefined)[]): Demand | undefined {
  const runs = list.filter((d): d is Demand => !!d && d.changes > 0);
  if (!runs.length) return undefined;
  const m = (f: (d: Demand) => number) => median(runs.map(f));
  const side = (s: ServerSide): SideDemand => ({
    commands: m((d) => d[s].commands),
    failed: m((d) => d[s].failed),
    statements: m((d) => d[s].statements),
    written: m((d) => d[s].written),
    returned: m((d) => d[s].returned),
    lookups: m((d) => d[s].lookups),
    byCommand: medianRecord(
      runs.map((d) => d[s].byCommand),
      (get) => get((x) => x ?? 0),
    ),
    byTarget: medianRecord(
      runs.map((d) => d[s].byTarget),
      (get) => ({
        commands: get((t) => t?.commands ?? 0),
        statements: get((t) => t?.statements ?? 0),
        written: get((t) => t?.written ?? 0),
        returned: get((t) => t?.returned ?? 0),
      }),
    ),
  });
  return {
    directions: runs[0].directions,
    changes: m((d) => d.changes),
    seconds: m((d) => d.seconds),
    local: side('local'),
    atlas: side('atlas'),
  };
}

/**
 * Engineering notes §7: one change event read on the source, one document
 * written on the destination, progress saved once per batch (on the local
 * server, where both resume tokens live); a batch costs one read, one write
 * and one progress save.
 */
export function floorDemand(direction: SyncDirection, batch: number): Demand {
  const source: ServerSide = direction === 'localToAtlas' ? 'local' : 'atlas';
  const destination: ServerSide = source === 'local' ? 'atlas' : 'local';
  const out: Demand = {
    directions: [direction],
    changes: NaN,
    seconds: NaN,
    local: emptySide(),
    atlas: emptySide(),
  };
  const add = (s: ServerSide, command: string, written: number, returned: number) => {
    out[s].commands += 1 / batch;
    out[s].statements += written ? 1 / batch : 0;
    out[s].byCommand[command] = (out[s].byCommand[command] ?? 0) + 1 / batch;
    out[s].written += written;
    out[s].returned += returned;
  };
  add(source, 'getMore', 0, 1);
  add(destination, 'destination write', 1, 0);
  add('local', 'progress save', 1 / batch, 0);
  return out;
}

/** Two decimals, two significant figures below 0.1 (batched commands per change are small). */
export function perChange(x: number): string {
  if (!Number.isFinite(x)) return '–';
  if (x === 0) return '0';
  if (x >= 100) return x.toFixed(0);
  if (x >= 0.1) return x.toFixed(2);
  return x.toPrecision(2);
}

/** Commands per change by name, most first: `insert 1.00, update 1.00, getMore 0.10`. */
export function topCommandNames(s: SideDemand, n = 5): string {
  const list = Object.entries(s.byCommand)
    .filter(([, v]) => v > 0)
    .sort((a, b) => b[1] - a[1]);
  const shown = list.slice(0, n).map(([k, v]) => `${k} ${perChange(v)}`);
  const rest = list.slice(n).reduce((a, [, v]) => a + v, 0);
  return [...shown, ...(rest > 0 ? [`other ${perChange(rest)}`] : [])].join(', ');
}

/** Documents written (or read) per change by command and target, most first: `insert _sync_outbox 1.00, …`. */
export function topTargets(s: SideDemand, field: 'written' | 'returned', n = 5): string {
  return Object.entries(s.byTarget)
    .filter(([, t]) => t[field] > 0)
    .sort((a, b) => b[1][field] - a[1][field])
    .slice(0, n)
    .map(([k, t]) => `${k} ${perChange(t[field])}`)
    .join(', ');
}

/** `2.10 cmds · 3.00 written · 1.10 read (+0.30 lookups)` */
export function sideCounts(s: SideDemand): string {
  return (
    `${perChange(s.commands)} cmds · ${perChange(s.written)} written · ${perChange(s.returned)} read` +
    (s.lookups > 0 ? ` (+${perChange(s.lookups)} lookups)` : '') +
    (s.failed > 0 ? ` · ${perChange(s.failed)} failed` : '')
  );
}

/** One console line per server. */
export function describeDemand(d: Demand): string[] {
  return SIDES.map(
    (s) => `${s.padEnd(5)}: ${sideCounts(d[s])} per change (${topCommandNames(d[s]) || 'none'})`,
  );
}

/** Server CPU ms per change. */
export function cpuMsPerChange(
  serverCpu: Record<string, { cpuSeconds: number }>,
  server: string,
  changes: number,
): number {
  return ((serverCpu[server]?.cpuSeconds ?? NaN) * 1000) / changes;
}
