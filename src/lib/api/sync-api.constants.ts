/** Route prefix of the sync API (the specification's paths). */
export const SYNC_API_PREFIX = 'api/sync/bidirectional';

/** Path of the Prometheus text exposition, under the prefix. */
export const SYNC_API_PROMETHEUS_PATH = 'metrics/prometheus';

/** Header carrying the API key (`Authorization: Bearer <key>` works too). */
export const SYNC_API_KEY_HEADER = 'x-api-key';

/** Name of the API key security scheme in the OpenAPI document. */
export const SYNC_API_SECURITY_SCHEME = 'sync-api-key';

/** Injection token of the validated `ResolvedSyncApiConfig`. */
export const SYNC_API_CONFIG = Symbol('SYNC_API_CONFIG');

/**
 * Injection token of a guard the host provides instead of the API key check
 * (`SyncApiModule.forRoot({ guard })`, or a global provider of this token).
 * It then decides every request to the sync API, reads and writes.
 */
export const SYNC_API_GUARD = Symbol('SYNC_API_GUARD');
