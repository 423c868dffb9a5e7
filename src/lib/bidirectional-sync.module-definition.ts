import { ConfigurableModuleBuilder, Type } from '@nestjs/common';
import type {
  BidirectionalSyncModuleExtras,
  BidirectionalSyncModuleOptions,
} from './config/sync-options.interface';
import type { SyncConflictResolver } from './conflict/conflict-resolver.interface';

export interface BidirectionalSyncExtras extends BidirectionalSyncModuleExtras {
  /** Class of a custom conflict resolver (`CONFLICT_RESOLUTION_STRATEGY=custom`), bound to `SYNC_CONFLICT_RESOLVER`. */
  conflictResolver?: Type<SyncConflictResolver>;
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
