import { Reflector } from '@nestjs/core';

/**
 * What an endpoint does: `read` endpoints are open unless `protectReads`;
 * `write` ones need the key; `public` ones (the dashboard's page and static
 * files, which hold no data) are open to the API key check, so a browser can
 * load the page and then send the key with its requests.
 */
export type SyncApiAccessLevel = 'public' | 'read' | 'write';

/** Marks an endpoint as `read` or `write` for `SyncApiKeyGuard` (unmarked endpoints count as `write`). */
export const SyncApiAccess = Reflector.createDecorator<SyncApiAccessLevel>();
