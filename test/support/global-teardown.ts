import { existsSync, readdirSync } from 'node:fs';
import { embeddedServerTempRoot } from '../../src/embedded-server/embedded-mongo-server';
import { secantusProcessesOf } from './process-probe';

/**
 * Fails the run when any server process or temp directory of this run
 * survived its suite: every suite must tear down what it started.
 */
export default function globalTeardown(): void {
  const leftProcesses = secantusProcessesOf(process.pid);
  const root = embeddedServerTempRoot();
  const leftDirs = existsSync(root)
    ? readdirSync(root).filter((d) => d.startsWith(`${process.pid}-`))
    : [];
  if (leftProcesses.length || leftDirs.length) {
    throw new Error(
      `test servers left behind: processes ${JSON.stringify(leftProcesses)}, dirs ${JSON.stringify(leftDirs)}`,
    );
  }
}
