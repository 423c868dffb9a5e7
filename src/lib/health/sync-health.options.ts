import type { HealthThresholds } from '../bidirectional-sync.service';
import { SyncConfigurationError } from '../errors/sync.errors';

/** Environment variables of the health thresholds (the specification's alerts). */
export const SYNC_HEALTH_ENV_VARIABLES: Record<keyof HealthThresholds, string> = {
  maxLagMs: 'SYNC_HEALTH_MAX_LAG_MS',
  maxDisconnectedMs: 'SYNC_HEALTH_MAX_DISCONNECTED_MS',
  maxConflictsPerHour: 'SYNC_HEALTH_MAX_CONFLICTS_PER_HOUR',
};

/** Options of `SyncHealthModule.forRoot()`. */
export interface SyncHealthModuleOptions {
  /**
   * Alert thresholds; unset ones keep the specification's defaults: lag 30000 ms
   * (`degraded`), change stream disconnected 300000 ms (`unhealthy`), 10 conflicts per
   * hour (`degraded`).
   */
  thresholds?: Partial<HealthThresholds>;
}

/**
 * Reads the thresholds from `SYNC_HEALTH_MAX_LAG_MS`, `SYNC_HEALTH_MAX_DISCONNECTED_MS`
 * and `SYNC_HEALTH_MAX_CONFLICTS_PER_HOUR`. Unset variables are left out; a value that
 * is not a positive integer throws.
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

/** Validates thresholds given in code (positive finite numbers). */
export function checkThresholds(thresholds: Partial<HealthThresholds> = {}): void {
  const bad = Object.entries(thresholds).filter(
    ([, v]) => v !== undefined && (typeof v !== 'number' || !Number.isFinite(v) || v <= 0),
  );
  if (bad.length)
    throw new SyncConfigurationError(
      bad.map(([k, v]) => `thresholds.${k} = ${JSON.stringify(v)}: must be a positive number`),
    );
}
