import { Inject } from '@nestjs/common';
import {
  SYNC_CONFIG,
  SYNC_CONFLICT_RESOLVER,
  SYNC_LOCAL_CONNECTION,
} from './bidirectional-sync.constants';

/** Injects the validated `ResolvedSyncConfig` (token `SYNC_CONFIG`). @publicApi */
export const InjectSyncConfig = (): ParameterDecorator => Inject(SYNC_CONFIG);

/**
 * Injects the custom `SyncConflictResolver` (token `SYNC_CONFLICT_RESOLVER`);
 * pair it with `@Optional()` where none may be bound. @publicApi
 */
export const InjectSyncConflictResolver = (): ParameterDecorator => Inject(SYNC_CONFLICT_RESOLVER);

/** Injects the local Mongoose `Connection` the module applies changes through. @internal */
export const InjectSyncLocalConnection = (): ParameterDecorator => Inject(SYNC_LOCAL_CONNECTION);
