'use strict';
/**
 * Where `promtool` is: on PATH, else `.tools/bin/promtool` (put there by
 * scripts/install-promtool.js). Shared by that script and the test.
 */
const { accessSync, constants } = require('node:fs');
const path = require('node:path');

const TOOLS_BIN = path.join(__dirname, '..', '.tools', 'bin');

function executable(file) {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The promtool executable, or undefined when there is none. */
function findPromtool(env = process.env) {
  const dirs = [...(env.PATH ?? '').split(path.delimiter).filter(Boolean), TOOLS_BIN];
  return dirs.map((dir) => path.join(dir, 'promtool')).find(executable);
}

module.exports = { findPromtool, TOOLS_BIN };
