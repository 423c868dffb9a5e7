import { DynamicModule, Module, Provider } from '@nestjs/common';
import { getConnectionToken } from '@nestjs/mongoose';
import { BidirectionalSyncService } from './bidirectional-sync.service';
import {
  SYNC_CONFIG,
  SYNC_CONFLICT_RESOLVER,
  SYNC_LOCAL_CONNECTION,
  SYNC_WALL_CLOCK,
} from './bidirectional-sync.constants';
import {
  ConfigurableBidirectionalSyncModule,
  SYNC_ASYNC_OPTIONS_TYPE,
  SYNC_MODULE_OPTIONS,
  SYNC_OPTIONS_TYPE,
} from './bidirectional-sync.module-definition';
import { CaptureModeService } from './capture/capture-mode.service';
import { DirtyMarkerCaptureService } from './capture/dirty-marker-capture.service';
import { LocalChangeCaptureService } from './capture/local-change-capture.service';
import { ResolvedSyncConfig, resolveSyncConfig } from './config/sync-config';
import { LeaseRepository } from './lease/lease.repository';
import { LeaseOptions, LeaseService, SYNC_LEASE_OPTIONS } from './lease/lease.service';
import type { BidirectionalSyncModuleOptions } from './config/sync-options.interface';
import { ConflictResolverService } from './conflict/conflict-resolver.service';
import { ConflictRepository } from './conflict/conflict.repository';
import { GapDeletesService } from './initial-sync/gap-deletes.service';
import { LocalRescanService } from './initial-sync/local-rescan.service';
import { ForgottenDeletesService } from './initial-sync/forgotten-deletes.service';
import { RebaselineService } from './initial-sync/rebaseline.service';
import { AtlasRebaselineReader } from './initial-sync/atlas-rebaseline-reader';
import { AtlasRebaselineSource } from './initial-sync/rebaseline-source';
import { ListenerService } from './listener/listener.service';
import { SyncMetadataRepository } from './metadata/sync-metadata.repository';
import { SyncStoresService } from './metadata/sync-stores.service';
import { MonitorService } from './monitor/monitor.service';
import { OriginTrackerService } from './origin/origin-tracker.service';
import { OutboxDrainerService } from './outbox/outbox-drainer.service';
import { OutboxRepository } from './outbox/outbox.repository';
import { TombstoneRepository } from './outbox/tombstone.repository';
import { AtlasPushApplier } from './outbox/atlas-push-applier.service';
import { AtlasDirectWriteAdopter } from './processor/atlas-direct-write-adopter.service';
import { ChangeProcessorService } from './processor/change-processor.service';
import { DeadLetterService } from './processor/dead-letter.service';
import { LocalApplierService } from './processor/local-applier.service';
import { LocalResolutionWriter } from './processor/local-resolution-writer.service';
import { ResumeTokenRepository } from './resume-token/resume-token.repository';
import { SyncEngine } from './sync-engine';
import { FLEET_CONFIG } from './fleet/fleet.constants';
import { resolveFleetConfig } from './fleet/fleet-config';
import type { FleetModuleOptions } from './fleet/fleet-options.interface';
import { NatsConnectionService } from './fleet/nats-connection.service';
import { FleetChangeConsumer } from './fleet/device/fleet-change-consumer.service';
import { FleetPositionRepository } from './fleet/device/fleet-position.repository';
import { NatsPushSink } from './fleet/device/nats-push-sink';
import { NatsRebaselineSource } from './fleet/device/nats-rebaseline-source';
import { SYNC_REBASELINE_SOURCE } from './initial-sync/rebaseline-source';
import { SYNC_PUSH_SINK } from './outbox/push-sink';
import { SYNC_PULL_SOURCE } from './listener/pull-source';

const SERVICES = [
  SyncStoresService,
  SyncMetadataRepository,
  ResumeTokenRepository,
  OriginTrackerService,
  OutboxRepository,
  TombstoneRepository,
  ConflictRepository,
  ConflictResolverService,
  MonitorService,
  LocalChangeCaptureService,
  DirtyMarkerCaptureService,
  CaptureModeService,
  AtlasPushApplier,
  OutboxDrainerService,
  DeadLetterService,
  AtlasDirectWriteAdopter,
  LocalApplierService,
  LocalResolutionWriter,
  ChangeProcessorService,
  ForgottenDeletesService,
  AtlasRebaselineReader,
  AtlasRebaselineSource,
  RebaselineService,
  LocalRescanService,
  GapDeletesService,
  ListenerService,
  BidirectionalSyncService,
];

/** At least this many renewals fit in one lease TTL, so one late renewal never loses the lease. */
const LEASE_RENEWALS_PER_TTL = 3;

/** Services other modules may inject. */
const EXPORTED = [
  SYNC_CONFIG,
  BidirectionalSyncService,
  ListenerService,
  ChangeProcessorService,
  OriginTrackerService,
  ConflictResolverService,
  MonitorService,
  ResumeTokenRepository,
  OutboxRepository,
  OutboxDrainerService,
  LocalChangeCaptureService,
  RebaselineService,
  SyncStoresService,
  LeaseService,
  // The fleet relay's shared paths (not in the package's public API).
  AtlasPushApplier,
  AtlasDirectWriteAdopter,
  AtlasRebaselineReader,
];

/** Holds the engine's providers; built by `BidirectionalSyncModule.forRoot()`. @internal */
@Module({})
export class BidirectionalSyncCoreModule {}

/** Provides `SyncEngine`, and only it, application-wide. @internal */
@Module({})
export class SyncEngineModule {}

/**
 * Keeps the host's local MongoDB and a shared Atlas cluster in sync in both
 * directions. The host owns its Mongoose connection (`MongooseModule.forRoot`)
 * and the global `ScheduleModule.forRoot()` and `EventEmitterModule.forRoot()`.
 *
 * @publicApi
 */
@Module({})
export class BidirectionalSyncModule extends ConfigurableBidirectionalSyncModule {
  static forRoot(options: typeof SYNC_OPTIONS_TYPE): DynamicModule {
    return BidirectionalSyncModule.assemble(super.forRoot(options), options);
  }

  static forRootAsync(options: typeof SYNC_ASYNC_OPTIONS_TYPE): DynamicModule {
    return BidirectionalSyncModule.assemble(super.forRootAsync(options), options);
  }

  /**
   * The engine lives in a core module (with the options provider, the async
   * imports and `isGlobal`); `SyncEngineModule` imports that same core and
   * makes `SyncEngine` visible to `SyncHealthModule` and `SyncApiModule`.
   */
  private static assemble(
    definition: DynamicModule,
    extras: {
      localConnectionName?: string;
      conflictResolver?: (typeof SYNC_OPTIONS_TYPE)['conflictResolver'];
      fleet?: FleetModuleOptions;
    },
  ): DynamicModule {
    const fleet = extras.fleet?.transport === 'nats' ? fleetDeviceProviders(extras.fleet) : [];
    const providers: Provider[] = [
      {
        provide: SYNC_CONFIG,
        useFactory: (options: BidirectionalSyncModuleOptions) =>
          resolveSyncConfig(stripExtras(options), { fleetDevice: fleet.length > 0 }),
        inject: [SYNC_MODULE_OPTIONS],
      },
      {
        provide: SYNC_LOCAL_CONNECTION,
        useExisting: getConnectionToken(extras.localConnectionName),
      },
      { provide: SYNC_WALL_CLOCK, useValue: Date.now },
      {
        provide: SYNC_LEASE_OPTIONS,
        useFactory: (config: ResolvedSyncConfig): LeaseOptions => ({
          leaseTtl: config.leaseTtl,
          renewInterval: Math.min(
            config.leaseRenewInterval,
            Math.floor(config.leaseTtl / LEASE_RENEWALS_PER_TTL),
          ),
        }),
        inject: [SYNC_CONFIG],
      },
      LeaseRepository,
      LeaseService,
      ...(extras.conflictResolver
        ? [{ provide: SYNC_CONFLICT_RESOLVER, useClass: extras.conflictResolver }]
        : []),
      ...SERVICES,
      ...fleet,
    ];
    const core: DynamicModule = {
      ...definition,
      module: BidirectionalSyncCoreModule,
      providers: [...(definition.providers ?? []), ...providers],
      exports: [
        ...(definition.exports ?? []),
        ...EXPORTED,
        ...(fleet.length ? FLEET_DEVICE_EXPORTS : []),
      ],
    };
    const engine: DynamicModule = {
      module: SyncEngineModule,
      global: true,
      imports: [core],
      providers: [SyncEngine],
      exports: [SyncEngine],
    };
    return { module: BidirectionalSyncModule, imports: [core, engine], exports: [core] };
  }
}

const FLEET_DEVICE_EXPORTS = [FLEET_CONFIG, NatsConnectionService, FleetChangeConsumer];

/**
 * A device in fleet mode: the NATS connection, the drainer's sink (publish, acknowledged on
 * the PubAck), the listener's source (the changes stream) and the re-baseline's source (the
 * relays over request/reply), bound to the engine's seams.
 */
function fleetDeviceProviders(options: FleetModuleOptions): Provider[] {
  return [
    {
      provide: FLEET_CONFIG,
      useFactory: (config: ResolvedSyncConfig) =>
        resolveFleetConfig({
          ...options,
          role: 'device',
          deviceId: options.deviceId ?? config.instanceId,
        }),
      inject: [SYNC_CONFIG],
    },
    NatsConnectionService,
    FleetPositionRepository,
    FleetChangeConsumer,
    NatsPushSink,
    { provide: SYNC_PUSH_SINK, useExisting: NatsPushSink },
    { provide: SYNC_PULL_SOURCE, useExisting: FleetChangeConsumer },
    NatsRebaselineSource,
    { provide: SYNC_REBASELINE_SOURCE, useExisting: NatsRebaselineSource },
  ];
}

/** Module options as given may carry the extras (`isGlobal`, ...); they are not sync options. */
function stripExtras(options: BidirectionalSyncModuleOptions): BidirectionalSyncModuleOptions {
  const {
    isGlobal: _g,
    localConnectionName: _c,
    conflictResolver: _r,
    fleet: _f,
    ...rest
  } = options as BidirectionalSyncModuleOptions & Record<string, unknown>;
  return rest as BidirectionalSyncModuleOptions;
}
