import { Reflector } from '@nestjs/core';

/** What an endpoint does: `read` endpoints are open unless `protectReads`; `write` ones need the key. */
export type SyncApiAccessLevel = 'read' | 'write';

/** Marks an endpoint as `read` or `write` for `SyncApiKeyGuard` (unmarked endpoints count as `write`). */
export const SyncApiAccess = Reflector.createDecorator<SyncApiAccessLevel>();
