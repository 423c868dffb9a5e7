import { ConfigurableModuleBuilder } from '@nestjs/common';
import { SYNC_API_GUARD } from './sync-api.constants';
import type { SyncApiModuleExtras, SyncApiModuleOptions } from './sync-api-options.interface';

export const {
  ConfigurableModuleClass: ConfigurableSyncApiModule,
  MODULE_OPTIONS_TOKEN: SYNC_API_OPTIONS,
  OPTIONS_TYPE: SYNC_API_OPTIONS_TYPE,
  ASYNC_OPTIONS_TYPE: SYNC_API_ASYNC_OPTIONS_TYPE,
} = new ConfigurableModuleBuilder<SyncApiModuleOptions>({ moduleName: 'SyncApi' })
  .setClassMethodName('forRoot')
  .setExtras<SyncApiModuleExtras>({ guard: undefined }, (definition, extras) => ({
    ...definition,
    providers: [
      ...(definition.providers ?? []),
      ...(extras.guard ? [{ provide: SYNC_API_GUARD, useClass: extras.guard }] : []),
    ],
  }))
  .build();
