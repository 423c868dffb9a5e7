/**
 * Named points on the write paths where a test can kill the process, to
 * prove that a crash between any two steps loses nothing. Off unless the
 * environment names a point: `SYNC_FAULT_POINT=<name>` kills the process
 * (SIGKILL, as `kill -9` would) the first time it passes there. A testing
 * aid, like the server's failpoints; never set it in production.
 */
export type FaultPointName =
  'capture:before-push' | 'push:before-atlas' | 'push:after-atlas' | 'capture:after-stamps';

export const FAULT_POINT_NAMES: readonly FaultPointName[] = [
  'capture:before-push',
  'push:before-atlas',
  'push:after-atlas',
  'capture:after-stamps',
];

const armed = process.env.SYNC_FAULT_POINT;

export async function faultPoint(name: FaultPointName): Promise<void> {
  if (armed !== name) return;
  process.kill(process.pid, 'SIGKILL');
  // SIGKILL ends the process before this promise settles.
  await new Promise(() => undefined);
}
