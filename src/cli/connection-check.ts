import { performance } from 'node:perf_hooks';
import type { MongoClient } from 'mongodb';
import { redactUri } from '../lib/errors/sync.errors';
import {
  connectClient,
  errorCode,
  errorMessage,
  Finding,
  formatDuration,
  formatFindings,
} from './cli-support';

/** Pings timed per connection (min, median, max). */
const PING_ROUNDS = 3;
/** A server clock further off than this (ms) is worth a warning (versions use Atlas time anyway). */
const CLOCK_OFFSET_WARN_MS = 5000;
/** The probe needs only the stream's first (empty) batch: wait briefly (ms). */
const PROBE_MAX_AWAIT_MS = 100;

/** What `npm run sync:test-connection` found out about one connection. */
export interface ConnectionCheck {
  label: string;
  /** The connection string, credentials redacted. */
  uri: string;
  dbName: string;
  ok: boolean;
  connected: boolean;
  /** Round trips of `ping` (ms). */
  latencyMs?: { min: number; median: number; max: number };
  serverVersion?: string;
  /** `SecantusDB <version>` for the test server, else undefined. */
  secantusVersion?: string;
  /** `replica set "rs0"`, `sharded cluster (mongos)` or `standalone`. */
  topology?: string;
  writablePrimary?: boolean;
  changeStreams?: { ok: boolean; error?: string; code?: number };
  /** The server's clock minus this machine's (ms), from `hello.localTime`. */
  clockOffsetMs?: number;
  /** Collections in the database (the module's own included). */
  collections?: number;
  findings: Finding[];
}

/**
 * Connects to one server and checks what the sync needs: a reachable
 * server (latency of three pings), its version, a writable primary of a
 * replica set or a mongos, and change streams (a database-level stream is
 * opened and read once). Never throws; every failure is a finding.
 */
export async function checkConnection(
  label: string,
  uri: string,
  dbName: string,
  timeoutMs = 10_000,
): Promise<ConnectionCheck> {
  const check: ConnectionCheck = {
    label,
    uri: redactUri(uri),
    dbName,
    ok: false,
    connected: false,
    findings: [],
  };
  const fail = (message: string) => check.findings.push({ level: 'fail', message });
  let client: MongoClient;
  try {
    client = await connectClient(label, uri, timeoutMs, 'sync-test-connection');
  } catch (err) {
    fail(errorMessage(err));
    return check;
  }
  check.connected = true;
  try {
    const admin = client.db('admin');
    const rounds: number[] = [];
    for (let i = 0; i < PING_ROUNDS; i++) {
      const started = performance.now();
      await admin.command({ ping: 1 });
      rounds.push(performance.now() - started);
    }
    rounds.sort((a, b) => a - b);
    check.latencyMs = {
      min: round(rounds[0]),
      median: round(rounds[Math.floor(PING_ROUNDS / 2)]),
      max: round(rounds[PING_ROUNDS - 1]),
    };
    check.findings.push({
      level: 'ok',
      message: `connected; ping ${check.latencyMs.median} ms (min ${check.latencyMs.min}, max ${check.latencyMs.max})`,
    });

    const sent = Date.now();
    const hello = await admin.command({ hello: 1 });
    const received = Date.now();
    if (hello.localTime instanceof Date)
      check.clockOffsetMs = Math.round(hello.localTime.getTime() - (sent + received) / 2);
    try {
      const build = await admin.command({ buildInfo: 1 });
      check.serverVersion = String(build.version);
      if (build.secantusVersion) check.secantusVersion = String(build.secantusVersion);
      check.findings.push({
        level: 'ok',
        message: `server version ${check.serverVersion}${check.secantusVersion ? ` (SecantusDB ${check.secantusVersion}, test server)` : ''}`,
      });
    } catch (err) {
      check.findings.push({ level: 'warn', message: `buildInfo failed: ${errorMessage(err)}` });
    }

    const mongos = hello.msg === 'isdbgrid';
    check.topology = mongos
      ? 'sharded cluster (mongos)'
      : hello.setName
        ? `replica set "${hello.setName}"`
        : 'standalone';
    check.writablePrimary = hello.isWritablePrimary === true || mongos;
    if (!mongos && !hello.setName) {
      fail('standalone server: change streams need a replica set (a single-node one will do)');
    } else if (!check.writablePrimary) {
      fail(`${check.topology}: connected to a member that is not the writable primary`);
    } else {
      check.findings.push({
        level: 'ok',
        message: `${check.topology}${mongos ? '' : ', writable primary'}`,
      });
    }

    check.changeStreams = await probeChangeStream(client, dbName);
    if (check.changeStreams.ok) {
      check.findings.push({
        level: 'ok',
        message: `change streams: database-level stream on "${dbName}" opened`,
      });
    } else {
      fail(
        `change streams unavailable on "${dbName}": ${check.changeStreams.error}` +
          (check.changeStreams.code !== undefined ? ` (code ${check.changeStreams.code})` : ''),
      );
    }

    check.collections = (
      await client.db(dbName).listCollections({}, { nameOnly: true }).toArray()
    ).length;
    check.findings.push({
      level: 'info',
      message: `database "${dbName}": ${check.collections} collection(s)`,
    });
    if (check.clockOffsetMs !== undefined) {
      check.findings.push({
        level: Math.abs(check.clockOffsetMs) > CLOCK_OFFSET_WARN_MS ? 'warn' : 'info',
        message: `server clock ${check.clockOffsetMs >= 0 ? '+' : '-'}${formatDuration(Math.abs(check.clockOffsetMs))} from this machine's`,
      });
    }
  } catch (err) {
    fail(errorMessage(err));
  } finally {
    await client.close().catch(() => undefined);
  }
  check.ok = !check.findings.some((f) => f.level === 'fail');
  return check;
}

/** Opens a database-level change stream and waits for its first (empty) batch. */
async function probeChangeStream(
  client: MongoClient,
  dbName: string,
): Promise<{ ok: boolean; error?: string; code?: number }> {
  const stream = client.db(dbName).watch([], { maxAwaitTimeMS: PROBE_MAX_AWAIT_MS });
  try {
    await stream.tryNext();
    return { ok: true };
  } catch (err) {
    return { ok: false, error: errorMessage(err), code: errorCode(err) };
  } finally {
    await stream.close().catch(() => undefined);
  }
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}

/** The checks of both connections as text. */
export function formatConnectionChecks(checks: ConnectionCheck[]): string {
  const lines: string[] = [];
  for (const c of checks) {
    lines.push(`${c.label}: ${c.uri} (database "${c.dbName}")`);
    lines.push(formatFindings(c.findings));
    lines.push('');
  }
  const failed = checks.filter((c) => !c.ok).map((c) => c.label);
  lines.push(
    failed.length
      ? `Result: FAILED (${failed.join(', ')})`
      : 'Result: OK, both connections work and support change streams',
  );
  return lines.join('\n');
}
