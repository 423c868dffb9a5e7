import type { LogLevel } from '@nestjs/common';
import { resolve } from 'node:path';
import { SyncConfigurationError } from '../lib/errors/sync.errors';

/** Ports of the embedded development servers (also used by `npm run dev:servers`). */
export const DEFAULT_EMBEDDED_PORTS = { local: 27027, atlas: 27028 };
/** Defaults of `PORT` and `SHUTDOWN_TIMEOUT_MS` (ms). */
const DEFAULT_PORT = 5000;
const DEFAULT_SHUTDOWN_TIMEOUT_MS = 10_000;

const LOG_LEVELS: LogLevel[] = ['fatal', 'error', 'warn', 'log', 'debug', 'verbose'];

/** Configuration of the runnable service (`src/main.ts`); sync options are read by `syncOptionsFromEnv()`. */
export interface ServiceConfig {
  /** HTTP port. Env `PORT`, default 5000 (as in the specification). */
  port: number;
  /** Interface to listen on. Env `HOST`, default 0.0.0.0. */
  host: string;
  /** Env `LOCAL_MONGODB_URI`; with `atlasUri` unset too, embedded dev servers are started. */
  localUri?: string;
  /** Env `ATLAS_MONGODB_URI`; not set on a device in fleet mode (`SYNC_TRANSPORT=nats`). */
  atlasUri?: string;
  /** Env `LOCAL_DB_NAME`; default: the database in `LOCAL_MONGODB_URI`, else `app`. */
  localDbName: string;
  /** Env `LOG_LEVEL`: fatal, error, warn, log (or info), debug, verbose. Default log. */
  logLevel: LogLevel;
  /** Env `LOG_FORMAT`: text or json (one JSON object per line). Default text. */
  logFormat: 'text' | 'json';
  /** Env `SHUTDOWN_TIMEOUT_MS`: hard limit of a graceful shutdown. Default 10000. */
  shutdownTimeoutMs: number;
  /** Env `API_DOCS_ENABLED`: serve the OpenAPI description at /api/docs. Default true. */
  apiDocs: boolean;
  /** Embedded dev servers, used when no URI is configured. */
  embedded: {
    /** Env `EMBEDDED_LOCAL_PORT` (default 27027; 0 picks a free port). */
    localPort?: number;
    /** Env `EMBEDDED_ATLAS_PORT` (default 27028; 0 picks a free port). */
    atlasPort?: number;
    /** Env `EMBEDDED_DATA_DIR` (default `.dev-servers`, relative to the working directory). */
    dataDir: string;
  };
}

/** True when neither URI is configured: the service runs against embedded dev servers. */
export function usesEmbeddedServers(config: ServiceConfig): boolean {
  return !config.localUri && !config.atlasUri;
}

/**
 * Reads and checks the service's variables. Throws `SyncConfigurationError`
 * naming every bad variable (never echoing a connection string).
 */
export function loadServiceConfig(env: NodeJS.ProcessEnv = process.env): ServiceConfig {
  const problems: string[] = [];
  const read = (name: string): string | undefined => env[name]?.trim() || undefined;
  const port = (name: string, fallback: number, allowZero = false): number => {
    const raw = read(name);
    if (raw === undefined) return fallback;
    const value = Number(raw);
    if (/^\d+$/.test(raw) && value <= 65535 && (value > 0 || allowZero)) return value;
    problems.push(`${name} = ${JSON.stringify(raw)}: must be a port number (1-65535)`);
    return fallback;
  };
  const positive = (name: string, fallback: number): number => {
    const raw = read(name);
    if (raw === undefined) return fallback;
    if (/^\d+$/.test(raw) && Number(raw) > 0) return Number(raw);
    problems.push(`${name} = ${JSON.stringify(raw)}: must be a positive integer`);
    return fallback;
  };
  const uri = (name: string): string | undefined => {
    const raw = read(name);
    if (raw && !/^mongodb(\+srv)?:\/\//.test(raw)) {
      problems.push(`${name}: must be a mongodb:// or mongodb+srv:// connection string`);
      return undefined;
    }
    return raw;
  };

  const localUri = uri('LOCAL_MONGODB_URI');
  const atlasUri = uri('ATLAS_MONGODB_URI');
  // A device in fleet mode reaches Atlas through the relays: it has no ATLAS_MONGODB_URI.
  const fleetDevice =
    read('SYNC_TRANSPORT') === 'nats' && (read('SYNC_FLEET_ROLE') ?? 'device') === 'device';
  const onlyLocal = !!read('LOCAL_MONGODB_URI') && !read('ATLAS_MONGODB_URI');
  if (!!read('LOCAL_MONGODB_URI') !== !!read('ATLAS_MONGODB_URI') && !(onlyLocal && fleetDevice)) {
    problems.push(
      'LOCAL_MONGODB_URI and ATLAS_MONGODB_URI: set both, or neither to run against embedded dev servers (ATLAS_MONGODB_URI is required in direct mode; only a device in fleet mode, SYNC_TRANSPORT=nats, runs without it)',
    );
  }

  let logLevel = (read('LOG_LEVEL')?.toLowerCase() ?? 'log') as LogLevel | 'info';
  if (logLevel === 'info') logLevel = 'log';
  if (!LOG_LEVELS.includes(logLevel)) {
    problems.push(
      `LOG_LEVEL = ${JSON.stringify(logLevel)}: must be one of ${LOG_LEVELS.join(', ')}`,
    );
    logLevel = 'log';
  }
  const logFormat = (read('LOG_FORMAT')?.toLowerCase() ?? 'text') as 'text' | 'json';
  if (logFormat !== 'text' && logFormat !== 'json')
    problems.push(`LOG_FORMAT = ${JSON.stringify(logFormat)}: must be text or json`);

  const docs = read('API_DOCS_ENABLED');
  if (docs !== undefined && !/^(true|false|1|0|yes|no|on|off)$/i.test(docs))
    problems.push(`API_DOCS_ENABLED = ${JSON.stringify(docs)}: must be true or false`);

  const localDbName = read('LOCAL_DB_NAME') ?? (localUri && databaseOf(localUri)) ?? 'app';
  if (!/^[^/\\. "$*<>:|?]{1,63}$/.test(localDbName))
    problems.push(`LOCAL_DB_NAME = ${JSON.stringify(localDbName)}: must be a valid database name`);

  const config: ServiceConfig = {
    port: port('PORT', DEFAULT_PORT),
    host: read('HOST') ?? '0.0.0.0',
    localUri,
    atlasUri,
    localDbName,
    logLevel,
    logFormat,
    shutdownTimeoutMs: positive('SHUTDOWN_TIMEOUT_MS', DEFAULT_SHUTDOWN_TIMEOUT_MS),
    apiDocs: docs === undefined || /^(true|1|yes|on)$/i.test(docs),
    embedded: {
      localPort: port('EMBEDDED_LOCAL_PORT', DEFAULT_EMBEDDED_PORTS.local, true) || undefined,
      atlasPort: port('EMBEDDED_ATLAS_PORT', DEFAULT_EMBEDDED_PORTS.atlas, true) || undefined,
      dataDir: resolve(read('EMBEDDED_DATA_DIR') ?? '.dev-servers'),
    },
  };
  if (problems.length) throw new SyncConfigurationError(problems);
  return config;
}

/** The log levels enabled at `level` (it and every more severe one). */
export function logLevelsUpTo(level: LogLevel): LogLevel[] {
  return LOG_LEVELS.slice(0, LOG_LEVELS.indexOf(level) + 1);
}

/** Database named in a connection string's path, if any. */
function databaseOf(uri: string): string | undefined {
  const match = uri.match(/^mongodb(?:\+srv)?:\/\/[^/?]+\/([^?]+)/);
  return match ? decodeURIComponent(match[1]) : undefined;
}
