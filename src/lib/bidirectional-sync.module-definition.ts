import { ConfigurableModuleBuilder, Type } from '@nestjs/common';
import type {
  BidirectionalSyncModuleExtras,
  BidirectionalSyncModuleOptions,
} from './config/sync-options.interface';
import type { SyncConflictResolver } from './conflict/conflict-resolver.interface';
import type { FleetModuleOptions } from './fleet/fleet-options.interface';

export interface BidirectionalSyncExtras extends BidirectionalSyncModuleExtras {
  /** Class of a custom conflict resolver (`CONFLICT_RESOLUTION_STRATEGY=custom`), bound to `SYNC_CONFLICT_RESOLVER`. */
  conflictResolver?: Type<SyncConflictResolver>;
  /**
   * Fleet mode (`fleetOptionsFromEnv()`): with `transport: 'nats'` the drainer publishes to
   * JetStream and the listener consumes the changes stream, instead of talking to Atlas.
   * Default: direct mode. `deviceId` defaults to the instance id.
   */
  fleet?: FleetModuleOptions;
}

export const {
  ConfigurableModuleClass: ConfigurableBidirectionalSyncModule,
  MODULE_OPTIONS_TOKEN: SYNC_MODULE_OPTIONS,
  OPTIONS_TYPE: SYNC_OPTIONS_TYPE,
  ASYNC_OPTIONS_TYPE: SYNC_ASYNC_OPTIONS_TYPE,
} = new ConfigurableModuleBuilder<BidirectionalSyncModuleOptions>({
  moduleName: 'BidirectionalSync',
})
  .setClassMethodName('forRoot')
  .setExtras<BidirectionalSyncExtras>({ isGlobal: false }, (definition, extras) => ({
    ...definition,
    global: extras.isGlobal,
  }))
  .build();
