/**
 * npm run sync:test-connection -- [flags]
 *
 * Checks both connections (local MongoDB and Atlas): reachable, latency,
 * server version, replica set, change streams. Exit 0 when both pass, 1 when
 * a check fails, 2 on a usage error. See `--help`.
 */
import 'reflect-metadata';
import {
  COMMON_OPTIONS,
  COMMON_USAGE,
  EXIT,
  integerFlag,
  parseCommandLine,
  targetsFromFlags,
  runCommand,
} from '../src/cli/cli-support';
import { checkConnection, formatConnectionChecks } from '../src/cli/connection-check';

const USAGE = `Usage: npm run sync:test-connection -- [flags]

Connects to the local MongoDB and to Atlas and checks, for each: ping latency,
server version, replica set / writable primary, and change stream support (a
database-level change stream is opened). Connection strings are printed with
their credentials redacted.

${COMMON_USAGE}

Exit codes: 0 both connections pass, 1 a check failed (unreachable server,
no change streams, not a primary), 2 usage error.`;

async function main(): Promise<number> {
  const flags = parseCommandLine(process.argv.slice(2), COMMON_OPTIONS);
  if (flags.help) {
    process.stdout.write(`${USAGE}\n`);
    return EXIT.ok;
  }
  const targets = targetsFromFlags(flags);
  const timeoutMs = integerFlag('timeout-ms', flags['timeout-ms'], 10_000, 1);
  const checks = await Promise.all([
    checkConnection('Local MongoDB', targets.local.uri, targets.local.dbName, timeoutMs),
    checkConnection('Atlas', targets.atlas.uri, targets.atlas.dbName, timeoutMs),
  ]);
  if (flags.json) {
    process.stdout.write(`${JSON.stringify({ ok: checks.every((c) => c.ok), checks }, null, 2)}\n`);
  } else {
    if (targets.embeddedDefaults)
      process.stdout.write('No URIs configured: checking the embedded development servers.\n\n');
    process.stdout.write(`${formatConnectionChecks(checks)}\n`);
  }
  return checks.every((c) => c.ok) ? EXIT.ok : EXIT.failed;
}

runCommand(USAGE, main);
