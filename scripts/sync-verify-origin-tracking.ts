/**
 * npm run sync:verify-origin-tracking -- [flags]
 *
 * Checks this database's instance id, the `_sync` stamps of synced documents
 * on both sides and the origins seen. Exit 0 when no check fails, 1 when one
 * does, 2 on a usage or connection error. See `--help`.
 */
import 'reflect-metadata';
import { MongoClient } from 'mongodb';
import {
  COMMON_OPTIONS,
  COMMON_USAGE,
  connectClient,
  EXIT,
  integerFlag,
  parseCommandLine,
  targetsFromFlags,
  runCommand,
} from '../src/cli/cli-support';
import { checkOriginTracking, formatOriginTrackingReport } from '../src/cli/origin-tracking-check';

const USAGE = `Usage: npm run sync:verify-origin-tracking -- [flags]

Reports this local database's sync instance id (present, valid, not reserved,
the host it was created on), the share of synced documents carrying a _sync
stamp {v, o} on each side, the origins (_sync.o) seen, and whether Atlas holds
versions stamped with this instance id that this database never issued (two
devices sharing one id). Read only.

  --local-only         do not connect to Atlas (local checks only)

${COMMON_USAGE}

Exit codes: 0 no check failed (warnings allowed), 1 a check failed,
2 usage or connection error.`;

const OPTIONS = { ...COMMON_OPTIONS, 'local-only': { type: 'boolean' } } as const;

async function main(): Promise<number> {
  const flags = parseCommandLine(process.argv.slice(2), OPTIONS);
  if (flags.help) {
    process.stdout.write(`${USAGE}\n`);
    return EXIT.ok;
  }
  const targets = targetsFromFlags(flags);
  const timeoutMs = integerFlag('timeout-ms', flags['timeout-ms'], 10_000, 1);
  const clients: MongoClient[] = [];
  try {
    const local = await connectClient('local MongoDB', targets.local.uri, timeoutMs);
    clients.push(local);
    const atlas = flags['local-only']
      ? undefined
      : await connectClient('Atlas', targets.atlas.uri, timeoutMs);
    if (atlas) clients.push(atlas);
    const report = await checkOriginTracking({
      local: local.db(targets.local.dbName),
      atlas: atlas?.db(targets.atlas.dbName),
      sync: targets.sync,
    });
    process.stdout.write(
      `${flags.json ? JSON.stringify(report, null, 2) : formatOriginTrackingReport(report)}\n`,
    );
    return report.ok ? EXIT.ok : EXIT.failed;
  } finally {
    await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
  }
}

runCommand(USAGE, main);
