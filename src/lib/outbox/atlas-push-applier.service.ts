import { Injectable } from '@nestjs/common';
import type { Document } from 'mongodb';
import { casFilter, issuedStamp, stamped, tombstoneOf } from '../common/engine-writes';
import { findByIds } from '../common/find-by-ids';
import { compareVersions, SyncVersion } from '../common/hybrid-logical-clock';
import { MONGO_ERROR_CODES } from '../common/mongo-error-codes';
import { idKey, readStamp, SyncStamp } from '../common/sync-stamp';
import { statementErrorsOf } from '../common/write-errors';
import { ConflictResolverService } from '../conflict/conflict-resolver.service';
import { ConflictNote, decide } from '../conflict/sync-decision';
import { redactMessage } from '../errors/sync.errors';
import { SyncStoresService } from '../metadata/sync-stores.service';
import { OriginTrackerService } from '../origin/origin-tracker.service';
import type { OutboxEntry } from './outbox.repository';
import { TombstoneRepository } from './tombstone.repository';

/** How one pushed entry ended: written (or found there), stale, or failed with a retry hint. */
export type PushOutcome = 'applied' | 'stale' | { error: string; retryMs?: number };

/** A local edit to push: what an outbox entry (or, later, a relayed message) carries. */
export type PushedEdit = Pick<OutboxEntry, 'c' | 'i' | 'op' | 'v' | 'doc' | 'base'> & {
  /** When the host made the edit (a captured change's event wall time), if known. */
  writtenAt?: Date;
  /** A queued edit's: when it entered the outbox (its write time, or no later). */
  enqueuedAt?: Date;
};

/** When the host made a pushed edit, as far as it is known (a queued edit: no later than its queueing). */
export function hostWriteTime(edit: PushedEdit): Date | undefined {
  return edit.writtenAt ?? edit.enqueuedAt;
}

/**
 * A resolution that made a new state (a resolver's choice, a merge under a
 * new version): the pushing device must hold it too.
 */
export interface ResolvedState {
  edit: PushedEdit;
  /** The new content (`null`: deleted) and its stamp. */
  doc: Document | null;
  stamp: SyncStamp;
}

/** What Atlas holds for a document: a document (maybe unstamped), a tombstone, or nothing. */
interface AtlasState {
  exists: boolean;
  doc?: Document;
  /** Version and origin of the document, or of its tombstone. */
  version?: SyncVersion;
  origin?: string;
}

interface PlannedWrite {
  edit: PushedEdit;
  atlas: AtlasState;
  doc: Document | null;
  version: SyncVersion;
}

/** Retry hint after losing a compare-and-set race on Atlas: soon, the next read decides again. */
const LOST_RACE_RETRY_MS = 100;

/**
 * Writes local edits to Atlas. Atlas's current versions are read first, each
 * edit meets them in `decide()` (fast-forward, stale, or concurrent under
 * the strategy), and every write is a compare-and-set on the exact version
 * read, so a race with another device is retried instead of overwriting.
 */
@Injectable()
export class AtlasPushApplier {
  constructor(
    private readonly stores: SyncStoresService,
    private readonly tombstones: TombstoneRepository,
    private readonly conflicts: ConflictResolverService,
    private readonly origin: OriginTrackerService,
  ) {}

  /**
   * Pushes one collection's edits and returns each edit's outcome.
   * `holdResolved` receives the new states a resolution made before they are
   * written to Atlas, so the pushing device holds them first (a crash in
   * between repeats the resolution; the reverse order could leave Atlas with
   * a state the device never hears of, since its own writes are not echoed).
   */
  async push<E extends PushedEdit>(
    collection: string,
    edits: E[],
    holdResolved: (resolved: ResolvedState[]) => Promise<void>,
  ): Promise<Map<E, PushOutcome>> {
    const outcomes = new Map<E, PushOutcome>();
    const rest = await this.fastForward(collection, edits, outcomes);
    if (rest.length) await this.readAndDecide(collection, rest, holdResolved, outcomes);
    return outcomes;
  }

  /**
   * The common case without reading Atlas first. An edit of the state Atlas
   * held when this device last synced the document (its base), or of a
   * document new to Atlas, is what `decide()` calls a fast-forward if Atlas
   * still holds that state; a compare-and-set on it makes sure it does (an
   * update never creates a document, so nothing deleted meanwhile comes
   * back). A new document whose id has a tombstone on Atlas is left to the
   * full path. Returns the edits this did not settle, for `readAndDecide`.
   */
  private async fastForward<E extends PushedEdit>(
    collection: string,
    edits: E[],
    outcomes: Map<E, PushOutcome>,
  ): Promise<E[]> {
    let planned: { edit: E; doc: Document }[] = [];
    const rest: E[] = [];
    for (const edit of edits) {
      const base = edit.base ?? undefined;
      const decision =
        edit.op === 'upsert' && edit.doc
          ? decide({
              strategy: this.conflicts.strategy,
              instanceId: this.origin.instanceId,
              clock: this.origin.clock,
              collection,
              documentId: edit.i,
              change: {
                direction: 'push',
                local: { doc: edit.doc, version: edit.v, base },
                atlas: { exists: base !== undefined, version: base },
              },
            })
          : undefined;
      if (decision?.kind === 'take' && !decision.conflict && decision.doc)
        planned.push({ edit, doc: stamped(decision.doc, edit.i, decision.stamp) });
      else rest.push(edit);
    }
    if (!planned.length) return rest;
    // A new document whose id Atlas holds a tombstone of is weighed against that delete.
    const created = planned.filter((p) => p.edit.base == null);
    if (created.length) {
      const tombs = await this.tombstones.find(
        this.stores.atlas,
        collection,
        created.map((p) => p.edit.i),
      );
      for (const p of created) if (tombs.has(idKey(p.edit.i))) rest.push(p.edit);
      planned = planned.filter((p) => p.edit.base != null || !tombs.has(idKey(p.edit.i)));
      if (!planned.length) return rest;
    }
    const coll = this.stores.atlas.collection(collection);
    let failures = new Map<number, { code: number; message: string }>();
    let landed = 0;
    try {
      const result = await coll.bulkWrite(
        planned.map(({ edit, doc }) => ({
          replaceOne: {
            filter: casFilter(edit.i, edit.base ?? undefined),
            replacement: doc,
            upsert: edit.base == null,
          },
        })),
        { ordered: false },
      );
      landed = result.matchedCount + result.upsertedCount;
    } catch (err) {
      failures = failuresOf(err);
    }
    // A compare-and-set that matched nothing raises no error: read back what landed.
    const now =
      landed === planned.length
        ? undefined
        : await findByIds(
            coll,
            planned.filter((_p, i) => !failures.has(i)).map((p) => p.edit.i),
          );
    planned.forEach(({ edit }, i) => {
      const failure = failures.get(i);
      if (failure && failure.code !== MONGO_ERROR_CODES.DuplicateKey)
        outcomes.set(edit, { error: redactMessage(failure.message) });
      else if (!failure && (!now || readStamp(now.get(idKey(edit.i)))?.v === edit.v))
        outcomes.set(edit, 'applied');
      else rest.push(edit); // Atlas holds another state (or a document with this new id)
    });
    return rest;
  }

  /** The full path: Atlas's current states are read and each edit is decided against its own. */
  private async readAndDecide<E extends PushedEdit>(
    collection: string,
    edits: E[],
    holdResolved: (resolved: ResolvedState[]) => Promise<void>,
    outcomes: Map<E, PushOutcome>,
  ): Promise<void> {
    const atlas = this.stores.atlas;
    const ids = edits.map((e) => e.i);
    const [docs, tombs] = await Promise.all([
      findByIds(atlas.collection(collection), ids),
      this.tombstones.find(atlas, collection, ids),
    ]);
    const writes: PlannedWrite[] = [];
    const resolved: ResolvedState[] = [];
    const conflicts: (ConflictNote & { documentId: unknown })[] = [];

    for (const edit of edits) {
      const key = idKey(edit.i);
      const atlasDoc = docs.get(key);
      const atlasStamp = atlasDoc ? readStamp(atlasDoc) : tombs.get(key)?._sync;
      const state: AtlasState = {
        exists: !!atlasDoc,
        doc: atlasDoc,
        version: atlasStamp?.v,
        origin: atlasStamp?.o,
      };
      if (state.version === edit.v) {
        outcomes.set(edit, 'applied'); // pushed before (a crash between push and acknowledge)
        continue;
      }
      const decision = await this.conflicts.decide({
        instanceId: this.origin.instanceId,
        clock: this.origin.clock,
        collection,
        documentId: edit.i,
        change: {
          direction: 'push',
          local: {
            doc: edit.op === 'delete' ? null : (edit.doc as Document),
            version: edit.v,
            base: edit.base,
            writtenAt: hostWriteTime(edit),
          },
          atlas: state,
        },
      });
      if (decision.conflict) conflicts.push({ ...decision.conflict, documentId: edit.i });
      if (decision.kind === 'keep') {
        outcomes.set(edit, 'stale');
        continue;
      }
      // A resolution or a merge is a new state: its stamp is issued here.
      const issued = decision.kind === 'rewrite' || decision.conflict?.winner === 'merged';
      const stamp =
        issued && decision.doc ? issuedStamp(decision.doc, edit.i, decision.stamp) : decision.stamp;
      const doc = decision.doc && stamped(decision.doc, edit.i, stamp);
      writes.push({ edit, atlas: state, doc, version: stamp.v });
      if (decision.kind === 'rewrite') resolved.push({ edit, doc, stamp });
    }
    await this.conflicts.logConflict(
      ...conflicts.map((c) => ({
        collection,
        documentId: c.documentId,
        localVersion: c.localVersion,
        atlasVersion: c.atlasVersion,
        winner: c.winner,
      })),
    );
    if (resolved.length) await holdResolved(resolved);
    await this.write(collection, writes, outcomes as Map<PushedEdit, PushOutcome>);
  }

  private async write(
    collection: string,
    writes: PlannedWrite[],
    outcomes: Map<PushedEdit, PushOutcome>,
  ): Promise<void> {
    const atlas = this.stores.atlas;
    const deletes = writes.filter((w) => w.doc === null);
    // Tombstones before deletes: devices learn the delete's version first.
    await this.tombstones.upsert(
      atlas,
      deletes.map((w) =>
        tombstoneOf(collection, w.edit.i, { v: w.version, o: this.origin.instanceId }),
      ),
    );
    const upserts = writes.filter((w) => w.doc !== null);
    const failures = await bulkFailures(
      upserts.length
        ? atlas.collection(collection).bulkWrite(
            upserts.map((w) => ({
              replaceOne: {
                filter: exactly(w.edit.i, w.atlas),
                replacement: w.doc as Document,
                upsert: true,
              },
            })),
            { ordered: false },
          )
        : Promise.resolve(),
    );
    upserts.forEach((w, i) => {
      const failure = failures.get(i);
      if (!failure) outcomes.set(w.edit, 'applied');
      else if (failure.code === MONGO_ERROR_CODES.DuplicateKey)
        outcomes.set(w.edit, {
          error: 'Atlas changed while pushing; retrying',
          retryMs: LOST_RACE_RETRY_MS,
        });
      else outcomes.set(w.edit, { error: redactMessage(failure.message) });
    });
    for (const w of deletes) {
      const result = await atlas.collection(collection).deleteOne(exactly(w.edit.i, w.atlas));
      outcomes.set(
        w.edit,
        result.deletedCount || !w.atlas.exists
          ? 'applied'
          : { error: 'Atlas changed while deleting; retrying', retryMs: LOST_RACE_RETRY_MS },
      );
    }
    await this.undoBehindTombstones(
      collection,
      upserts.filter((w) => outcomes.get(w.edit) === 'applied'),
    );
  }

  /**
   * A delete by another device may have written its tombstone between our
   * read and our upsert: if a newer tombstone exists now, remove what we
   * wrote (that device checks the document after its tombstone, so one of the
   * two always sees the other).
   */
  private async undoBehindTombstones(collection: string, applied: PlannedWrite[]): Promise<void> {
    if (!applied.length) return;
    const atlas = this.stores.atlas;
    const tombs = await this.tombstones.find(
      atlas,
      collection,
      applied.map((w) => w.edit.i),
    );
    const undo = applied.filter(
      (w) => compareVersions(tombs.get(idKey(w.edit.i))?._sync.v, w.version) > 0,
    );
    if (undo.length)
      await atlas.collection(collection).bulkWrite(
        undo.map((w) => ({ deleteOne: { filter: casFilter(w.edit.i, w.version) } })),
        { ordered: false },
      );
    // A revived document's older tombstone goes: on Atlas a tombstone stands only for the
    // document's current absence, so a later delete without one is known as made without the
    // module even where no copy of the document tells its last version (a fleet relay).
    await this.tombstones.remove(
      atlas,
      collection,
      applied
        .filter((w) => !undo.includes(w) && tombs.has(idKey(w.edit.i)))
        .map((w) => ({ id: w.edit.i, upTo: w.version })),
    );
  }
}

/** Matches the document only in the exact state read (a tombstone counts as no document). */
function exactly(id: unknown, state: AtlasState): Document {
  return casFilter(id, state.exists ? state.version : undefined);
}

/** Index → error of an unordered bulk write's failed operations (empty on success). */
async function bulkFailures(
  write: Promise<unknown>,
): Promise<Map<number, { code: number; message: string }>> {
  try {
    await write;
    return new Map();
  } catch (err) {
    return failuresOf(err);
  }
}

/** Index → error of a bulk write error's failed statements; rethrows any other error. */
function failuresOf(err: unknown): Map<number, { code: number; message: string }> {
  const list = statementErrorsOf(err);
  if (!list) throw err;
  return new Map(list.map((w) => [w.index, { code: w.code, message: w.errmsg ?? String(w.code) }]));
}
