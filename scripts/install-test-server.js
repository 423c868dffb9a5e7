#!/usr/bin/env node
/**
 * Installs the pinned SecantusDB test server into a project-local Python
 * virtual environment (.venv-test-server). Idempotent: when the stamp file
 * records the pinned version the script returns at once.
 *
 * Environment:
 *   PYTHON                 interpreter to build the venv with (default: python3)
 *   SYNC_TEST_MONGODB_URIS when set, tests use these servers and nothing is installed
 */
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { SECANTUS_VERSION, VENV_DIR, venvPython } = require('./test-server-paths');

const STAMP = path.join(VENV_DIR, '.secantus-version');
const MIN_PYTHON = [3, 10];

function fail(message) {
  console.error(`[test-server] ${message}`);
  process.exit(1);
}

function run(cmd, args, opts = {}) {
  const res = spawnSync(cmd, args, { stdio: 'inherit', ...opts });
  if (res.error) fail(`could not run ${cmd}: ${res.error.message}`);
  if (res.status !== 0) fail(`${cmd} ${args.join(' ')} exited with ${res.status}`);
}

function main() {
  if (process.env.SYNC_TEST_MONGODB_URIS) {
    console.log(
      '[test-server] SYNC_TEST_MONGODB_URIS is set: using external servers, nothing to install',
    );
    return;
  }
  if (
    fs.existsSync(STAMP) &&
    fs.readFileSync(STAMP, 'utf8').trim() === SECANTUS_VERSION &&
    fs.existsSync(venvPython())
  ) {
    return;
  }
  const python = process.env.PYTHON || 'python3';
  const probe = spawnSync(python, ['-c', 'import sys; print("%d.%d" % sys.version_info[:2])'], {
    encoding: 'utf8',
  });
  if (probe.error || probe.status !== 0) {
    fail(
      `Python ${MIN_PYTHON.join('.')}+ is required to run the test server, but "${python}" could not be run. Install Python 3.10 or newer, or set PYTHON=/path/to/python3.`,
    );
  }
  const [major, minor] = probe.stdout.trim().split('.').map(Number);
  if (major < MIN_PYTHON[0] || (major === MIN_PYTHON[0] && minor < MIN_PYTHON[1])) {
    fail(
      `Python ${MIN_PYTHON.join('.')}+ is required to run the test server; "${python}" is ${major}.${minor}. Set PYTHON=/path/to/python3.10+.`,
    );
  }
  console.log(
    `[test-server] installing SecantusDB ${SECANTUS_VERSION} into ${path.relative(process.cwd(), VENV_DIR) || VENV_DIR}`,
  );
  if (!fs.existsSync(venvPython())) run(python, ['-m', 'venv', VENV_DIR]);
  run(venvPython(), [
    '-m',
    'pip',
    'install',
    '--quiet',
    '--disable-pip-version-check',
    `SecantusDB==${SECANTUS_VERSION}`,
  ]);
  const check = spawnSync(venvPython(), ['-m', 'secantus', '--help'], { encoding: 'utf8' });
  if (check.status !== 0)
    fail(`SecantusDB installed but "python -m secantus --help" failed:\n${check.stderr}`);
  fs.writeFileSync(STAMP, `${SECANTUS_VERSION}\n`);
  console.log('[test-server] ready');
}

main();
