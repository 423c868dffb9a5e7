import * as api from './index';

/**
 * The package root is the public contract: adding a name here is a decision
 * (README "Using the module"), removing one is a breaking change with a
 * migration line in the README.
 */
describe('public API (src/lib/index.ts)', () => {
  it('exports exactly the documented runtime names', () => {
    expect(Object.keys(api).sort()).toEqual(
      [
        // modules, configuration, tokens and decorators
        'BidirectionalSyncModule',
        'SyncApiModule',
        'SyncHealthModule',
        'ResolvedSyncConfig',
        'syncOptionsFromEnv',
        'syncApiOptionsFromEnv',
        'syncHealthThresholdsFromEnv',
        'SYNC_CONFIG',
        'InjectSyncConfig',
        'SYNC_CONFLICT_RESOLVER',
        'InjectSyncConflictResolver',
        'SYNC_API_GUARD',
        'SYNC_API_KEY_HEADER',
        'SYNC_API_PREFIX',
        'SYNC_API_SECURITY_SCHEME',
        'SYNC_COLLECTIONS',
        'SYNC_STAMP_FIELD',
        // the specification's components
        'BidirectionalSyncService',
        'ListenerService',
        'ChangeProcessorService',
        'OriginTrackerService',
        'ConflictResolverService',
        'MonitorService',
        'ResumeTokenRepository',
        'OutboxRepository',
        'OutboxDrainerService',
        // health, metrics, capture plugin, conflicts
        'SyncHealthIndicator',
        'SyncPrometheusService',
        'syncCapturePlugin',
        'compareVersions',
        // events and errors
        'SyncEvents',
        'SyncChangeAppliedEvent',
        'SyncConflictResolvedEvent',
        'SyncErrorEvent',
        'SyncStateChangedEvent',
        'SyncError',
        'SyncConfigurationError',
        'InvalidChangeError',
        'SyncCaptureError',
      ].sort(),
    );
  });

  it('pairs each public injection token with its decorator', () => {
    const injected = (decorator: () => ParameterDecorator): unknown => {
      class Target {
        constructor(_value: unknown) {}
      }
      decorator()(Target, undefined, 0);
      return Reflect.getMetadata('self:paramtypes', Target)?.[0]?.param;
    };
    expect(injected(api.InjectSyncConfig)).toBe(api.SYNC_CONFIG);
    expect(injected(api.InjectSyncConflictResolver)).toBe(api.SYNC_CONFLICT_RESOLVER);
  });
});
