'use strict';
const path = require('node:path');

/** The SecantusDB release every test and dev server runs. Bump deliberately. */
const SECANTUS_VERSION = '0.7.0b3';
const ROOT = path.resolve(__dirname, '..');
const VENV_DIR = process.env.SYNC_TEST_SERVER_VENV || path.join(ROOT, '.venv-test-server');

function venvPython() {
  return process.platform === 'win32'
    ? path.join(VENV_DIR, 'Scripts', 'python.exe')
    : path.join(VENV_DIR, 'bin', 'python');
}

module.exports = { SECANTUS_VERSION, ROOT, VENV_DIR, venvPython };
