import type { CanActivate, Type } from '@nestjs/common';

/**
 * Options of `SyncApiModule.forRoot()`; `syncApiOptionsFromEnv()` reads them
 * from the environment.
 *
 * @publicApi
 */
export interface SyncApiModuleOptions {
  /**
   * Key required by `POST /toggle` (and by reads with `protectReads`), sent as
   * `x-api-key: <key>` or `Authorization: Bearer <key>`. Env `SYNC_API_KEY`.
   * Without a key, `POST /toggle` answers 403.
   */
  apiKey?: string;
  /** Require the key on the read endpoints too. Env `SYNC_API_PROTECT_READS`. Default false. */
  protectReads?: boolean;
  /**
   * Rate limit per client IP and endpoint: at most `limit` requests per `ttl`
   * ms, then 429. Env `SYNC_API_RATE_LIMIT` (default 100) and `SYNC_API_RATE_TTL` (default 60000).
   */
  throttle?: { ttl?: number; limit?: number };
  /**
   * Serve the operator dashboard at `GET /api/sync/bidirectional/dashboard/`
   * (a page with live state, lag and throughput charts, conflicts, dead
   * letters and the switch). Env `SYNC_API_DASHBOARD`. Default true; when
   * false its paths answer 404 and nothing is sampled.
   */
  dashboard?: boolean;
}

/** Extras of `SyncApiModule.forRoot()` / `forRootAsync()`. */
export interface SyncApiModuleExtras {
  /** A guard of the host that replaces the API key check on every endpoint (bound to `SYNC_API_GUARD`). */
  guard?: Type<CanActivate>;
}
