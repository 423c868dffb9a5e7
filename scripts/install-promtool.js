#!/usr/bin/env node
/**
 * Makes Prometheus's `promtool` available to check docs/prometheus-alerts.yml
 * (`promtool check rules`, in test/dashboard). Idempotent and fast when it is
 * there already:
 *
 * - `promtool` on PATH, or `.tools/bin/promtool` from an earlier run: nothing to do;
 * - otherwise, on Debian/Ubuntu: `apt-get download prometheus` (Debian's
 *   package, from the apt repositories only) and extract just `promtool` into
 *   `.tools/bin/` (the Prometheus server is neither installed nor started);
 * - otherwise it says so and exits 0: the rule check is then skipped, with
 *   the reason in the test's title.
 *
 * `SYNC_SKIP_PROMTOOL_INSTALL=1` skips this step.
 */
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { findPromtool, TOOLS_BIN } = require('./promtool-paths');

function run(cmd, args, cwd) {
  const res = spawnSync(cmd, args, {
    cwd,
    stdio: ['ignore', 'ignore', 'pipe'],
    encoding: 'utf8',
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  return { ok: !res.error && res.status === 0, stderr: res.error ? res.error.message : res.stderr };
}

function main() {
  if (process.env.SYNC_SKIP_PROMTOOL_INSTALL === '1' || findPromtool()) return;
  const hasApt =
    spawnSync('apt-get', ['--version'], { stdio: 'ignore' }).status === 0 &&
    spawnSync('dpkg-deb', ['--version'], { stdio: 'ignore' }).status === 0;
  if (!hasApt) {
    console.warn(
      '[promtool] not found and no apt-get here: install Prometheus (promtool) to check docs/prometheus-alerts.yml',
    );
    return;
  }
  console.log("[promtool] extracting promtool from Debian's prometheus package (once)");
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'promtool-'));
  try {
    let download = run('apt-get', ['download', 'prometheus'], work);
    const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
    if (!download.ok && isRoot) {
      // A fresh machine has no package lists yet.
      run('apt-get', ['update', '-qq']);
      download = run('apt-get', ['download', 'prometheus'], work);
    }
    const deb = fs.readdirSync(work).find((f) => f.endsWith('.deb'));
    if (!download.ok || !deb) {
      console.error(`[promtool] apt-get download prometheus failed: ${download.stderr.trim()}`);
      process.exit(1);
    }
    const extract = run('dpkg-deb', ['-x', deb, 'root'], work);
    const binary = path.join(work, 'root', 'usr', 'bin', 'promtool');
    if (!extract.ok || !fs.existsSync(binary)) {
      console.error(
        `[promtool] the prometheus package holds no usr/bin/promtool ${extract.stderr}`,
      );
      process.exit(1);
    }
    fs.mkdirSync(TOOLS_BIN, { recursive: true });
    fs.copyFileSync(binary, path.join(TOOLS_BIN, 'promtool'));
    fs.chmodSync(path.join(TOOLS_BIN, 'promtool'), 0o755);
    console.log(`[promtool] ready: ${findPromtool()}`);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main();
