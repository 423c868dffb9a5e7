import { Inject, Injectable, Logger } from '@nestjs/common';
import { EventEmitter2 } from '@nestjs/event-emitter';
import type {
  AnyBulkWriteOperation,
  ChangeStreamDocument,
  Collection,
  Document,
  Timestamp,
} from 'mongodb';
import type { Model } from 'mongoose';
import {
  ATLAS_ORIGIN,
  SYNC_COLLECTIONS,
  SYNC_CONFIG,
  SYNC_STAMP_FIELD,
} from '../bidirectional-sync.constants';
import { collectionOperationWarning, DATA_OPERATIONS } from '../common/collection-operations';
import { forEachConcurrent } from '../common/concurrency';
import {
  compareVersions,
  formatVersion,
  maxVersion,
  parseVersion,
  SyncVersion,
} from '../common/hybrid-logical-clock';
import {
  documentKeyOf,
  documentRef,
  idKey,
  readStamp,
  stateUpdate,
  SyncStamp,
  touchesStamp,
  withoutStamp,
} from '../common/sync-stamp';
import { ResolvedSyncConfig } from '../config/sync-config';
import { CaptureModeService } from '../capture/capture-mode.service';
import { ConflictResolverService } from '../conflict/conflict-resolver.service';
import { mergeFieldLevel } from '../conflict/field-level-merge';
import { InvalidChangeError, redactMessage } from '../errors/sync.errors';
import {
  SyncChangeAppliedEvent,
  SyncErrorEvent,
  SyncEvents,
  SyncOperation,
} from '../events/sync-events';
import { SyncStoresService } from '../metadata/sync-stores.service';
import { MonitorService } from '../monitor/monitor.service';
import { OriginTrackerService } from '../origin/origin-tracker.service';
import { OutboxEntry, OutboxRepository } from '../outbox/outbox.repository';
import { Tombstone, TombstoneRepository } from '../outbox/tombstone.repository';
import { groupBy } from '../common/group-by';
import { statementErrorsOf } from '../common/write-errors';

/** A document state (or deletion) arriving from Atlas, with its version. */
export interface IncomingChange {
  collection: string;
  id: unknown;
  operation: SyncOperation;
  /** The new content with its stamp; absent for deletions. */
  doc?: Document;
  stamp: SyncStamp;
  /** When the change was written on Atlas (for lag). */
  writtenAt?: Date;
}

type ApplyOutcome = 'applied' | 'stale' | 'dead-lettered';

/** The local state of one document as read before applying. */
interface LocalState {
  doc?: Document;
  tombstone?: Tombstone;
  pending?: OutboxEntry;
}

class CasMismatch extends Error {}

const MAX_CAS_RETRIES = 5;

/**
 * Applies Atlas changes to the local database. A change is applied only when
 * its version is newer than the local one, so applying is idempotent and
 * echoes die out. Documents are written through the host's Mongoose model
 * when one is registered (hooks and validators run; rejected documents go to
 * `_sync_dead_letters`), otherwise with the driver. Every write is a
 * compare-and-set on the version read, retried on a concurrent local write.
 *
 * @publicApi
 */
@Injectable()
export class ChangeProcessorService {
  private readonly logger = new Logger(ChangeProcessorService.name);

  constructor(
    @Inject(SYNC_CONFIG) private readonly config: ResolvedSyncConfig,
    private readonly stores: SyncStoresService,
    private readonly origin: OriginTrackerService,
    private readonly outbox: OutboxRepository,
    private readonly tombstones: TombstoneRepository,
    private readonly conflicts: ConflictResolverService,
    private readonly monitor: MonitorService,
    private readonly events: EventEmitter2,
    private readonly captureMode: CaptureModeService,
  ) {}

  /** Main entry point for one Atlas change event. */
  async processChange(change: ChangeStreamDocument): Promise<void> {
    await this.processBatch([change]);
  }

  /** Applies a batch of Atlas change events (one local round trip per collection for the reads). */
  async processBatch(changes: ChangeStreamDocument[]): Promise<void> {
    const incoming: IncomingChange[] = [];
    const directWrites: ChangeStreamDocument[] = [];
    const plainDeletes: ChangeStreamDocument[] = [];
    // Versions this batch delivers before each direct write: the write came after them.
    const seenBefore = new Map<ChangeStreamDocument, SyncVersion | undefined>();
    const newestSeen = new Map<string, SyncVersion>();
    for (const change of changes) {
      try {
        const kind = this.classify(change);
        if (kind === 'skip') continue;
        if (kind === 'direct') {
          directWrites.push(change);
          seenBefore.set(change, newestSeen.get(eventKey(change)));
        } else if (kind === 'plain-delete') plainDeletes.push(change);
        else {
          incoming.push(kind);
          const key = documentKeyOf(kind.collection, kind.id);
          newestSeen.set(key, maxVersion(newestSeen.get(key), kind.stamp.v)!);
        }
      } catch (err) {
        await this.deadLetter(change, err);
      }
    }
    await this.adoptDirectWrites(directWrites, seenBefore);
    await this.recordDirectDeletes(plainDeletes);
    await this.applyChanges(incoming);
  }

  /** The specification's per-operation entry points (used by tests and re-baselining). */
  applyInsert(change: IncomingChange): Promise<void> {
    return this.applyChanges([{ ...change, operation: 'insert' }]);
  }

  applyUpdate(change: IncomingChange): Promise<void> {
    return this.applyChanges([{ ...change, operation: 'update' }]);
  }

  applyReplace(change: IncomingChange): Promise<void> {
    return this.applyChanges([{ ...change, operation: 'replace' }]);
  }

  applyDelete(change: IncomingChange): Promise<void> {
    return this.applyChanges([{ ...change, operation: 'delete', doc: undefined }]);
  }

  /**
   * What an Atlas event means: a stamped state to apply, a write made on
   * Atlas without the module (`direct`, adopted by stamping it), a plain
   * delete, or nothing for this device.
   */
  private classify(
    change: ChangeStreamDocument,
  ): IncomingChange | 'direct' | 'plain-delete' | 'skip' {
    const ns = (change as { ns?: { coll?: string } }).ns;
    const op = change.operationType;
    if (!(DATA_OPERATIONS as readonly string[]).includes(op)) {
      const warning = collectionOperationWarning('atlas', change);
      if (warning && this.config.pullsCollection(ns?.coll ?? '')) {
        this.logger.warn(warning);
        this.events.emit(SyncEvents.error, new SyncErrorEvent('processor', warning, ns?.coll));
      } else if (!warning && op !== 'invalidate') this.logger.warn(`Ignoring ${op} event`);
      return 'skip';
    }
    const key = (change as { documentKey?: { _id?: unknown } }).documentKey;
    if (!ns?.coll || !key || !('_id' in key))
      throw new InvalidChangeError(`${op} event without ns.coll or documentKey._id`);
    const doc = (change as { fullDocument?: Document | null }).fullDocument ?? undefined;
    const writtenAt = (change as { wallTime?: Date }).wallTime;

    if (ns.coll === SYNC_COLLECTIONS.tombstones) {
      if (op === 'delete' || !doc) return 'skip'; // tombstone expiry
      const stamp = readStamp(doc);
      const target = doc as { c?: string; i?: unknown };
      if (!stamp || typeof target.c !== 'string' || !('i' in target))
        throw new InvalidChangeError('malformed tombstone');
      if (stamp.o === this.origin.instanceId || !this.config.pullsCollection(target.c))
        return 'skip';
      return { collection: target.c, id: target.i, operation: 'delete', stamp, writtenAt };
    }
    if (!this.config.pullsCollection(ns.coll)) return 'skip';
    if (op === 'delete') return 'plain-delete';
    if (!doc) return 'skip'; // deleted since the event; the delete follows
    if (this.origin.shouldSkipSync(doc)) return 'skip';
    const stamp = readStamp(doc);
    const stampChanged =
      op === 'update'
        ? touchesStamp([
            ...Object.keys(
              (change as { updateDescription?: { updatedFields?: object } }).updateDescription
                ?.updatedFields ?? {},
            ),
            ...((change as { updateDescription?: { removedFields?: string[] } }).updateDescription
              ?.removedFields ?? []),
          ])
        : !!stamp;
    if (!stampChanged || !stamp) return 'direct';
    return {
      collection: ns.coll,
      id: key._id,
      operation: op as SyncOperation,
      doc,
      stamp,
      writtenAt,
    };
  }

  /**
   * A write made on Atlas without the module carries no new version. It gets
   * one derived from the event's cluster time, and newer than every version
   * of the document the device has seen (its stamp before the write, which a
   * replace removes, is what the device applied from the events before it),
   * stamped on Atlas with a compare-and-set: the first device's write wins,
   * the rest match nothing, and all devices then apply the stamped state
   * like any other.
   */
  private async adoptDirectWrites(
    changes: ChangeStreamDocument[],
    seenBefore: Map<ChangeStreamDocument, SyncVersion | undefined>,
  ): Promise<void> {
    for (const change of changes) {
      const c = change as ChangeStreamDocument & {
        ns: { coll: string };
        documentKey: { _id: unknown };
        fullDocument: Document;
        clusterTime?: Timestamp;
      };
      const previous = readStamp(c.fullDocument);
      const derived = versionFromClusterTime(c.clusterTime);
      if (previous?.o === ATLAS_ORIGIN && compareVersions(previous.v, derived) >= 0) continue; // adopted already
      const [tombs, local, pending] = await Promise.all([
        this.tombstones.find(this.stores.atlas, c.ns.coll, [c.documentKey._id]),
        this.findLocal(c.ns.coll, [c.documentKey._id]),
        this.outbox.pendingFor(c.ns.coll, [c.documentKey._id]),
      ]);
      const key = idKey(c.documentKey._id);
      const lastSeen = lastAtlasVersionSeen(pending.get(key), local.get(key));
      const v = maxVersion(
        derived,
        successor(previous?.v),
        successor(tombs.get(key)?._sync.v),
        successor(lastSeen),
        successor(seenBefore.get(change)),
      )!;
      await this.stores.atlas.collection(c.ns.coll).updateOne(
        {
          _id: c.documentKey._id,
          [`${SYNC_STAMP_FIELD}.v`]: previous ? previous.v : { $exists: false },
        } as Document,
        { $set: { [SYNC_STAMP_FIELD]: { v, o: ATLAS_ORIGIN } } },
      );
    }
  }

  /**
   * A delete on Atlas without a tombstone was made without the module. It is
   * recorded as a tombstone on Atlas (newer than the version this device
   * holds, unless this device holds an unpushed edit), and every device
   * applies that tombstone.
   */
  private async recordDirectDeletes(changes: ChangeStreamDocument[]): Promise<void> {
    const byCollection = groupBy(
      changes as (ChangeStreamDocument & { ns: { coll: string }; documentKey: { _id: unknown } })[],
      (c) => c.ns.coll,
    );
    for (const [collection, list] of byCollection) {
      const ids = list.map((c) => c.documentKey._id);
      const [atlasTombs, local, pending, atlasNow] = await Promise.all([
        this.tombstones.find(this.stores.atlas, collection, ids),
        this.findLocal(collection, ids),
        this.outbox.pendingFor(collection, ids),
        this.stores.atlas
          .collection(collection)
          .find({ _id: { $in: ids } } as Document, { projection: { _id: 1 } })
          .toArray(),
      ]);
      const recreated = new Set(atlasNow.map((d) => idKey(d._id)));
      const tombstones: Tombstone[] = [];
      for (const c of list) {
        const key = idKey(c.documentKey._id);
        // Written again since the delete: the newer state's own events decide.
        if (recreated.has(key)) continue;
        const unpushed = pending.get(key);
        const lastSeen = lastAtlasVersionSeen(unpushed, local.get(key));
        // A device's delete wrote a tombstone at least that new: its tombstone
        // event does the work. An older tombstone is from an earlier life of
        // the document, so this delete was made on Atlas directly.
        const tomb = atlasTombs.get(key);
        if (tomb && compareVersions(tomb._sync.v, lastSeen) >= 0) continue;
        const derived = versionFromClusterTime((c as { clusterTime?: Timestamp }).clusterTime);
        const v = unpushed ? derived : maxVersion(derived, successor(lastSeen))!;
        tombstones.push({
          ...documentRef(collection, c.documentKey._id),
          _sync: { v, o: ATLAS_ORIGIN },
          deletedAt: new Date(),
        });
      }
      await this.tombstones.upsert(this.stores.atlas, tombstones);
    }
  }

  private async findLocal(collection: string, ids: unknown[]): Promise<Map<string, Document>> {
    const docs = await this.stores.local
      .collection(collection)
      .find({ _id: { $in: ids } } as Document)
      .toArray();
    return new Map(docs.map((d) => [idKey(d._id), d]));
  }

  /** Applies incoming states (newest per document), reading local state in bulk. */
  async applyChanges(changes: IncomingChange[]): Promise<void> {
    // A host write the capture has not recorded yet is invisible in the local
    // state (its stamp is still the old one): applying over it would lose it.
    // So the capture first records every local write made before this batch.
    await this.captureMode.active.caughtUp();
    for (const [collection, list] of groupBy(changes, (c) => c.collection)) {
      // State-based: within a batch only the newest state of each document matters.
      const newest = new Map<string, IncomingChange>();
      for (const c of list) {
        const key = idKey(c.id);
        if (compareVersions(c.stamp.v, newest.get(key)?.stamp.v) > 0) newest.set(key, c);
      }
      const states = [...newest.values()];
      const ids = states.map((s) => s.id);
      const [docs, tombs, pending] = await Promise.all([
        this.findLocal(collection, ids),
        this.tombstones.find(this.stores.local, collection, ids),
        this.outbox.pendingFor(collection, ids),
      ]);
      const model = this.stores.modelFor(collection);
      const applied = model
        ? new Set<IncomingChange>()
        : await this.applyInBulk(collection, states, docs, tombs, pending);
      const rest = states.filter((c) => !applied.has(c));
      await forEachConcurrent(rest, this.config.applyConcurrency, async (change) => {
        const key = idKey(change.id);
        let local: LocalState = {
          doc: docs.get(key),
          tombstone: tombs.get(key),
          pending: pending.get(key),
        };
        const started = Date.now();
        for (let attempt = 1; ; attempt++) {
          try {
            const outcome = await this.applyOne(change, local, model);
            this.afterApply(change, outcome, Date.now() - started);
            return;
          } catch (err) {
            if (!(err instanceof CasMismatch) || attempt >= MAX_CAS_RETRIES) {
              this.monitor.recordAtlasToLocal(change.operation, false, Date.now() - started);
              throw err;
            }
            local = await this.reloadLocal(collection, change.id);
          }
        }
      });
    }
  }

  /**
   * The common case in one round trip: newer states of documents with no
   * unpushed local edit, written with the driver (no model) as one unordered
   * bulk of compare-and-set updates and inserts. Whatever the bulk did not
   * write (a compare-and-set that lost a race, a duplicate insert) is left to
   * the one-by-one path, which re-reads and decides again. Returns the states
   * written.
   */
  private async applyInBulk(
    collection: string,
    states: IncomingChange[],
    docs: Map<string, Document>,
    tombs: Map<string, Tombstone>,
    pending: Map<string, OutboxEntry>,
  ): Promise<Set<IncomingChange>> {
    const written = new Set<IncomingChange>();
    if (this.config.conflictResolutionStrategy === 'field-level') return written;
    const planned: { change: IncomingChange; op: AnyBulkWriteOperation<Document> }[] = [];
    for (const change of states) {
      const key = idKey(change.id);
      const doc = docs.get(key);
      const localVersion = readStamp(doc)?.v ?? tombs.get(key)?._sync.v;
      if (
        change.operation === 'delete' ||
        pending.has(key) ||
        (!doc && tombs.has(key)) ||
        compareVersions(change.stamp.v, localVersion) <= 0
      )
        continue;
      const content = { ...withoutStamp(change.doc!), _id: change.id };
      planned.push({
        change,
        op: doc
          ? {
              updateOne: {
                filter: casFilter(change.id, readStamp(doc)?.v),
                update: stateUpdate(doc, { ...content, [SYNC_STAMP_FIELD]: change.stamp }),
              },
            }
          : {
              insertOne: { document: { ...content, [SYNC_STAMP_FIELD]: change.stamp } as Document },
            },
      });
    }
    if (!planned.length) return written;
    const started = Date.now();
    let failed = new Set<number>();
    let matched = 0;
    try {
      const result = await this.local(collection).bulkWrite(
        planned.map((p) => p.op),
        { ordered: false },
      );
      matched = result.matchedCount + result.insertedCount;
    } catch (err) {
      const statementErrors = statementErrorsOf(err);
      if (!statementErrors) throw err;
      failed = new Set(statementErrors.map((w) => w.index));
      matched = -1; // unknown: check every update below
    }
    // An update whose compare-and-set matched nothing raises no error: find those by reading back.
    const updates = planned.filter((p, i) => 'updateOne' in p.op && !failed.has(i));
    let landed: Set<string> | undefined;
    if (matched !== planned.length && updates.length) {
      const now = await this.findLocal(
        collection,
        updates.map((p) => p.change.id),
      );
      landed = new Set(
        updates
          .filter((p) => readStamp(now.get(idKey(p.change.id)))?.v === p.change.stamp.v)
          .map((p) => idKey(p.change.id)),
      );
    }
    const perChangeMs = (Date.now() - started) / planned.length;
    planned.forEach((p, i) => {
      if (failed.has(i)) return;
      if (landed && 'updateOne' in p.op && !landed.has(idKey(p.change.id))) return;
      this.origin.clock.receive(p.change.stamp.v);
      written.add(p.change);
      this.afterApply(p.change, 'applied', perChangeMs);
    });
    return written;
  }

  private async reloadLocal(collection: string, id: unknown): Promise<LocalState> {
    const [doc, tombs, pending] = await Promise.all([
      this.stores.local.collection(collection).findOne({ _id: id } as Document),
      this.tombstones.find(this.stores.local, collection, [id]),
      this.outbox.pendingFor(collection, [id]),
    ]);
    return {
      doc: doc ?? undefined,
      tombstone: tombs.get(idKey(id)),
      pending: pending.get(idKey(id)),
    };
  }

  private afterApply(change: IncomingChange, outcome: ApplyOutcome, durationMs: number): void {
    if (outcome === 'stale') {
      this.monitor.recordStale();
      return;
    }
    const ok = outcome === 'applied';
    const lag = change.writtenAt ? Date.now() - change.writtenAt.getTime() : undefined;
    this.monitor.recordAtlasToLocal(change.operation, ok, durationMs, lag);
    if (!ok) return;
    this.origin.markAtlasChange(change.collection, change.id, change.stamp.v);
    this.logger.debug(
      `Atlas change applied successfully: ${change.operation} ${change.collection} ${JSON.stringify(change.id)}`,
    );
    this.events.emit(
      SyncEvents.changeApplied,
      new SyncChangeAppliedEvent(
        'atlasToLocal',
        change.collection,
        change.id,
        change.operation,
        change.stamp.v,
        change.stamp.o,
      ),
    );
  }

  /** Decides and writes one incoming state against the local state read before. */
  private async applyOne(
    change: IncomingChange,
    local: LocalState,
    model: Model<any> | undefined,
  ): Promise<ApplyOutcome> {
    this.origin.clock.receive(change.stamp.v);
    const localStamp = readStamp(local.doc) ?? local.tombstone?._sync;
    const pending = local.pending;
    const deleting = change.operation === 'delete';

    if (
      this.config.conflictResolutionStrategy === 'field-level' &&
      !deleting &&
      local.doc &&
      localStamp
    ) {
      const merged = mergeFieldLevel(
        { doc: local.doc, stamp: localStamp },
        { doc: change.doc!, stamp: change.stamp },
      );
      if (sameState(merged, { doc: local.doc, stamp: localStamp })) return 'stale';
      if (pending) await this.recordConflict(change, localStamp.v, 'merged');
      return this.writeState(change, local, model, merged.doc, merged.stamp);
    }

    // Concurrent: this device holds an unpushed edit not based on the incoming state.
    const concurrent = !!pending && change.stamp.v !== pending.base && change.stamp.v !== pending.v;
    // An unpushed local edit counts even before its stamp reached the document.
    const localVersion = maxVersion(localStamp?.v, pending?.v);
    const incomingNewer = compareVersions(change.stamp.v, localVersion) > 0;

    if (concurrent && this.config.conflictResolutionStrategy === 'custom') {
      const decision = await this.conflicts.resolveConflict({
        collection: change.collection,
        documentId: change.id,
        local: {
          document: local.doc ? withoutStamp(local.doc) : null,
          version: pending.v,
          origin: this.origin.instanceId,
        },
        atlas: {
          document: change.doc ? withoutStamp(change.doc) : null,
          version: change.stamp.v,
          origin: change.stamp.o,
        },
      });
      const winner = 'merged' in decision ? 'merged' : decision.winner;
      await this.recordConflict(change, pending.v, winner);
      if (winner === 'local' && !incomingNewer) return 'stale'; // our push wins as it is
      if (winner !== 'atlas' || !incomingNewer) {
        // The host's choice must win everywhere: write it under a version newer than both.
        const chosen =
          'merged' in decision
            ? { ...decision.merged, _id: change.id }
            : winner === 'local'
              ? (local.doc ?? null)
              : (change.doc ?? null);
        return this.rewriteLocalWinner(change, local, model, chosen);
      }
      await this.outbox.dropIfNotNewer(change.collection, change.id, change.stamp.v);
    } else if (!incomingNewer) {
      if (concurrent) await this.recordConflict(change, localVersion, 'local');
      return 'stale';
    } else if (concurrent) {
      await this.recordConflict(change, pending.v, 'atlas');
      await this.outbox.dropIfNotNewer(change.collection, change.id, change.stamp.v);
    }
    if (deleting) return this.deleteLocal(change, local, model);
    return this.writeState(change, local, model, change.doc!, change.stamp);
  }

  /** A custom resolver kept the local side (or merged): stamp it newer than Atlas and queue the push. */
  private async rewriteLocalWinner(
    change: IncomingChange,
    local: LocalState,
    model: Model<any> | undefined,
    doc: Document | null,
  ): Promise<ApplyOutcome> {
    const v = this.origin.clock.tickAfter(maxVersion(change.stamp.v, local.pending?.v));
    const stamp: SyncStamp = { v, o: this.origin.instanceId };
    if (!doc) {
      await this.outbox.enqueue([
        {
          collection: change.collection,
          id: change.id,
          op: 'delete',
          v,
          base: change.stamp.v,
          rebase: true,
        },
      ]);
      // Deleted by the engine (a `remote` tombstone), so the capture does not push it again.
      return this.deleteLocal({ ...change, stamp }, local, model);
    }
    await this.outbox.enqueue([
      {
        collection: change.collection,
        id: change.id,
        op: 'upsert',
        v,
        base: change.stamp.v,
        rebase: true,
        doc: { ...withoutStamp(doc), _id: change.id, [SYNC_STAMP_FIELD]: stamp },
      },
    ]);
    return this.writeState(change, local, model, doc, stamp);
  }

  private async deleteLocal(
    change: IncomingChange,
    local: LocalState,
    model: Model<any> | undefined,
  ): Promise<ApplyOutcome> {
    // The tombstone comes first: the local capture recognises the delete as ours by it.
    await this.tombstones.upsert(this.stores.local, [
      {
        ...documentRef(change.collection, change.id),
        _sync: change.stamp,
        deletedAt: new Date(),
        src: 'remote',
      },
    ]);
    if (!local.doc) return 'applied';
    const filter = casFilter(change.id, readStamp(local.doc)?.v);
    const result = model
      ? await model.deleteOne(filter)
      : await this.local(change.collection).deleteOne(filter);
    if (result.deletedCount === 0) throw new CasMismatch();
    return 'applied';
  }

  /** Inserts or updates the local document to `doc` with `stamp`, through the model when there is one. */
  private async writeState(
    change: IncomingChange,
    local: LocalState,
    model: Model<any> | undefined,
    doc: Document,
    stamp: SyncStamp,
  ): Promise<ApplyOutcome> {
    const content = { ...withoutStamp(doc), _id: change.id };
    try {
      if (!local.doc) {
        if (local.tombstone)
          await this.tombstones.remove(this.stores.local, change.collection, [
            { id: change.id, upTo: stamp.v },
          ]);
        if (model) {
          const created = new model(content);
          created.set(SYNC_STAMP_FIELD, stamp, undefined, { strict: false });
          await created.save({ timestamps: false });
        } else {
          await this.local(change.collection).insertOne({
            ...content,
            [SYNC_STAMP_FIELD]: stamp,
          } as Document);
        }
        return 'applied';
      }
      const expected = readStamp(local.doc)?.v;
      if (model) {
        const existing = model.hydrate(local.doc);
        existing.overwrite(content);
        existing.set(SYNC_STAMP_FIELD, stamp, undefined, { strict: false });
        existing.$where = casFilter(change.id, expected);
        await existing.save({ timestamps: false });
      } else {
        const result = await this.local(change.collection).updateOne(
          casFilter(change.id, expected),
          stateUpdate(local.doc, { ...content, [SYNC_STAMP_FIELD]: stamp }),
        );
        if (result.matchedCount === 0) throw new CasMismatch();
      }
      return 'applied';
    } catch (err) {
      const name = (err as Error)?.name;
      const code = (err as { code?: number })?.code;
      if (name === 'DocumentNotFoundError' || (code === 11000 && !local.doc))
        throw new CasMismatch();
      if (name === 'ValidationError' || name === 'CastError' || code === 121) {
        await this.deadLetter(change, err);
        return 'dead-lettered';
      }
      throw err;
    }
  }

  private async recordConflict(
    change: IncomingChange,
    localVersion: SyncVersion | undefined,
    winner: 'local' | 'atlas' | 'merged',
  ): Promise<void> {
    await this.conflicts.logConflict({
      collection: change.collection,
      documentId: change.id,
      localVersion,
      atlasVersion: change.stamp.v,
      winner,
    });
  }

  /** Keeps a change the engine could not apply, with the reason; the stream goes on. */
  private async deadLetter(
    change: IncomingChange | ChangeStreamDocument,
    err: unknown,
  ): Promise<void> {
    const message = redactMessage((err as Error)?.message ?? String(err));
    const c = change as Partial<IncomingChange> & {
      ns?: { coll?: string };
      documentKey?: { _id?: unknown };
    };
    const collection = c.collection ?? c.ns?.coll;
    const documentId = 'id' in c ? c.id : c.documentKey?._id;
    this.logger.warn(
      `Dead-lettered change to ${collection ?? '?'} ${JSON.stringify(documentId)}: ${message}`,
    );
    this.monitor.recordDeadLetter();
    this.events.emit(
      SyncEvents.error,
      new SyncErrorEvent('processor', message, collection, documentId),
    );
    await this.stores.local.collection(SYNC_COLLECTIONS.deadLetters).insertOne({
      collection,
      documentId,
      version: c.stamp?.v,
      origin: c.stamp?.o,
      operation: c.operation ?? (change as ChangeStreamDocument).operationType,
      document: c.doc ?? (change as { fullDocument?: Document }).fullDocument,
      error: message,
      errorName: (err as Error)?.name,
      at: new Date(),
    });
  }

  private local(collection: string): Collection<Document> {
    return this.stores.local.collection(collection);
  }
}

function casFilter(id: unknown, version: SyncVersion | undefined): Document {
  return { _id: id, [`${SYNC_STAMP_FIELD}.v`]: version ?? { $exists: false } };
}

function sameState(
  a: { doc: Document; stamp: SyncStamp },
  b: { doc: Document; stamp: SyncStamp },
): boolean {
  return (
    a.stamp.v === b.stamp.v && JSON.stringify(a.stamp.f ?? {}) === JSON.stringify(b.stamp.f ?? {})
  );
}

/** The deterministic version of a write made on Atlas without the module. */
/** The last Atlas state a device knows of a document (its own unpushed edit is not one). */
function lastAtlasVersionSeen(
  unpushed: OutboxEntry | undefined,
  local: Document | undefined,
): SyncVersion | undefined {
  return unpushed ? (unpushed.base ?? undefined) : readStamp(local)?.v;
}

function eventKey(change: ChangeStreamDocument): string {
  const c = change as { ns?: { coll?: string }; documentKey?: { _id?: unknown } };
  return documentKeyOf(c.ns?.coll ?? '', c.documentKey?._id);
}

export function versionFromClusterTime(clusterTime: Timestamp | undefined): SyncVersion {
  const seconds = clusterTime ? clusterTime.high : Math.floor(Date.now() / 1000);
  const increment = clusterTime ? clusterTime.low : 0;
  return formatVersion(seconds * 1000, Math.min(increment, 999_999), ATLAS_ORIGIN);
}

/** The smallest version after `version` (same millisecond, next counter). */
export function successor(version: SyncVersion | undefined): SyncVersion | undefined {
  const p = parseVersion(version);
  if (!p) return undefined;
  return p.counter < 999_999
    ? formatVersion(p.ms, p.counter + 1, ATLAS_ORIGIN)
    : formatVersion(p.ms + 1, 0, ATLAS_ORIGIN);
}
