import { existsSync, readdirSync } from 'node:fs';
import { embeddedServerTempRoot } from '../../src/dev-servers/embedded-mongo-server';
import { secantusProcessesOf } from './process-probe';

/** How long the run may stay alive after its teardown before it counts as leaking (ms). */
const EXIT_GRACE_MS = 10_000;

/**
 * Fails the run when any server process or temp directory of this run
 * survived its suite: every suite must tear down what it started. Also arms
 * an unref'd watchdog: if something a test left open (a socket, a timer, a
 * child process) still keeps the process alive after the grace period, it
 * names what and exits non-zero, so a leak fails the run instead of hanging CI.
 */
export default function globalTeardown(): void {
  const leftProcesses = secantusProcessesOf(process.pid);
  const root = embeddedServerTempRoot();
  const leftDirs = existsSync(root)
    ? readdirSync(root).filter((d) => d.startsWith(`${process.pid}-`))
    : [];
  armExitWatchdog();
  if (leftProcesses.length || leftDirs.length) {
    throw new Error(
      `test servers left behind: processes ${JSON.stringify(leftProcesses)}, dirs ${JSON.stringify(leftDirs)}`,
    );
  }
}

function armExitWatchdog(): void {
  setTimeout(() => {
    const resources = process.getActiveResourcesInfo().filter((r) => r !== 'TTYWrap');
    const handles = (process as unknown as { _getActiveHandles(): unknown[] })
      ._getActiveHandles()
      .map(describeHandle)
      .filter((h) => h !== undefined);
    console.error(
      `[harness] the test process is still alive ${EXIT_GRACE_MS} ms after teardown; open resources: ${JSON.stringify(resources)}; handles: ${JSON.stringify(handles)}`,
    );
    process.exit(1);
  }, EXIT_GRACE_MS).unref();
}

function describeHandle(handle: unknown): string | undefined {
  const h = handle as {
    constructor?: { name?: string };
    remotePort?: number;
    localPort?: number;
    pid?: number;
    spawnargs?: string[];
    fd?: number;
  };
  const type = h.constructor?.name ?? typeof handle;
  if (type === 'WriteStream' || type === 'ReadStream') {
    if (h.fd !== undefined && h.fd <= 2) return undefined; // the process's own stdio
  }
  if (h.pid !== undefined) return `${type} pid ${h.pid} ${h.spawnargs?.slice(0, 4).join(' ')}`;
  if (h.remotePort !== undefined) return `${type} ${h.localPort} -> ${h.remotePort}`;
  return type;
}
