/**
 * npm run sync:check-resume-token -- [flags]
 *
 * Lists the stored change stream positions and checks whether each can still
 * be resumed. Exit 0 when this instance's tokens are usable (or absent), 1 when
 * one cannot be resumed, 2 on a usage or connection error. See `--help`.
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
import { checkResumeTokens, formatResumeTokenReport } from '../src/cli/resume-token-check';

const USAGE = `Usage: npm run sync:check-resume-token -- [flags]

Lists the resume tokens stored in the local _sync_metadata collection (one per
instance id and stream: atlas, local) with their age, and checks each one by
opening a change stream with startAfter on the server it belongs to:
OK, HISTORY-LOST (286: the oplog no longer reaches back to it) or INVALID (the
server rejects it). An unusable token is not an emergency: the engine detects it
and re-baselines on its next start. Read only.

${COMMON_USAGE}

Exit codes: 0 this instance's tokens can be resumed (or none is stored),
1 one cannot be resumed, 2 usage or connection error.`;

async function main(): Promise<number> {
  const flags = parseCommandLine(process.argv.slice(2), COMMON_OPTIONS);
  if (flags.help) {
    process.stdout.write(`${USAGE}\n`);
    return EXIT.ok;
  }
  const targets = targetsFromFlags(flags);
  const timeoutMs = integerFlag('timeout-ms', flags['timeout-ms'], 10_000, 1);
  const clients: MongoClient[] = [];
  try {
    clients.push(await connectClient('local MongoDB', targets.local.uri, timeoutMs));
    clients.push(await connectClient('Atlas', targets.atlas.uri, timeoutMs));
    const report = await checkResumeTokens({
      local: clients[0].db(targets.local.dbName),
      atlas: clients[1].db(targets.atlas.dbName),
    });
    process.stdout.write(
      `${flags.json ? JSON.stringify(report, null, 2) : formatResumeTokenReport(report)}\n`,
    );
    return report.ok ? EXIT.ok : EXIT.failed;
  } finally {
    await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
  }
}

runCommand(USAGE, main);
