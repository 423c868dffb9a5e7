import { Injectable } from '@nestjs/common';
import type { Document } from 'mongodb';
import { casFilter, issuedStamp, stamped, tombstoneOf } from '../common/engine-writes';
import { findByIds } from '../common/find-by-ids';
import { compareVersions, SyncVersion } from '../common/hybrid-logical-clock';
import { MONGO_ERROR_CODES } from '../common/mongo-error-codes';
import { idKey, readStamp, SyncStamp } from '../common/sync-stamp';
import { statementErrorsOf } from '../common/write-errors';
import { ConflictResolverService } from '../conflict/conflict-resolver.service';
import type { ConflictNote } from '../conflict/sync-decision';
import { redactMessage } from '../errors/sync.errors';
import { SyncStoresService } from '../metadata/sync-stores.service';
import { OriginTrackerService } from '../origin/origin-tracker.service';
import type { OutboxEntry } from './outbox.repository';
import { TombstoneRepository } from './tombstone.repository';

/** How one pushed entry ended: written (or found there), stale, or failed with a retry hint. */
export type PushOutcome = 'applied' | 'stale' | { error: string; retryMs?: number };

/** A local edit to push: what an outbox entry (or, later, a relayed message) carries. */
export type PushedEdit = Pick<OutboxEntry, 'c' | 'i' | 'op' | 'v' | 'doc' | 'base'>;

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
    const atlas = this.stores.atlas;
    const ids = edits.map((e) => e.i);
    const [docs, tombs] = await Promise.all([
      findByIds(atlas.collection(collection), ids),
      this.tombstones.find(atlas, collection, ids),
    ]);
    const outcomes = new Map<E, PushOutcome>();
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
    return outcomes;
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
    if (!undo.length) return;
    await atlas.collection(collection).bulkWrite(
      undo.map((w) => ({ deleteOne: { filter: casFilter(w.edit.i, w.version) } })),
      { ordered: false },
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
    const list = statementErrorsOf(err);
    if (!list) throw err;
    return new Map(
      list.map((w) => [w.index, { code: w.code, message: w.errmsg ?? String(w.code) }]),
    );
  }
}
