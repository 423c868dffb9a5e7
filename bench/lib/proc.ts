import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

let ticks: number | undefined;
function clockTicks(): number {
  if (ticks === undefined) {
    try {
      ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticks = 100;
    }
  }
  return ticks;
}

/** User + system CPU seconds a process has used (Linux /proc), or undefined. */
export function procCpuSeconds(pid: number | undefined): number | undefined {
  if (!pid) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is field 3 (state): utime is field 14, stime field 15.
    return (Number(fields[11]) + Number(fields[12])) / clockTicks();
  } catch {
    return undefined;
  }
}

/** Resident set size in bytes (Linux /proc), or undefined. */
export function procRssBytes(pid: number | undefined): number | undefined {
  if (!pid) return undefined;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

export interface CpuShare {
  /** CPU seconds used during the window. */
  cpuSeconds: number;
  /** Average share of one core during the window (100 = one full core). */
  cpuPercent: number;
}

/** Measures CPU use of named processes over a window. */
export class CpuMeter {
  private start = 0;
  private readonly base = new Map<string, number>();

  constructor(private readonly pids: Record<string, number | undefined>) {}

  begin(): this {
    this.start = performance.now();
    for (const [name, pid] of Object.entries(this.pids)) {
      const cpu = procCpuSeconds(pid);
      if (cpu !== undefined) this.base.set(name, cpu);
    }
    return this;
  }

  end(): Record<string, CpuShare> {
    const seconds = (performance.now() - this.start) / 1000;
    const out: Record<string, CpuShare> = {};
    for (const [name, pid] of Object.entries(this.pids)) {
      const before = this.base.get(name);
      const now = procCpuSeconds(pid);
      if (before === undefined || now === undefined) continue;
      const used = now - before;
      out[name] = { cpuSeconds: used, cpuPercent: seconds > 0 ? (100 * used) / seconds : 0 };
    }
    return out;
  }
}

/** The 1-minute load average (other work on a shared machine shows up here). */
export function loadAverage(): number {
  try {
    return Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
  } catch {
    return NaN;
  }
}
