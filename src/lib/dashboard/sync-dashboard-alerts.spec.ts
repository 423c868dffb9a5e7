import { formatDuration, syncDashboardAlerts } from './sync-dashboard-alerts';

const thresholds = { maxLagMs: 30_000, maxDisconnectedMs: 300_000, maxConflictsPerHour: 10 };
const healthy = {
  health: 'healthy' as const,
  reasons: [],
  lagMs: { localToAtlas: 40, atlasToLocal: 25 },
  conflictsLastHour: 0,
  atlasListener: {
    running: true,
    connected: true,
    lastChange: null,
    reconnectAttempts: 0,
    disconnectedSince: null,
    lastError: null,
    resumeTokenAgeMs: 1000,
  },
  thresholds,
};
const NOW = Date.parse('2025-11-30T10:00:00Z');

describe('syncDashboardAlerts (the specification alerts)', () => {
  it('none while healthy and under every threshold (at the thresholds too)', () => {
    expect(syncDashboardAlerts(healthy, NOW)).toEqual([]);
    const atThresholds = {
      ...healthy,
      lagMs: { localToAtlas: 30_000, atlasToLocal: null },
      conflictsLastHour: 10,
      atlasListener: {
        ...healthy.atlasListener,
        disconnectedSince: new Date(NOW - 300_000).toISOString(),
      },
    };
    expect(syncDashboardAlerts(atThresholds, NOW)).toEqual([]);
  });

  it('lag over 30 s, per direction', () => {
    const alerts = syncDashboardAlerts(
      { ...healthy, lagMs: { localToAtlas: 31_000, atlasToLocal: 45_500 } },
      NOW,
    );
    expect(alerts.map((a) => [a.id, a.severity])).toEqual([
      ['lag', 'warning'],
      ['lag', 'warning'],
    ]);
    expect(alerts[1].message).toBe('High sync lag: Atlas → Local 45.5 s (alert above 30 s)');
  });

  it('sync down: the change stream disconnected for more than 5 minutes', () => {
    const since = new Date(NOW - 6 * 60_000).toISOString();
    const alerts = syncDashboardAlerts(
      {
        ...healthy,
        health: 'unhealthy',
        reasons: ['Atlas change stream disconnected for more than 300000 ms'],
        atlasListener: { ...healthy.atlasListener, connected: false, disconnectedSince: since },
      },
      NOW,
    );
    expect(alerts).toEqual([
      {
        id: 'down',
        severity: 'critical',
        message:
          'Sync down: the Atlas change stream has been disconnected for 6 min (alert above 5 min)',
      },
    ]);
  });

  it('more than 10 conflicts an hour', () => {
    expect(syncDashboardAlerts({ ...healthy, conflictsLastHour: 11 }, NOW)).toEqual([
      {
        id: 'conflicts',
        severity: 'warning',
        message: 'High conflict rate: 11 conflicts in the last hour (alert above 10)',
      },
    ]);
  });

  it('unhealthy for another reason still gets a banner', () => {
    const alerts = syncDashboardAlerts(
      { ...healthy, health: 'unhealthy', reasons: ['local capture is not running'] },
      NOW,
    );
    expect(alerts).toEqual([
      {
        id: 'unhealthy',
        severity: 'critical',
        message: 'Sync unhealthy: local capture is not running',
      },
    ]);
  });

  it.each([
    [850, '850 ms'],
    [31_200, '31.2 s'],
    [365_000, '6 min 5 s'],
    [7_380_000, '2 h 3 min'],
  ])('formatDuration(%d) = %s', (ms, text) => expect(formatDuration(ms)).toBe(text));
});
