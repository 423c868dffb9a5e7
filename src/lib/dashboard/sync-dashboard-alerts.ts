import type { BidirectionalHealth, HealthThresholds } from '../bidirectional-sync.service';

/** One of the specification's alerts, as the dashboard shows it (a banner). */
export interface SyncDashboardAlert {
  /** `lag` (over `maxLagMs`), `down` (stream disconnected over `maxDisconnectedMs`), `conflicts` (over `maxConflictsPerHour`), `unhealthy` (any other reason). */
  id: 'lag' | 'down' | 'conflicts' | 'unhealthy';
  severity: 'warning' | 'critical';
  message: string;
}

type HealthForAlerts = Pick<
  BidirectionalHealth,
  'lagMs' | 'atlasListener' | 'conflictsLastHour' | 'health' | 'reasons'
> & { thresholds: HealthThresholds };

const DIRECTION_NAMES = { localToAtlas: 'Local → Atlas', atlasToLocal: 'Atlas → Local' } as const;

/**
 * The specification's recommended alerts, evaluated on a health report with
 * its thresholds: sync lag over 30 s, the change stream disconnected for more
 * than 5 minutes, more than 10 conflicts in an hour (defaults; configurable
 * with `SYNC_HEALTH_MAX_*`). An `unhealthy` state with another cause is
 * reported too, so a red health never goes without a banner.
 */
export function syncDashboardAlerts(
  health: HealthForAlerts,
  now = Date.now(),
): SyncDashboardAlert[] {
  const alerts: SyncDashboardAlert[] = [];
  const { maxLagMs, maxDisconnectedMs, maxConflictsPerHour } = health.thresholds;
  for (const direction of ['localToAtlas', 'atlasToLocal'] as const) {
    const lag = health.lagMs[direction];
    if (lag !== null && lag > maxLagMs)
      alerts.push({
        id: 'lag',
        severity: 'warning',
        message: `High sync lag: ${DIRECTION_NAMES[direction]} ${formatDuration(lag)} (alert above ${formatDuration(maxLagMs)})`,
      });
  }
  const since = health.atlasListener.disconnectedSince;
  const down = since ? now - Date.parse(since) : 0;
  if (down > maxDisconnectedMs)
    alerts.push({
      id: 'down',
      severity: 'critical',
      message: `Sync down: the Atlas change stream has been disconnected for ${formatDuration(down)} (alert above ${formatDuration(maxDisconnectedMs)})`,
    });
  if (health.conflictsLastHour > maxConflictsPerHour)
    alerts.push({
      id: 'conflicts',
      severity: 'warning',
      message: `High conflict rate: ${health.conflictsLastHour} conflicts in the last hour (alert above ${maxConflictsPerHour})`,
    });
  if (health.health === 'unhealthy' && !alerts.some((a) => a.id === 'down'))
    alerts.push({
      id: 'unhealthy',
      severity: 'critical',
      message: `Sync unhealthy: ${health.reasons.join('; ') || 'no reason given'}`,
    });
  return alerts;
}

/** 850 ms, 31.2 s, 6 min 5 s, 2 h 3 min. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(Math.round(ms / 100) / 10).toString()} s`;
  const totalSeconds = Math.round(ms / 1000);
  const hours = Math.floor(totalSeconds / 3600);
  const minutes = Math.floor((totalSeconds % 3600) / 60);
  const seconds = totalSeconds % 60;
  if (hours) return `${hours} h${minutes ? ` ${minutes} min` : ''}`;
  return `${minutes} min${seconds ? ` ${seconds} s` : ''}`;
}
