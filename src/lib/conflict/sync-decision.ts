import type { Document } from 'mongodb';
import {
  compareVersions,
  maxVersion,
  SyncVersion,
  versionTime,
} from '../common/hybrid-logical-clock';
import { SyncStamp, withoutStamp } from '../common/sync-stamp';
import type { ConflictResolutionStrategy } from '../config/sync-options.interface';
import type { ConflictContext, ConflictResolution } from './conflict-resolver.interface';
import { mergeFieldLevel } from './field-level-merge';

/** Who won a conflict, as conflict records name it (local device vs Atlas). */
export type ConflictWinner = 'local' | 'atlas' | 'merged';

/** A concurrent edit the decision resolved: what the conflict record says. */
export interface ConflictNote {
  winner: ConflictWinner;
  localVersion?: SyncVersion;
  atlasVersion?: SyncVersion;
}

/** Issues versions for states the decision creates (the device's hybrid logical clock). */
export interface VersionSource {
  /** A new version strictly after `version` and everything seen. */
  tickAfter(version: SyncVersion | undefined): SyncVersion;
}

/**
 * Pushing one outbox entry to Atlas: the local edit (its state, version and
 * the version it was made on) against what Atlas holds now.
 */
export interface PushCase {
  direction: 'push';
  local: {
    /** The pushed state (with its stamp), `null` for a delete. */
    doc: Document | null;
    version: SyncVersion;
    /** The version the edit was made on; absent when unknown (a delete, a host replace). */
    base?: SyncVersion | null;
    /** When the host made the edit (the local server's clock), if known. */
    writtenAt?: Date;
  };
  /** Atlas's document (maybe unstamped) or tombstone. */
  atlas: { exists: boolean; doc?: Document; version?: SyncVersion; origin?: string };
}

/**
 * Applying one Atlas state locally: the incoming state against the local
 * document (or tombstone) and this device's unpushed edit of it, if any.
 */
export interface PullCase {
  direction: 'pull';
  /** The incoming state (with its stamp in `doc`), `doc: null` for a delete. */
  atlas: { doc: Document | null; stamp: SyncStamp };
  local: {
    doc?: Document;
    /** Stamp of the local document, or of its tombstone. */
    stamp?: SyncStamp;
    /** This device's edit not pushed yet (the outbox entry). */
    pending?: { v: SyncVersion; base?: SyncVersion | null };
  };
}

export interface DecisionInput {
  strategy: ConflictResolutionStrategy;
  /** This device's instance id (origin of the states it writes). */
  instanceId: string;
  clock: VersionSource;
  /** The custom resolver's answer, once asked (see the `resolve` decision). */
  resolution?: ConflictResolution;
  collection: string;
  documentId: unknown;
  change: PushCase | PullCase;
}

/**
 * What to do with one document. The receiving side is Atlas for a push and
 * the local database for a pull.
 * - `keep`: the receiver keeps what it holds (the change is stale, or lost a conflict);
 * - `take`: the receiver writes `doc` (`null`: deletes) under `stamp`: the
 *   change itself, or a field-level merge that the sender already holds the
 *   newer fields of;
 * - `rewrite`: a new state, newer than both sides, that both must hold (a
 *   custom resolver's choice, a merge issued under a new version);
 * - `resolve`: ask the custom resolver with `context`, then decide again with its answer.
 * `conflict` names the winner when the edits were concurrent (it is recorded).
 * `dropsPending` (pull): the local unpushed edit lost and must not be pushed.
 */
export type SyncDecision =
  | { kind: 'keep'; conflict?: ConflictNote }
  | {
      kind: 'take';
      doc: Document | null;
      stamp: SyncStamp;
      conflict?: ConflictNote;
      dropsPending?: boolean;
    }
  | { kind: 'rewrite'; doc: Document | null; stamp: SyncStamp; conflict: ConflictNote }
  | { kind: 'resolve'; context: ConflictContext };

/**
 * The one place where a change meets the state it lands on: fast-forward,
 * stale, concurrent edits under each strategy, deletes (tombstones compete
 * by version like documents). Pure: everything it needs is in its input, so
 * both sync paths and the table-driven tests ask it the same way.
 */
export function decide(input: DecisionInput): SyncDecision {
  return input.change.direction === 'push'
    ? decidePush(input, input.change)
    : decidePull(input, input.change);
}

function decidePush(input: DecisionInput, { local, atlas }: PushCase): SyncDecision {
  const note = (winner: ConflictWinner): ConflictNote => ({
    winner,
    localVersion: local.version,
    atlasVersion: atlas.version,
  });
  const ours = (winner?: ConflictWinner): SyncDecision => ({
    kind: 'take',
    doc: local.doc,
    stamp: (local.doc && stampOf(local.doc)) || { v: local.version, o: input.instanceId },
    conflict: winner && note(winner),
  });
  const base = local.base ?? undefined;
  // A local delete does not know its base (no pre-image): plain last write wins.
  const unknownBase = local.doc === null && base === undefined;
  // Atlas holds a state this instance wrote: no other writer came in between,
  // whatever the base says (a host replace drops the stamp; a push replayed
  // after a crash carries a newer version of an edit Atlas already holds).
  const ownStateOnAtlas = atlas.origin === input.instanceId;
  // A delete without a base against another writer's state written after the host deleted
  // cannot have seen that state: they are concurrent, and whichever loses is a conflict
  // (a delete captured late, after a stop, gets a version newer than that state).
  const atlasTime = versionTime(atlas.version)?.getTime();
  const unseenByDelete =
    unknownBase &&
    atlas.exists &&
    !ownStateOnAtlas &&
    local.writtenAt !== undefined &&
    atlasTime !== undefined &&
    atlasTime > local.writtenAt.getTime();
  const localNewer = compareVersions(local.version, atlas.version) > 0;
  // An edit of a state Atlas no longer holds, nor remembers deleting (its
  // tombstone expired, or it was deleted without the module): the edit wins
  // over the forgotten delete, as a conflict.
  const forgottenDelete =
    !atlas.exists && atlas.version === undefined && base !== undefined && local.doc !== null;
  if (forgottenDelete && !ownStateOnAtlas) return ours('local');
  const fastForward =
    atlas.version === base ||
    (!atlas.exists && atlas.version === undefined) ||
    unknownBase ||
    ownStateOnAtlas;
  if (fastForward)
    return localNewer
      ? ours(unseenByDelete ? 'local' : undefined)
      : {
          kind: 'keep',
          conflict: (unknownBase && !unseenByDelete) || ownStateOnAtlas ? undefined : note('atlas'),
        };

  if (input.strategy === 'field-level' && local.doc && atlas.doc) {
    const atlasStamp = stampOf(atlas.doc) ?? { v: atlas.version ?? '', o: 'atlas' };
    const merged = mergeFieldLevel(
      { doc: local.doc, stamp: stampOf(local.doc)! },
      { doc: atlas.doc, stamp: atlasStamp },
    );
    const v = localNewer ? local.version : input.clock.tickAfter(atlas.version);
    const stamp: SyncStamp = { ...merged.stamp, v, o: input.instanceId };
    const doc = withoutStamp(merged.doc);
    return v === local.version
      ? { kind: 'take', doc, stamp, conflict: note('merged') }
      : { kind: 'rewrite', doc, stamp, conflict: note('merged') };
  }
  if (input.strategy === 'custom') {
    const context = conflictContext(
      input,
      { document: local.doc, version: local.version, origin: input.instanceId },
      { document: atlas.doc ?? null, version: atlas.version ?? '', origin: atlas.origin },
    );
    if (!input.resolution) return { kind: 'resolve', context };
    const winner = winnerOf(input.resolution);
    const atlasNewer = compareVersions(atlas.version, local.version) > 0;
    if (winner === 'atlas' && atlasNewer) return { kind: 'keep', conflict: note('atlas') };
    if (winner === 'local' && localNewer) return ours('local');
    // The choice is older than the other side: it wins under a new version.
    return rewriteChoice(input, input.resolution, local.doc, atlas.doc ?? null, note(winner), [
      local.version,
      atlas.version,
    ]);
  }
  // last-write-wins (and field-level against a delete): the newer version wins.
  return localNewer ? ours('local') : { kind: 'keep', conflict: note('atlas') };
}

function decidePull(input: DecisionInput, { atlas, local }: PullCase): SyncDecision {
  const deleting = atlas.doc === null;
  const localStamp = local.stamp;
  const pending = local.pending;

  if (input.strategy === 'field-level' && !deleting && local.doc && localStamp) {
    const merged = mergeFieldLevel(
      { doc: local.doc, stamp: localStamp },
      { doc: atlas.doc!, stamp: atlas.stamp },
    );
    if (sameStamp(merged.stamp, localStamp)) return { kind: 'keep' };
    return {
      kind: 'take',
      doc: withoutStamp(merged.doc),
      stamp: merged.stamp,
      conflict: pending
        ? { winner: 'merged', localVersion: localStamp.v, atlasVersion: atlas.stamp.v }
        : undefined,
    };
  }

  // Concurrent: this device holds an unpushed edit not based on the incoming state.
  const concurrent = !!pending && atlas.stamp.v !== pending.base && atlas.stamp.v !== pending.v;
  // An unpushed local edit counts even before its stamp reached the document.
  const localVersion = maxVersion(localStamp?.v, pending?.v);
  const atlasNewer = compareVersions(atlas.stamp.v, localVersion) > 0;
  const note = (winner: ConflictWinner, localV = pending?.v): ConflictNote => ({
    winner,
    localVersion: localV,
    atlasVersion: atlas.stamp.v,
  });
  const theirs = (winner?: ConflictWinner): SyncDecision => ({
    kind: 'take',
    doc: atlas.doc,
    stamp: atlas.stamp,
    conflict: winner && note(winner),
    dropsPending: winner ? true : undefined,
  });

  if (concurrent && input.strategy === 'custom') {
    const context = conflictContext(
      input,
      { document: local.doc ?? null, version: pending.v, origin: input.instanceId },
      { document: atlas.doc, version: atlas.stamp.v, origin: atlas.stamp.o },
    );
    if (!input.resolution) return { kind: 'resolve', context };
    const winner = winnerOf(input.resolution);
    if (winner === 'local' && !atlasNewer) return { kind: 'keep', conflict: note('local') };
    if (winner === 'atlas' && atlasNewer) return theirs('atlas');
    // The host's choice must win everywhere: a version newer than both.
    return rewriteChoice(input, input.resolution, local.doc ?? null, atlas.doc, note(winner), [
      atlas.stamp.v,
      pending.v,
    ]);
  }
  if (!atlasNewer)
    return { kind: 'keep', conflict: concurrent ? note('local', localVersion) : undefined };
  return theirs(concurrent ? 'atlas' : undefined);
}

function rewriteChoice(
  input: DecisionInput,
  resolution: ConflictResolution,
  localDoc: Document | null,
  atlasDoc: Document | null,
  conflict: ConflictNote,
  versions: (SyncVersion | undefined)[],
): SyncDecision {
  const winner = conflict.winner;
  const chosen =
    'merged' in resolution
      ? { ...resolution.merged, _id: input.documentId }
      : winner === 'local'
        ? localDoc
        : atlasDoc;
  const stamp: SyncStamp = {
    v: input.clock.tickAfter(maxVersion(...versions)),
    o: input.instanceId,
  };
  return {
    kind: 'rewrite',
    doc: chosen ? { ...withoutStamp(chosen), _id: input.documentId } : null,
    stamp,
    conflict,
  };
}

function conflictContext(
  input: DecisionInput,
  local: { document: Document | null; version: SyncVersion; origin: string },
  atlas: { document: Document | null; version: SyncVersion; origin?: string },
): ConflictContext {
  return {
    collection: input.collection,
    documentId: input.documentId,
    local: { ...local, document: local.document ? withoutStamp(local.document) : null },
    atlas: {
      document: atlas.document ? withoutStamp(atlas.document) : null,
      version: atlas.version,
      origin: atlas.origin ?? 'atlas',
    },
  };
}

function winnerOf(resolution: ConflictResolution): ConflictWinner {
  return 'merged' in resolution ? 'merged' : resolution.winner;
}

function stampOf(doc: Document): SyncStamp | undefined {
  const stamp = (doc as { _sync?: SyncStamp })._sync;
  return stamp && typeof stamp.v === 'string' ? stamp : undefined;
}

function sameStamp(a: SyncStamp, b: SyncStamp): boolean {
  return a.v === b.v && JSON.stringify(a.f ?? {}) === JSON.stringify(b.f ?? {});
}
