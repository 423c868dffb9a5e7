/**
 * npm run sync:verify -- [flags]
 *
 * Compares the local database with Atlas collection by collection and exits
 * 0 when nothing differs, 1 when mismatches remain, 2 on a usage or
 * connection error. See `--help`.
 */
import 'reflect-metadata';
import { MongoClient } from 'mongodb';
import {
  COMMON_OPTIONS,
  COMMON_USAGE,
  connectClient,
  EXIT,
  integerFlag,
  listFlag,
  parseCommandLine,
  targetsFromFlags,
  runCommand,
} from '../src/cli/cli-support';
import { redactUri } from '../src/lib/errors/sync.errors';
import { SyncVerifier } from '../src/lib/verifier/sync-verifier';
import { formatVerificationReport, verificationReportJson } from '../src/cli/verify-report';

const USAGE = `Usage: npm run sync:verify -- [flags]

Compares the local MongoDB with Atlas, collection by collection (every collection
on either side except _sync_* and system.*), by SHA-256 hashes of _id ranges, then
document by document where a range differs. Prints missing (on Atlas only), extra
(local only) and different documents; documents with an unpushed change in the
local outbox are listed as pending. Collections in BIDIRECTIONAL_EXCLUDED_COLLECTIONS
are checked Local -> Atlas only; collections outside SYNC_COLLECTIONS are skipped.

  --collections a,b    verify only these collections
  --limit <n>          mismatches listed (default 20)
  --page-size <n>      documents per _id range (default 1000)
  --ignore-fields a,b  top-level fields left out of the comparison (default: none;
                       _sync and __v are compared)
  --wait-pending <ms>  first wait up to <ms> for the local outbox to drain

${COMMON_USAGE}

Exit codes: 0 no mismatches, 1 mismatches remain, 2 usage or connection error.`;

const OPTIONS = {
  ...COMMON_OPTIONS,
  collections: { type: 'string' },
  limit: { type: 'string' },
  'page-size': { type: 'string' },
  'ignore-fields': { type: 'string' },
  'wait-pending': { type: 'string' },
} as const;

async function main(): Promise<number> {
  const flags = parseCommandLine(process.argv.slice(2), OPTIONS);
  if (flags.help) {
    process.stdout.write(`${USAGE}\n`);
    return EXIT.ok;
  }
  const targets = targetsFromFlags(flags);
  const timeoutMs = integerFlag('timeout-ms', flags['timeout-ms'], 10_000, 1);
  const limit = integerFlag('limit', flags.limit, 20);
  const pageSize = integerFlag('page-size', flags['page-size'], 1000, 2);
  const waitPending = integerFlag('wait-pending', flags['wait-pending'], 0);
  const log = (line: string) => {
    if (!flags.json) process.stderr.write(`${line}\n`);
  };

  log(
    `Local ${redactUri(targets.local.uri)} (${targets.local.dbName}), Atlas ${redactUri(targets.atlas.uri)} (${targets.atlas.dbName})` +
      (targets.embeddedDefaults ? ' [no URIs configured: embedded development servers]' : ''),
  );
  const clients: MongoClient[] = [];
  try {
    clients.push(await connectClient('local MongoDB', targets.local.uri, timeoutMs, 'sync-verify'));
    clients.push(await connectClient('Atlas', targets.atlas.uri, timeoutMs, 'sync-verify'));
    const verifier = new SyncVerifier({
      local: clients[0].db(targets.local.dbName),
      atlas: clients[1].db(targets.atlas.dbName),
      sync: targets.sync,
      only: listFlag(flags.collections),
      pageSize,
      ignoreFields: listFlag(flags['ignore-fields']),
      onProgress: (c, phase) => {
        if (phase === 'done')
          log(`  ${c.name}: ${c.local} local / ${c.atlas} atlas documents, ${c.ranges} range(s)`);
      },
    });
    if (waitPending > 0) {
      log(`Waiting up to ${waitPending} ms for the local outbox to drain...`);
      const left = await verifier.waitForOutbox(waitPending);
      log(left ? `  ${left} change(s) still pending` : '  outbox empty');
    }
    const report = await verifier.verify();
    process.stdout.write(
      `${flags.json ? verificationReportJson(report) : formatVerificationReport(report, { limit })}\n`,
    );
    return report.ok ? EXIT.ok : EXIT.failed;
  } finally {
    await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
  }
}

runCommand(USAGE, main);
