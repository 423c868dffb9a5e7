/** Path of the dashboard under the sync API prefix (`/api/sync/bidirectional/dashboard/`). */
export const SYNC_DASHBOARD_PATH = 'dashboard';

/** How often the dashboard's time series is sampled and its live stream updated (ms). */
export const SYNC_DASHBOARD_INTERVAL_MS = 1000;

/** How much history the charts show (ms): 15 minutes. */
export const SYNC_DASHBOARD_HISTORY_MS = 15 * 60_000;
