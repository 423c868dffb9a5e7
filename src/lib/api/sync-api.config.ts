import { Logger } from '@nestjs/common';
import { SyncConfigurationError } from '../errors/sync.errors';
import type { SyncApiModuleOptions } from './sync-api-options.interface';

/** Each option's environment variable. */
export const SYNC_API_ENV_VARIABLES = {
  apiKey: 'SYNC_API_KEY',
  protectReads: 'SYNC_API_PROTECT_READS',
  throttleLimit: 'SYNC_API_RATE_LIMIT',
  throttleTtl: 'SYNC_API_RATE_TTL',
  dashboard: 'SYNC_API_DASHBOARD',
} as const;

/** API options with every default filled in. */
export interface ResolvedSyncApiConfig {
  apiKey?: string;
  protectReads: boolean;
  dashboard: boolean;
  throttle: { ttl: number; limit: number };
}

export const DEFAULT_SYNC_API_THROTTLE = { ttl: 60_000, limit: 100 };

/** Keys shorter than this are accepted with a warning. */
const RECOMMENDED_KEY_LENGTH = 16;

/**
 * Reads `SYNC_API_KEY`, `SYNC_API_PROTECT_READS`, `SYNC_API_RATE_LIMIT` and
 * `SYNC_API_RATE_TTL` (the `SYNC_HEALTH_MAX_*` thresholds are the engine's:
 * `syncOptionsFromEnv()`). Unset or empty
 * variables are left out so defaults apply; malformed values throw
 * `SyncConfigurationError` naming the variable.
 *
 * @publicApi
 */
export function syncApiOptionsFromEnv(env: NodeJS.ProcessEnv = process.env): SyncApiModuleOptions {
  const problems: string[] = [];
  const read = (name: string): string | undefined => {
    const raw = env[name]?.trim();
    return raw ? raw : undefined;
  };
  const integer = (name: string): number | undefined => {
    const raw = read(name);
    if (raw === undefined) return undefined;
    if (/^\d+$/.test(raw) && Number(raw) > 0) return Number(raw);
    problems.push(`${name} = ${JSON.stringify(raw)}: must be a positive integer`);
    return undefined;
  };
  const options: SyncApiModuleOptions = {};
  const apiKey = read(SYNC_API_ENV_VARIABLES.apiKey);
  if (apiKey) options.apiKey = apiKey;
  const boolean = (name: string): boolean | undefined => {
    const raw = read(name);
    if (raw === undefined) return undefined;
    if (/^(true|1|yes|on)$/i.test(raw)) return true;
    if (/^(false|0|no|off)$/i.test(raw)) return false;
    problems.push(`${name} = ${JSON.stringify(raw)}: must be true or false`);
    return undefined;
  };
  const protect = boolean(SYNC_API_ENV_VARIABLES.protectReads);
  if (protect !== undefined) options.protectReads = protect;
  const dashboard = boolean(SYNC_API_ENV_VARIABLES.dashboard);
  if (dashboard !== undefined) options.dashboard = dashboard;
  const limit = integer(SYNC_API_ENV_VARIABLES.throttleLimit);
  const ttl = integer(SYNC_API_ENV_VARIABLES.throttleTtl);
  if (limit !== undefined || ttl !== undefined) options.throttle = { limit, ttl };
  if (problems.length) throw new SyncConfigurationError(problems);
  return options;
}

/** Validates options and fills defaults. */
export function resolveSyncApiConfig(options: SyncApiModuleOptions = {}): ResolvedSyncApiConfig {
  const problems: string[] = [];
  const apiKey = typeof options.apiKey === 'string' ? options.apiKey.trim() : undefined;
  if (options.apiKey !== undefined && typeof options.apiKey !== 'string')
    problems.push('apiKey (SYNC_API_KEY): must be a string');
  if (options.dashboard !== undefined && typeof options.dashboard !== 'boolean')
    problems.push('dashboard (SYNC_API_DASHBOARD): must be true or false');
  const throttle = {
    ttl: options.throttle?.ttl ?? DEFAULT_SYNC_API_THROTTLE.ttl,
    limit: options.throttle?.limit ?? DEFAULT_SYNC_API_THROTTLE.limit,
  };
  if (!Number.isInteger(throttle.ttl) || throttle.ttl <= 0)
    problems.push(`throttle.ttl (SYNC_API_RATE_TTL) = ${throttle.ttl}: must be a positive integer`);
  if (!Number.isInteger(throttle.limit) || throttle.limit <= 0)
    problems.push(
      `throttle.limit (SYNC_API_RATE_LIMIT) = ${throttle.limit}: must be a positive integer`,
    );
  // Moved to the engine, which computes health; refused so such a setting is not silently lost.
  if ((options as { thresholds?: unknown }).thresholds !== undefined)
    problems.push(
      'thresholds: moved to BidirectionalSyncModule.forRoot({ healthThresholds }) (env SYNC_HEALTH_MAX_*, read by syncOptionsFromEnv())',
    );
  if (problems.length) throw new SyncConfigurationError(problems);
  if (apiKey && apiKey.length < RECOMMENDED_KEY_LENGTH)
    new Logger('SyncApi').warn(
      `SYNC_API_KEY is shorter than ${RECOMMENDED_KEY_LENGTH} characters: use a long random key (e.g. openssl rand -hex 32)`,
    );
  return {
    apiKey: apiKey || undefined,
    protectReads: options.protectReads ?? false,
    dashboard: options.dashboard ?? true,
    throttle,
  };
}
