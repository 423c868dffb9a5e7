import type { SyncVersion } from '../common/hybrid-logical-clock';

/** Names of the events the module emits through `EventEmitter2`. @publicApi */
export const SyncEvents = {
  /** A change was applied on one side: `SyncChangeAppliedEvent`. */
  changeApplied: 'bidirectional-sync.change.applied',
  /** A conflict was resolved: `SyncConflictResolvedEvent`. */
  conflictResolved: 'bidirectional-sync.conflict.resolved',
  /** A change could not be applied or a component failed: `SyncErrorEvent`. */
  error: 'bidirectional-sync.error',
  /** A component started, stopped, connected or lost its connection: `SyncStateChangedEvent`. */
  stateChanged: 'bidirectional-sync.state.changed',
} as const;

export type SyncDirection = 'localToAtlas' | 'atlasToLocal';
export type SyncOperation = 'insert' | 'update' | 'replace' | 'delete';

export class SyncChangeAppliedEvent {
  constructor(
    readonly direction: SyncDirection,
    readonly collection: string,
    readonly documentId: unknown,
    readonly operation: SyncOperation,
    readonly version: SyncVersion,
    readonly origin: string,
  ) {}
}

export class SyncConflictResolvedEvent {
  constructor(
    readonly collection: string,
    readonly documentId: unknown,
    readonly localVersion: SyncVersion | undefined,
    readonly atlasVersion: SyncVersion | undefined,
    readonly winner: 'local' | 'atlas' | 'merged',
    readonly strategy: string,
  ) {}
}

export class SyncErrorEvent {
  constructor(
    readonly component: string,
    readonly message: string,
    readonly collection?: string,
    readonly documentId?: unknown,
  ) {}
}

export type SyncComponent = 'listener' | 'capture' | 'drainer' | 'sync';

export class SyncStateChangedEvent {
  constructor(
    readonly component: SyncComponent,
    readonly state: 'started' | 'stopped' | 'connected' | 'disconnected' | 'enabled' | 'disabled',
    readonly detail?: string,
  ) {}
}
