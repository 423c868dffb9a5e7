#!/usr/bin/env node
/**
 * Makes a headless Chromium available for the dashboard's browser test
 * (test/dashboard). Idempotent and fast when one is there already:
 *
 * - `SYNC_TEST_CHROMIUM` names an executable: it is used as it is;
 * - `chromium` (or `chromium-browser`) on PATH: nothing to do;
 * - otherwise, as root on Debian/Ubuntu: `apt-get install chromium` (Debian's
 *   package; nothing is downloaded from anywhere but the apt repositories);
 * - otherwise it stops with a message saying how to install one.
 *
 * `SYNC_SKIP_BROWSER_INSTALL=1` skips this step (the browser test then fails
 * with the same message if no browser is found).
 */
'use strict';
const { spawnSync } = require('node:child_process');
const { findChromium } = require('./browser-paths');

function fail(message) {
  console.error(`[browser] ${message}`);
  process.exit(1);
}

function run(cmd, args) {
  const res = spawnSync(cmd, args, {
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  if (res.error) fail(`could not run ${cmd}: ${res.error.message}`);
  return res.status === 0;
}

function main() {
  if (process.env.SYNC_SKIP_BROWSER_INSTALL === '1') return;
  if (findChromium()) return;
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const hasApt = spawnSync('apt-get', ['--version'], { stdio: 'ignore' }).status === 0;
  if (!isRoot || !hasApt) {
    fail(
      'the dashboard test needs Chromium: install it (Debian/Ubuntu: sudo apt-get install chromium) ' +
        'or set SYNC_TEST_CHROMIUM=/path/to/chromium',
    );
  }
  console.log("[browser] installing Debian's chromium package with apt-get (once)");
  const install = ['install', '-y', '-qq', '--no-install-recommends', 'chromium'];
  // A fresh machine has no package lists yet: update and try again.
  if (!run('apt-get', install)) {
    if (!run('apt-get', ['update', '-qq']) || !run('apt-get', install))
      fail('apt-get install chromium failed (see above)');
  }
  const found = findChromium();
  if (!found) fail('chromium was installed but is not on PATH');
  console.log(`[browser] ready: ${found}`);
}

main();
