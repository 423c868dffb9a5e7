import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './cli-runner';

/**
 * The command line `npm start` runs the service with (its last `&&` step,
 * `node <flags> dist/main.js`), as argv for `process.execPath`. Suites and the
 * benchmark that run "the service as users run it" take it from here, so the
 * Node flags it ships with (the heap budget) have one source: package.json.
 */
export function serviceArgv(): string[] {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
    scripts?: Record<string, string>;
  };
  const start = pkg.scripts?.start ?? '';
  const last = start.split('&&').pop()!.trim().split(/\s+/);
  if (last[0] !== 'node' || last[last.length - 1] !== 'dist/main.js')
    throw new Error(`package.json "start" must end in "node [flags] dist/main.js", got: ${start}`);
  return [...last.slice(1, -1), join(ROOT, 'dist', 'main.js')];
}

/** The Node flags of `npm start` (between `node` and the entry). */
export function serviceNodeFlags(): string[] {
  return serviceArgv().slice(0, -1);
}

/** Builds the service as `npm start` does (only when dist/ is older than the sources). */
export function ensureServiceBuilt(): void {
  const build = spawnSync(process.execPath, ['scripts/ensure-build.js'], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 180_000,
  });
  if (build.status !== 0) throw new Error(`build failed: ${build.stdout}\n${build.stderr}`);
}
