import { Inject } from '@nestjs/common';
import { SYNC_CONFIG, SYNC_CONFLICT_RESOLVER } from './bidirectional-sync.constants';

/** Injects the validated `ResolvedSyncConfig`. @publicApi */
export const InjectSyncConfig = (): ParameterDecorator => Inject(SYNC_CONFIG);

/** Injects the custom `SyncConflictResolver`, if one is bound. @publicApi */
export const InjectConflictResolver = (): ParameterDecorator => Inject(SYNC_CONFLICT_RESOLVER);
