import { readdirSync, readFileSync } from 'node:fs';

/** Pids of SecantusDB processes whose bootstrap names `ownerPid` as their owner (Linux /proc). */
export function secantusProcessesOf(ownerPid?: number): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let cmdline: string[];
    try {
      cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    const i = cmdline.indexOf('--storage-path');
    if (i < 0 || !cmdline.some((a) => a.includes("run_module('secantus'"))) continue;
    const owner = Number(
      cmdline[cmdline.findIndex((a) => a.includes("run_module('secantus'")) + 1],
    );
    if (ownerPid === undefined || owner === ownerPid) pids.push(Number(entry));
  }
  return pids;
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
