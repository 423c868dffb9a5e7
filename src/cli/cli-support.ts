import { parseArgs, ParseArgsConfig } from 'node:util';
import { config as loadDotenv } from 'dotenv';
import { MongoClient } from 'mongodb';
import { DEFAULT_EMBEDDED_PORTS } from '../app/service-config';
import {
  resolveSyncConfig,
  ResolvedSyncConfig,
  syncOptionsFromEnv,
} from '../lib/config/sync-config';
import {
  redactMessage,
  redactUri,
  SyncConfigurationError,
  SyncError,
} from '../lib/errors/sync.errors';

/** Exit codes shared by the sync commands (`npm run sync:*`). */
export const EXIT = {
  /** Every check passed (the verifier: no mismatches). */
  ok: 0,
  /** A check failed (the verifier: mismatches remain). */
  failed: 1,
  /** Bad usage, bad configuration or a database that cannot be reached. */
  usage: 2,
} as const;

/** Bad command line or configuration (exit code 2). */
export class UsageError extends SyncError {}

/** A database that could not be reached (exit code 2); the message is redacted. */
export class ConnectionFailedError extends SyncError {}

/** Where a command connects to. */
export interface DiagnosticTargets {
  local: { uri: string; dbName: string };
  atlas: { uri: string; dbName: string };
  /** The sync configuration (collections, excluded collections) read from the environment. */
  sync: ResolvedSyncConfig;
  /** True when no URI was configured and the embedded development servers' ports are used. */
  embeddedDefaults: boolean;
}

export interface TargetFlags {
  local?: string;
  atlas?: string;
  localDb?: string;
  atlasDb?: string;
}

const DB_NAME = /^[^/\\. "$*<>:|?]{1,63}$/;

/**
 * Resolves the two databases a command works on, as the service does:
 * flags, else LOCAL_MONGODB_URI / ATLAS_MONGODB_URI; LOCAL_DB_NAME, else the
 * database in the local URI, else `app`; ATLAS_DB_NAME, else the local name.
 * With neither URI set, the embedded development servers (`npm start` without
 * configuration) are assumed. SYNC_COLLECTIONS and
 * BIDIRECTIONAL_EXCLUDED_COLLECTIONS are read with `syncOptionsFromEnv`.
 */
export function resolveTargets(env: NodeJS.ProcessEnv, flags: TargetFlags = {}): DiagnosticTargets {
  const read = (v: string | undefined) => v?.trim() || undefined;
  let localUri = read(flags.local) ?? read(env.LOCAL_MONGODB_URI);
  let atlasUri = read(flags.atlas) ?? read(env.ATLAS_MONGODB_URI);
  const embeddedDefaults = !localUri && !atlasUri;
  if (embeddedDefaults) {
    localUri = `mongodb://127.0.0.1:${read(env.EMBEDDED_LOCAL_PORT) ?? DEFAULT_EMBEDDED_PORTS.local}/?directConnection=true`;
    atlasUri = `mongodb://127.0.0.1:${read(env.EMBEDDED_ATLAS_PORT) ?? DEFAULT_EMBEDDED_PORTS.atlas}/?directConnection=true`;
  }
  if (!localUri || !atlasUri) {
    throw new UsageError(
      `${localUri ? 'ATLAS_MONGODB_URI (--atlas)' : 'LOCAL_MONGODB_URI (--local)'} is not set: set both connection strings`,
    );
  }
  for (const [name, uri] of [
    ['LOCAL_MONGODB_URI', localUri],
    ['ATLAS_MONGODB_URI', atlasUri],
  ]) {
    if (!/^mongodb(\+srv)?:\/\//.test(uri))
      throw new UsageError(`${name}: must be a mongodb:// or mongodb+srv:// connection string`);
  }
  const localDbName =
    read(flags.localDb) ?? read(env.LOCAL_DB_NAME) ?? databaseOf(localUri) ?? 'app';
  const atlasDbName = read(flags.atlasDb) ?? read(env.ATLAS_DB_NAME) ?? localDbName;
  for (const [name, value] of [
    ['LOCAL_DB_NAME', localDbName],
    ['ATLAS_DB_NAME', atlasDbName],
  ]) {
    if (!DB_NAME.test(value))
      throw new UsageError(`${name} = ${JSON.stringify(value)}: must be a valid database name`);
  }

  const fromEnv = syncOptionsFromEnv(env);
  let sync: ResolvedSyncConfig;
  try {
    sync = resolveSyncConfig({
      atlasUri,
      collections: fromEnv.collections,
      excludedCollections: fromEnv.excludedCollections,
    });
  } catch (err) {
    if (err instanceof SyncConfigurationError) throw new UsageError(err.message);
    throw err;
  }
  return {
    local: { uri: localUri, dbName: localDbName },
    atlas: { uri: atlasUri, dbName: atlasDbName },
    sync,
    embeddedDefaults,
  };
}

/** Database named in a connection string's path, if any. */
export function databaseOf(uri: string): string | undefined {
  const match = uri.match(/^mongodb(?:\+srv)?:\/\/[^/?]+\/([^?]+)/);
  return match ? decodeURIComponent(match[1]) : undefined;
}

/** Connects a client, failing within `timeoutMs` with a redacted `ConnectionFailedError`. */
export async function connectClient(
  label: string,
  uri: string,
  timeoutMs: number,
  appName = 'bidirectional-sync-diagnostics',
): Promise<MongoClient> {
  const client = new MongoClient(uri, {
    serverSelectionTimeoutMS: timeoutMs,
    connectTimeoutMS: timeoutMs,
    appName,
  });
  try {
    await client.connect();
    await client.db('admin').command({ ping: 1 }, { timeoutMS: timeoutMs });
    return client;
  } catch (err) {
    await client.close(true).catch(() => undefined);
    throw new ConnectionFailedError(
      `Cannot connect to ${label} (${redactUri(uri)}): ${errorMessage(err)}`,
    );
  }
}

/** An error's message with every connection string redacted. */
export function errorMessage(err: unknown): string {
  return redactMessage(err instanceof Error ? err.message : String(err));
}

/** The MongoDB error code of an error, if any. */
export function errorCode(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | undefined)?.code;
  return typeof code === 'number' ? code : undefined;
}

/** The shared flags of every command. */
export const COMMON_OPTIONS = {
  local: { type: 'string' },
  atlas: { type: 'string' },
  'local-db': { type: 'string' },
  'atlas-db': { type: 'string' },
  json: { type: 'boolean' },
  'timeout-ms': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies FlagSpecs;

export const COMMON_USAGE = `Connection (flags win over environment variables; .env of the working directory is loaded):
  --local <uri>        local MongoDB (LOCAL_MONGODB_URI)
  --atlas <uri>        Atlas (ATLAS_MONGODB_URI)
  --local-db <name>    local database (LOCAL_DB_NAME; default: the URI's database, else "app")
  --atlas-db <name>    Atlas database (ATLAS_DB_NAME; default: the local database's name)
  --timeout-ms <ms>    connection timeout (default 10000)
  --json               print the result as JSON
  -h, --help           this help
With neither URI set, the embedded development servers of "npm start" are used
(127.0.0.1:EMBEDDED_LOCAL_PORT and :EMBEDDED_ATLAS_PORT, default 27027 and 27028).`;

/** Flag specifications of a command (single-valued string and boolean flags). */
export type FlagSpecs = Record<string, { type: 'string' | 'boolean'; short?: string }>;

/** Parsed flags: strings and booleans, absent when not given. */
export type ParsedFlags<O extends FlagSpecs> = {
  [K in keyof O]?: O[K]['type'] extends 'boolean' ? boolean : string;
};

/** Parses the command line; throws `UsageError` on unknown or malformed flags. */
export function parseCommandLine<O extends FlagSpecs>(argv: string[], options: O): ParsedFlags<O> {
  try {
    const config: ParseArgsConfig = { args: argv, options, allowPositionals: false, strict: true };
    return parseArgs(config).values as ParsedFlags<O>;
  } catch (err) {
    throw new UsageError(errorMessage(err));
  }
}

/** A non-negative integer flag (or its default); `UsageError` otherwise. */
export function integerFlag(
  name: string,
  raw: string | undefined,
  fallback: number,
  min = 0,
): number {
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw.trim()) || Number(raw) < min)
    throw new UsageError(`--${name} = ${JSON.stringify(raw)}: must be an integer >= ${min}`);
  return Number(raw);
}

/** A comma-separated list flag. */
export function listFlag(raw: string | undefined): string[] | undefined {
  if (raw === undefined) return undefined;
  return raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

/** How long a finished command may take to flush its output before it is made to exit (ms). */
const EXIT_GRACE_MS = 2000;

/**
 * Runs a command: loads `.env`, runs `main`, maps errors to exit codes
 * (usage and connection errors: 2, printed redacted) and exits once
 * stdout is flushed.
 */
export function runCommand(usage: string, main: () => Promise<number>): void {
  loadDotenv({ quiet: true });
  const finish = (code: number) => {
    process.exitCode = code;
    // Open handles (a server that stopped answering) must not keep the command alive.
    setTimeout(() => process.exit(code), EXIT_GRACE_MS).unref();
  };
  main().then(finish, (err: unknown) => {
    if (err instanceof UsageError) {
      process.stderr.write(`Error: ${errorMessage(err)}\n\n${usage}\n`);
    } else if (err instanceof ConnectionFailedError) {
      process.stderr.write(`Error: ${errorMessage(err)}\n`);
    } else {
      const stack = err instanceof Error && err.stack ? err.stack : String(err);
      process.stderr.write(`Error: ${redactMessage(stack)}\n`);
    }
    finish(EXIT.usage);
  });
}

/** Formats rows as an aligned text table (numbers right-aligned). */
export function formatTable(headers: string[], rows: (string | number)[][]): string {
  const cells = [headers, ...rows.map((r) => r.map(String))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const numeric = headers.map(
    (_, i) => rows.length > 0 && rows.every((r) => typeof r[i] === 'number'),
  );
  return cells
    .map((r) =>
      r
        .map((c, i) => (numeric[i] ? c.padStart(widths[i]) : c.padEnd(widths[i])))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** Milliseconds as a short human duration (`850 ms`, `12.3 s`, `4 min`, `3.2 h`, `5 d`). */
export function formatDuration(ms: number): string {
  const abs = Math.abs(ms);
  if (abs < 1000) return `${Math.round(ms)} ms`;
  if (abs < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  if (abs < 3_600_000) return `${Math.round(ms / 60_000)} min`;
  if (abs < 86_400_000) return `${(ms / 3_600_000).toFixed(1)} h`;
  return `${(ms / 86_400_000).toFixed(1)} d`;
}

/** One result line of a diagnostic command. */
export interface Finding {
  level: 'ok' | 'info' | 'warn' | 'fail';
  message: string;
}

/** `[OK]   message` lines. */
export function formatFindings(findings: Finding[], indent = '  '): string {
  return findings
    .map((f) => `${indent}${`[${f.level.toUpperCase()}]`.padEnd(7)}${f.message}`)
    .join('\n');
}

/** The targets named by the common command-line flags (`--local`, `--atlas`, `--local-db`, `--atlas-db`), else the environment. */
export function targetsFromFlags(
  flags: { local?: string; atlas?: string; 'local-db'?: string; 'atlas-db'?: string },
  env: NodeJS.ProcessEnv = process.env,
): DiagnosticTargets {
  return resolveTargets(env, {
    local: flags.local,
    atlas: flags.atlas,
    localDb: flags['local-db'],
    atlasDb: flags['atlas-db'],
  });
}
