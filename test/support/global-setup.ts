import { sweepStaleServerDirs } from '../../src/dev-servers/embedded-mongo-server';

/** Removes server directories left by runs that were killed (SIGKILL cannot clean up). */
export default function globalSetup(): void {
  const removed = sweepStaleServerDirs();
  if (removed.length)
    console.log(`[harness] removed ${removed.length} stale server dir(s) of killed runs`);
}
