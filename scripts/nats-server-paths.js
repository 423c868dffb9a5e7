'use strict';
const path = require('node:path');

/** The nats-server release fleet mode is built and tested against. Bump deliberately. */
const NATS_SERVER_VERSION = '2.15.3';
const NATS_SERVER_MODULE = 'github.com/nats-io/nats-server/v2';
const ROOT = path.resolve(__dirname, '..');
/** Project-local tools directory (git-ignored); `go install` writes the binary here. */
const TOOLS_BIN = path.join(ROOT, '.tools', 'bin');

/**
 * The nats-server binary every script, test and dev server runs: NATS_SERVER_BIN when set,
 * otherwise the one the installer put in .tools/bin.
 */
function natsServerBinary() {
  return (
    process.env.NATS_SERVER_BIN ||
    path.join(TOOLS_BIN, process.platform === 'win32' ? 'nats-server.exe' : 'nats-server')
  );
}

module.exports = { NATS_SERVER_VERSION, NATS_SERVER_MODULE, ROOT, TOOLS_BIN, natsServerBinary };
