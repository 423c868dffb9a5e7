'use strict';
/**
 * Where the dashboard test's Chromium is: `SYNC_TEST_CHROMIUM`, else
 * `chromium` or `chromium-browser` on PATH. Shared by
 * scripts/install-browser.js and the test.
 */
const { accessSync, constants } = require('node:fs');
const path = require('node:path');

const CANDIDATES = ['chromium', 'chromium-browser'];

function executable(file) {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The Chromium executable to use, or undefined when there is none. */
function findChromium(env = process.env) {
  const configured = env.SYNC_TEST_CHROMIUM?.trim();
  if (configured) return executable(configured) ? configured : undefined;
  for (const dir of (env.PATH ?? '').split(path.delimiter).filter(Boolean)) {
    for (const name of CANDIDATES) {
      const file = path.join(dir, name);
      if (executable(file)) return file;
    }
  }
  return undefined;
}

module.exports = { findChromium };
