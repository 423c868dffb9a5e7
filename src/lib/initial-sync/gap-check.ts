/** `_sync_metadata` id of the pending check, written by the local re-scan once it is done. */
export function gapCheckId(instanceId: string): string {
  return `gap-deletes:${instanceId}`;
}

/** Emitted (in process) when a local re-scan finished: the Atlas listener reopens to run the check. */
export const LOCAL_RESCAN_DONE = 'bidirectional-sync.internal.local-rescan-done';
