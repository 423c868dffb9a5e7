import { SyncConfigurationError } from '../errors/sync.errors';
import { resolveSyncConfig, syncOptionsFromEnv } from './sync-config';

describe('sync configuration', () => {
  it('fills the documented defaults', () => {
    const config = resolveSyncConfig({ atlasUri: 'mongodb://atlas.example/db' });
    expect(config).toMatchObject({
      enabled: false,
      changeStreamBatchSize: 100,
      excludedCollections: ['sessions', 'logs', 'notifications'],
      conflictResolutionStrategy: 'last-write-wins',
      reconnectInterval: 5000,
      maxReconnectAttempts: 10,
      localCapture: 'auto',
    });
    expect(config.pullsCollection('menuitems')).toBe(true);
    expect(config.pullsCollection('logs')).toBe(false);
    expect(config.pushesCollection('logs')).toBe(true);
    expect(config.pushesCollection('_sync_outbox')).toBe(false);
  });

  it('reads the specification variables from the environment', () => {
    const options = syncOptionsFromEnv({
      ATLAS_MONGODB_URI: 'mongodb+srv://u:p@cluster.example/db',
      BIDIRECTIONAL_SYNC_ENABLED: 'true',
      ATLAS_CHANGE_STREAM_BATCH_SIZE: '250',
      BIDIRECTIONAL_EXCLUDED_COLLECTIONS: 'sessions, audit',
      CONFLICT_RESOLUTION_STRATEGY: 'field-level',
      SYNC_LOCAL_CAPTURE: ' mongoose-plugin ',
    });
    expect(resolveSyncConfig(options)).toMatchObject({
      enabled: true,
      changeStreamBatchSize: 250,
      excludedCollections: ['sessions', 'audit'],
      conflictResolutionStrategy: 'field-level',
      localCapture: 'mongoose-plugin',
    });
  });

  it('names the variable of each bad value and never prints the URI', () => {
    const attempt = () =>
      resolveSyncConfig(
        syncOptionsFromEnv({
          ATLAS_MONGODB_URI: 'http://user:secret@host',
          ATLAS_CHANGE_STREAM_BATCH_SIZE: 'lots',
          CONFLICT_RESOLUTION_STRATEGY: 'newest',
          SYNC_LOCAL_CAPTURE: 'oplog',
        }),
      );
    expect(attempt).toThrow(SyncConfigurationError);
    try {
      attempt();
    } catch (err) {
      const message = (err as Error).message;
      expect(message).toContain('ATLAS_CHANGE_STREAM_BATCH_SIZE');
      expect(message).toContain('CONFLICT_RESOLUTION_STRATEGY');
      expect(message).toContain('SYNC_LOCAL_CAPTURE');
      expect(message).toContain('ATLAS_MONGODB_URI');
      expect(message).not.toContain('secret');
    }
  });

  it('fills the health thresholds from the defaults, reads SYNC_HEALTH_* and keeps them read-only', () => {
    const defaults = resolveSyncConfig({ atlasUri: 'mongodb://atlas.example/db' });
    expect(defaults.healthThresholds).toEqual({
      maxLagMs: 30_000,
      maxDisconnectedMs: 300_000,
      maxConflictsPerHour: 10,
    });
    const config = resolveSyncConfig(
      syncOptionsFromEnv(
        { SYNC_HEALTH_MAX_LAG_MS: '5000', SYNC_HEALTH_MAX_CONFLICTS_PER_HOUR: ' 3 ' },
        { atlasUri: 'mongodb://atlas.example/db' },
      ),
    );
    expect(config.healthThresholds).toEqual({
      maxLagMs: 5000,
      maxDisconnectedMs: 300_000,
      maxConflictsPerHour: 3,
    });
    expect(Object.isFrozen(config.healthThresholds)).toBe(true);
    expect(() => {
      (config.healthThresholds as { maxLagMs: number }).maxLagMs = 1;
    }).toThrow(TypeError);
  });

  it('names the variable of a bad health threshold', () => {
    expect(() =>
      resolveSyncConfig(
        syncOptionsFromEnv(
          { SYNC_HEALTH_MAX_DISCONNECTED_MS: 'soon' },
          { atlasUri: 'mongodb://atlas.example/db' },
        ),
      ),
    ).toThrow(/healthThresholds\.maxDisconnectedMs \(SYNC_HEALTH_MAX_DISCONNECTED_MS\) = "soon"/);
    expect(() =>
      resolveSyncConfig({
        atlasUri: 'mongodb://atlas.example/db',
        healthThresholds: { maxLagMs: -1 },
      }),
    ).toThrow(
      /healthThresholds\.maxLagMs \(SYNC_HEALTH_MAX_LAG_MS\) = -1: must be a positive number/,
    );
  });

  it('requires atlasUri in direct mode only, with a message naming the variable and fleet mode', () => {
    let message = '';
    try {
      resolveSyncConfig({});
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/atlasUri \(ATLAS_MONGODB_URI\) is required in direct mode/);
    expect(message).toMatch(/SYNC_TRANSPORT=nats/);
    const fleet = resolveSyncConfig({ atlasDbName: 'shop' }, { fleetDevice: true });
    expect(fleet.atlasUri).toBeUndefined();
    // A given URI is still checked.
    expect(() => resolveSyncConfig({ atlasUri: 'http://x' }, { fleetDevice: true })).toThrow(
      /atlasUri \(ATLAS_MONGODB_URI\) = <redacted>/,
    );
  });
});
