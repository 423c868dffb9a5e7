'use strict';
/**
 * Builds the service (`nest build`) when dist/main.js is missing or older
 * than the sources, so `npm start` works on a fresh clone and after edits.
 */
const { existsSync, readdirSync, statSync } = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const ROOT = path.resolve(__dirname, '..');
const ENTRY = path.join(ROOT, 'dist', 'main.js');
const INPUTS = ['src', 'tsconfig.json', 'tsconfig.build.json', 'nest-cli.json'];

/** Newest modification time of a file, or of a directory and everything under it. */
function newestMtime(target) {
  if (!existsSync(target)) return 0;
  const stat = statSync(target);
  if (!stat.isDirectory()) return stat.mtimeMs;
  let newest = stat.mtimeMs;
  for (const entry of readdirSync(target)) {
    newest = Math.max(newest, newestMtime(path.join(target, entry)));
  }
  return newest;
}

function nestCli() {
  try {
    return require.resolve('@nestjs/cli/bin/nest.js', { paths: [ROOT] });
  } catch {
    return undefined;
  }
}

function main() {
  const built = existsSync(ENTRY) ? statSync(ENTRY).mtimeMs : 0;
  const sources = Math.max(...INPUTS.map((p) => newestMtime(path.join(ROOT, p))));
  if (built && built >= sources) return;
  const cli = nestCli();
  if (!cli) {
    if (built) {
      console.warn(
        '[ensure-build] sources are newer than dist/, but @nestjs/cli is not installed: using the existing build',
      );
      return;
    }
    console.error(
      '[ensure-build] dist/main.js is missing and @nestjs/cli is not installed: run "npm install" then "npm run build"',
    );
    process.exit(1);
  }
  console.log(
    built
      ? '[ensure-build] sources changed since the last build: building...'
      : '[ensure-build] no build yet: building...',
  );
  const result = spawnSync(process.execPath, [cli, 'build'], { cwd: ROOT, stdio: 'inherit' });
  if (result.status !== 0 || !existsSync(ENTRY)) {
    console.error('[ensure-build] build failed');
    process.exit(result.status || 1);
  }
}

main();
