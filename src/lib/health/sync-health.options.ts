import { SyncConfigurationError } from '../errors/sync.errors';

/**
 * Alert thresholds of the health check (the specification's "Recommended
 * Alerts"). An option of `BidirectionalSyncModule.forRoot({ healthThresholds })`,
 * read-only once the module is built.
 *
 * @publicApi
 */
export interface HealthThresholds {
  /** Lag of either direction above this (ms) makes health `degraded`. Env `SYNC_HEALTH_MAX_LAG_MS`. Default 30000. */
  maxLagMs: number;
  /** The Atlas change stream disconnected longer than this (ms) makes health `unhealthy`. Env `SYNC_HEALTH_MAX_DISCONNECTED_MS`. Default 300000. */
  maxDisconnectedMs: number;
  /** More conflicts than this in the last hour make health `degraded`. Env `SYNC_HEALTH_MAX_CONFLICTS_PER_HOUR`. Default 10. */
  maxConflictsPerHour: number;
}

/** The specification's alert values. */
export const DEFAULT_HEALTH_THRESHOLDS: Readonly<HealthThresholds> = Object.freeze({
  maxLagMs: 30_000,
  maxDisconnectedMs: 5 * 60_000,
  maxConflictsPerHour: 10,
});

/** Environment variables of the health thresholds. */
export const SYNC_HEALTH_ENV_VARIABLES: Record<keyof HealthThresholds, string> = {
  maxLagMs: 'SYNC_HEALTH_MAX_LAG_MS',
  maxDisconnectedMs: 'SYNC_HEALTH_MAX_DISCONNECTED_MS',
  maxConflictsPerHour: 'SYNC_HEALTH_MAX_CONFLICTS_PER_HOUR',
};

/**
 * Reads the thresholds from `SYNC_HEALTH_MAX_LAG_MS`, `SYNC_HEALTH_MAX_DISCONNECTED_MS`
 * and `SYNC_HEALTH_MAX_CONFLICTS_PER_HOUR` (`syncOptionsFromEnv()` does it too). Unset
 * variables are left out; a value that is not a positive integer throws
 * `SyncConfigurationError` naming the variable.
 *
 * @publicApi
 */
export function syncHealthThresholdsFromEnv(
  env: NodeJS.ProcessEnv = process.env,
): Partial<HealthThresholds> {
  const thresholds: Partial<HealthThresholds> = {};
  const problems: string[] = [];
  for (const [key, variable] of Object.entries(SYNC_HEALTH_ENV_VARIABLES)) {
    const raw = env[variable]?.trim();
    if (!raw) continue;
    if (!/^\d+$/.test(raw) || Number(raw) <= 0) {
      problems.push(`${variable} = ${JSON.stringify(raw)}: must be a positive integer`);
      continue;
    }
    thresholds[key as keyof HealthThresholds] = Number(raw);
  }
  if (problems.length) throw new SyncConfigurationError(problems);
  return thresholds;
}

/**
 * What is wrong with thresholds given in code (each must be a positive finite
 * number; unknown keys are refused), one line per problem naming the option and its variable.
 */
export function healthThresholdProblems(thresholds: unknown, label = 'healthThresholds'): string[] {
  if (thresholds === undefined) return [];
  if (!thresholds || typeof thresholds !== 'object' || Array.isArray(thresholds))
    return [`${label} = ${JSON.stringify(thresholds)}: must be an object`];
  const problems: string[] = [];
  for (const [key, value] of Object.entries(thresholds)) {
    const variable = SYNC_HEALTH_ENV_VARIABLES[key as keyof HealthThresholds];
    if (!variable) {
      problems.push(`${label}.${key}: unknown threshold`);
      continue;
    }
    if (value === undefined) continue;
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0)
      problems.push(
        `${label}.${key} (${variable}) = ${JSON.stringify(value)}: must be a positive number`,
      );
  }
  return problems;
}

/** The defaults with the given (set) thresholds over them, frozen. */
export function resolveHealthThresholds(
  thresholds: Partial<HealthThresholds> = {},
): Readonly<HealthThresholds> {
  const given = Object.entries(thresholds).filter(([, v]) => v !== undefined);
  return Object.freeze({ ...DEFAULT_HEALTH_THRESHOLDS, ...Object.fromEntries(given) });
}
