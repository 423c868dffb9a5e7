import { readFileSync } from 'node:fs';
import type { CommandStats } from './protocol';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileSummary {
  file: string;
  wallMs: number;
  /** Sampled time not idle (JS, GC, native). */
  busyMs: number;
  /** Share of busy time per category, %. */
  categories: Record<string, number>;
  /** Functions with the most self time. */
  top: { fn: string; where: string; category: string; selfMs: number; percentOfBusy: number }[];
}

function category(fn: string, url: string): string {
  if (fn === '(idle)') return 'idle';
  if (fn === '(garbage collector)') return 'GC';
  if (fn === '(program)' || (!url && fn.startsWith('('))) return 'V8/native';
  if (/node_modules\/(mongodb|bson)\//.test(url)) return 'mongodb driver + bson';
  if (/node_modules\/mongoose\//.test(url)) return 'mongoose';
  if (/node_modules\/@nestjs\//.test(url)) return 'nest';
  if (url.includes('node_modules/')) return 'other dependencies';
  if (/\/src\//.test(url)) return 'sync engine (src/)';
  if (/\/(test\/support|bench)\//.test(url)) return 'device harness';
  if (url.startsWith('node:') || !url) return 'node internals';
  return 'other';
}

/**
 * Self time per function and category of a V8 .cpuprofile, counting only
 * samples taken from `fromUs` on (monotonic µs: skips process start-up).
 */
export function summarizeProfile(file: string, fromUs = 0, topN = 12): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  let at = profile.startTime;
  let firstUs = Infinity;
  profile.samples.forEach((id, i) => {
    const delta = profile.timeDeltas[i] ?? 0;
    at += delta;
    if (at < fromUs) return;
    firstUs = Math.min(firstUs, at);
    self.set(id, (self.get(id) ?? 0) + delta);
  });
  const byFn = new Map<string, { fn: string; where: string; category: string; us: number }>();
  const categories = new Map<string, number>();
  let busy = 0;
  for (const [id, us] of self) {
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
    const cat = category(functionName, url);
    categories.set(cat, (categories.get(cat) ?? 0) + us);
    if (cat === 'idle') continue;
    busy += us;
    const where = url
      ? `${url.replace(/^.*?(node_modules\/|bench-results\/\.build\/|\/work\/[^/]+\/)/, '')}:${lineNumber + 1}`
      : '';
    const key = `${functionName}@${where}`;
    const entry = byFn.get(key) ?? {
      fn: functionName || '(anonymous)',
      where,
      category: cat,
      us: 0,
    };
    entry.us += us;
    byFn.set(key, entry);
  }
  return {
    file,
    wallMs:
      (profile.endTime - Math.max(profile.startTime, Math.min(firstUs, profile.endTime))) / 1000,
    busyMs: busy / 1000,
    categories: Object.fromEntries(
      [...categories]
        .filter(([c]) => c !== 'idle')
        .sort((a, b) => b[1] - a[1])
        .map(([c, us]) => [c, (100 * us) / busy]),
    ),
    top: [...byFn.values()]
      .sort((a, b) => b.us - a.us)
      .slice(0, topN)
      .map((e) => ({
        fn: e.fn,
        where: e.where,
        category: e.category,
        selfMs: e.us / 1000,
        percentOfBusy: (100 * e.us) / busy,
      })),
  };
}

/** Commands by total time the process waited on them (the server's share of the work). */
export function topCommands(
  stats: CommandStats,
  n = 10,
): { command: string; count: number; totalMs: number; avgMs: number; maxMs: number }[] {
  return Object.entries(stats)
    .map(([command, s]) => ({
      command,
      count: s.count,
      totalMs: s.totalMs,
      avgMs: s.totalMs / s.count,
      maxMs: s.maxMs,
    }))
    .sort((a, b) => b.totalMs - a.totalMs)
    .slice(0, n);
}
