import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

/**
 * The Chromium the browser tests drive: `SYNC_TEST_CHROMIUM`, else `chromium`
 * or `chromium-browser` on PATH (the same rule as scripts/browser-paths.js,
 * which `npm test` runs first to install Debian's package when it is missing).
 */
export function findChromium(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const executable = (file: string): boolean => {
    try {
      accessSync(file, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  };
  const configured = env.SYNC_TEST_CHROMIUM?.trim();
  if (configured) return executable(configured) ? configured : undefined;
  for (const dir of (env.PATH ?? '').split(delimiter).filter(Boolean))
    for (const name of ['chromium', 'chromium-browser'])
      if (executable(join(dir, name))) return join(dir, name);
  return undefined;
}

/** Chromium's executable, or an error saying how to get one. */
export function requireChromium(): string {
  const found = findChromium();
  if (!found)
    throw new Error(
      'No Chromium found: run node scripts/install-browser.js (Debian: apt-get install chromium) or set SYNC_TEST_CHROMIUM',
    );
  return found;
}
