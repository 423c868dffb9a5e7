#!/usr/bin/env node
/**
 * Installs the pinned nats-server (fleet mode's broker) into .tools/bin. Idempotent: when
 * the binary there reports the pinned version the script returns at once.
 *
 * 1. `go install github.com/nats-io/nats-server/v2@<version>` (from the Go module proxy);
 *    about a minute on a cold module and build cache with 2 cores.
 * 2. Without Go, as root: Debian's `nats-server` package (apt-get), linked into .tools/bin.
 *    It is an older release (2.9 on bookworm); fleet mode uses nothing newer than 2.9 offers.
 * 3. Otherwise: an error saying what to install.
 *
 * Environment:
 *   NATS_SERVER_BIN  use this binary; nothing is installed
 *   GO               the go command (default: `go` on PATH, then /usr/local/go/bin/go)
 */
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const {
  NATS_SERVER_VERSION,
  NATS_SERVER_MODULE,
  TOOLS_BIN,
  natsServerBinary,
} = require('./nats-server-paths');

function log(message) {
  console.log(`[nats-server] ${message}`);
}

function fail(message) {
  console.error(`[nats-server] ${message}`);
  process.exit(1);
}

/** The version a binary reports (`nats-server: v2.15.3`), or undefined when it does not run. */
function versionOf(binary) {
  if (!fs.existsSync(binary)) return undefined;
  const res = spawnSync(binary, ['--version'], { encoding: 'utf8' });
  if (res.error || res.status !== 0) return undefined;
  const match = /v(\d+\.\d+\.\d+\S*)/.exec(`${res.stdout}${res.stderr}`);
  return match ? match[1] : undefined;
}

function findGo() {
  const candidates = [process.env.GO, 'go', '/usr/local/go/bin/go'].filter(Boolean);
  for (const go of candidates) {
    const res = spawnSync(go, ['version'], { encoding: 'utf8' });
    if (!res.error && res.status === 0) return { go, version: res.stdout.trim() };
  }
  return undefined;
}

function installWithGo(go) {
  const started = Date.now();
  log(`building ${NATS_SERVER_MODULE}@v${NATS_SERVER_VERSION} with ${go.version} (about a minute)`);
  fs.mkdirSync(TOOLS_BIN, { recursive: true });
  const res = spawnSync(go.go, ['install', `${NATS_SERVER_MODULE}@v${NATS_SERVER_VERSION}`], {
    stdio: 'inherit',
    env: { ...process.env, GOBIN: TOOLS_BIN, CGO_ENABLED: '0', GOFLAGS: '-buildvcs=false' },
  });
  if (res.error || res.status !== 0) {
    console.error(
      `[nats-server] go install failed (${res.error ? res.error.message : `exit ${res.status}`})`,
    );
    return false;
  }
  log(`built in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return true;
}

function isRoot() {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

function installWithApt(target) {
  if (!isRoot() || spawnSync('apt-get', ['--version']).status !== 0) return false;
  log("installing Debian's nats-server package with apt-get");
  const install = () =>
    spawnSync('apt-get', ['install', '-y', '--no-install-recommends', 'nats-server'], {
      stdio: 'inherit',
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    }).status === 0;
  if (!install()) {
    spawnSync('apt-get', ['update'], { stdio: 'inherit' });
    if (!install()) return false;
  }
  const which = spawnSync('sh', ['-c', 'command -v nats-server'], { encoding: 'utf8' });
  const system = which.stdout.trim();
  if (!system) return false;
  fs.mkdirSync(TOOLS_BIN, { recursive: true });
  fs.rmSync(target, { force: true });
  fs.symlinkSync(system, target);
  return true;
}

function main() {
  const binary = natsServerBinary();
  if (process.env.NATS_SERVER_BIN) {
    const version = versionOf(binary);
    if (!version) fail(`NATS_SERVER_BIN=${binary} does not run ("--version" failed)`);
    log(`NATS_SERVER_BIN is set: using ${binary} (v${version}), nothing to install`);
    return;
  }
  const present = versionOf(binary);
  if (present === NATS_SERVER_VERSION) return;

  const go = findGo();
  if (go && installWithGo(go) && versionOf(binary) === NATS_SERVER_VERSION) {
    log(`ready: ${path.relative(process.cwd(), binary) || binary}`);
    return;
  }
  // A binary from an earlier apt fallback stays in use while Go remains unavailable.
  if (!go && present) return;
  if (installWithApt(binary)) {
    const version = versionOf(binary);
    if (version) {
      log(`ready: ${binary} -> Debian nats-server v${version} (pinned is v${NATS_SERVER_VERSION})`);
      return;
    }
  }
  fail(
    `could not install nats-server v${NATS_SERVER_VERSION}. Install Go 1.26+ (https://go.dev/dl; ` +
      `then run "npm run nats-server:install"), or as root run "apt-get install nats-server", ` +
      `or set NATS_SERVER_BIN=/path/to/nats-server.`,
  );
}

main();
