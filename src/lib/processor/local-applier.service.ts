import { Injectable, Logger } from '@nestjs/common';
import { EventEmitter2 } from '@nestjs/event-emitter';
import type { AnyBulkWriteOperation, Collection, Document } from 'mongodb';
import type { Model } from 'mongoose';
import { SYNC_STAMP_FIELD } from '../bidirectional-sync.constants';
import { InjectSyncConfig } from '../bidirectional-sync.decorators';
import { CaptureModeService } from '../capture/capture-mode.service';
import { forEachConcurrent } from '../common/concurrency';
import {
  issuedStamp,
  stamped,
  stateUpdate,
  tombstoneOf,
  unchangedFilter,
} from '../common/engine-writes';
import { matchesStampDigest } from '../common/content-digest';
import { findByIds } from '../common/find-by-ids';
import { groupBy } from '../common/group-by';
import { compareVersions } from '../common/hybrid-logical-clock';
import { MONGO_ERROR_CODES } from '../common/mongo-error-codes';
import { idKey, readStamp, SyncStamp } from '../common/sync-stamp';
import { statementErrorsOf } from '../common/write-errors';
import type { ResolvedSyncConfig } from '../config/sync-config';
import { ConflictResolverService } from '../conflict/conflict-resolver.service';
import { decide, SyncDecision } from '../conflict/sync-decision';
import { SyncChangeAppliedEvent, SyncEvents } from '../events/sync-events';
import { SyncStoresService } from '../metadata/sync-stores.service';
import { MonitorService } from '../monitor/monitor.service';
import { OriginTrackerService } from '../origin/origin-tracker.service';
import { OutboxEntry, OutboxRepository } from '../outbox/outbox.repository';
import { Tombstone, TombstoneRepository } from '../outbox/tombstone.repository';
import type { IncomingChange } from './atlas-change-classifier';
import { DeadLetterService } from './dead-letter.service';

type ApplyOutcome = 'applied' | 'stale' | 'dead-lettered';

/** The local state of one document as read before applying. */
interface LocalState {
  doc?: Document;
  tombstone?: Tombstone;
  pending?: OutboxEntry;
}

/** A host model of a synced collection (documents of any shape). */
type HostModel = Model<Document>;

/** A compare-and-set matched nothing: the document changed since it was read. */
class CasMismatch extends Error {}

/** Re-reads and decides again this many times before the change fails (and is retried with the batch). */
const MAX_CAS_RETRIES = 5;

/**
 * Applies Atlas states to the local database. Each state meets the local
 * copy, its tombstone and this device's pending edit in `decide()`; what it
 * decides is written with a compare-and-set on the version read, through the
 * host's Mongoose model when there is one (hooks and validators run; rejected
 * documents are dead-lettered), otherwise with the driver, in bulk.
 */
@Injectable()
export class LocalApplierService {
  private readonly logger = new Logger(LocalApplierService.name);

  constructor(
    @InjectSyncConfig() private readonly config: ResolvedSyncConfig,
    private readonly stores: SyncStoresService,
    private readonly origin: OriginTrackerService,
    private readonly outbox: OutboxRepository,
    private readonly tombstones: TombstoneRepository,
    private readonly conflicts: ConflictResolverService,
    private readonly monitor: MonitorService,
    private readonly events: EventEmitter2,
    private readonly captureMode: CaptureModeService,
    private readonly deadLetters: DeadLetterService,
  ) {}

  /** Applies incoming states (the newest per document), reading local state in bulk. */
  async apply(changes: IncomingChange[]): Promise<void> {
    for (const [collection, list] of groupBy(changes, (c) => c.collection)) {
      const states = newestPerDocument(list);
      const locals = await this.readSettled(collection, states);
      const model = this.stores.modelFor(collection) as HostModel | undefined;
      const applied = model
        ? new Set<IncomingChange>()
        : await this.applyInBulk(collection, states, locals);
      const rest = states.filter((c) => !applied.has(c));
      await forEachConcurrent(rest, this.config.applyConcurrency, (change) =>
        this.applyWithRetries(change, locals.get(idKey(change.id)) ?? {}, model),
      );
    }
  }

  /**
   * Reads the local state of `changes`' documents, and makes sure no host
   * write the capture has not recorded yet hides in it (such a write leaves
   * the stamp as it was, and applying over it would lose it unseen):
   * - a document whose content still matches its stamp's digest, or absent
   *   with a tombstone, or absent while the change is its first insert, holds
   *   no such write; a later one fails the exact-content compare-and-set;
   * - for any other, the capture first records every host write made before
   *   the read: that changes the document (its stamp) or leaves a tombstone,
   *   so the compare-and-set fails on it too. Documents absent at the read
   *   are looked up again in the tombstones and the outbox.
   * So an Atlas batch waits behind the capture only for documents the
   * uncaptured local backlog may hold.
   */
  private async readSettled(
    collection: string,
    changes: IncomingChange[],
    { changedSinceRead = false } = {},
  ): Promise<Map<string, LocalState>> {
    const states = await this.readLocal(
      collection,
      changes.map((c) => c.id),
    );
    const unsettled = changes.filter((c) => {
      // A host write raced the apply: it is captured before the apply decides again.
      if (changedSinceRead) return true;
      const s = states.get(idKey(c.id));
      if (s?.doc) return !matchesStampDigest(s.doc);
      return !s?.tombstone && c.operation !== 'insert';
    });
    if (!unsettled.length) return states;
    await this.captureMode.active.caughtUp();
    const absent = unsettled.filter((c) => !states.get(idKey(c.id))?.doc).map((c) => c.id);
    if (absent.length) {
      const again = await this.readLocal(collection, absent, { documents: false });
      for (const [key, state] of again) states.set(key, { ...states.get(key), ...state });
    }
    return states;
  }

  private async applyWithRetries(
    change: IncomingChange,
    read: LocalState,
    model: HostModel | undefined,
  ): Promise<void> {
    let local = read;
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
        // Changed since the read (a host write, maybe not recorded yet): read and decide again.
        const again = await this.readSettled(change.collection, [change], {
          changedSinceRead: true,
        });
        local = again.get(idKey(change.id)) ?? {};
      }
    }
  }

  /** Documents, tombstones and pending edits of `ids` (the outbox is not asked while known empty). */
  private async readLocal(
    collection: string,
    ids: unknown[],
    { documents = true } = {},
  ): Promise<Map<string, LocalState>> {
    const none = Promise.resolve(new Map());
    const [docs, tombs, pending] = await Promise.all([
      documents ? findByIds(this.local(collection), ids) : none,
      this.tombstones.find(this.stores.local, collection, ids),
      this.outbox.knownEmpty ? none : this.outbox.pendingFor(collection, ids),
    ]);
    const states = new Map<string, LocalState>();
    for (const id of ids) {
      const key = idKey(id);
      const state: LocalState = {
        doc: docs.get(key),
        tombstone: tombs.get(key),
        pending: pending.get(key),
      };
      if (!documents) delete state.doc;
      states.set(key, state);
    }
    return states;
  }

  /** The decision input of one incoming state against the local state read. */
  private pullCase(change: IncomingChange, local: LocalState) {
    return {
      instanceId: this.origin.instanceId,
      clock: this.origin.clock,
      collection: change.collection,
      documentId: change.id,
      change: {
        direction: 'pull' as const,
        atlas: { doc: change.operation === 'delete' ? null : change.doc!, stamp: change.stamp },
        local: {
          doc: local.doc,
          stamp: readStamp(local.doc) ?? local.tombstone?._sync,
          pending: local.pending,
        },
      },
    };
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
    locals: Map<string, LocalState>,
  ): Promise<Set<IncomingChange>> {
    const written = new Set<IncomingChange>();
    // A merge may record a conflict and reads field versions: one by one.
    if (this.config.conflictResolutionStrategy === 'field-level') return written;
    const planned: { change: IncomingChange; op: AnyBulkWriteOperation<Document> }[] = [];
    for (const change of states) {
      const local = locals.get(idKey(change.id)) ?? {};
      // A revived document's tombstone is removed first: one by one.
      if (local.pending || (!local.doc && local.tombstone)) continue;
      const decision = decide({
        ...this.pullCase(change, local),
        strategy: this.config.conflictResolutionStrategy,
      });
      if (decision.kind !== 'take' || decision.conflict || decision.doc === null) continue;
      const next = stamped(decision.doc, change.id, decision.stamp);
      planned.push({
        change,
        op: local.doc
          ? {
              updateOne: {
                filter: unchangedFilter(local.doc),
                update: stateUpdate(local.doc, next),
              },
            }
          : { insertOne: { document: next } },
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
      const now = await findByIds(
        this.local(collection),
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

  /** Decides and writes one incoming state against the local state read before. */
  private async applyOne(
    change: IncomingChange,
    local: LocalState,
    model: HostModel | undefined,
  ): Promise<ApplyOutcome> {
    this.origin.clock.receive(change.stamp.v);
    const decision = await this.conflicts.decide(this.pullCase(change, local));
    if (decision.conflict)
      await this.conflicts.logConflict({
        collection: change.collection,
        documentId: change.id,
        localVersion: decision.conflict.localVersion,
        atlasVersion: decision.conflict.atlasVersion,
        winner: decision.conflict.winner,
      });
    return this.carryOut(change, local, model, decision);
  }

  private async carryOut(
    change: IncomingChange,
    local: LocalState,
    model: HostModel | undefined,
    decision: Exclude<SyncDecision, { kind: 'resolve' }>,
  ): Promise<ApplyOutcome> {
    if (decision.kind === 'keep') return 'stale';
    if (decision.kind === 'rewrite') {
      // The resolver's choice must win everywhere: queued for Atlas under its new version.
      const doc = decision.doc;
      const stamp = doc ? issuedStamp(doc, change.id, decision.stamp) : decision.stamp;
      decision = { ...decision, stamp };
      await this.outbox.enqueue([
        {
          collection: change.collection,
          id: change.id,
          op: doc ? 'upsert' : 'delete',
          v: stamp.v,
          base: change.stamp.v,
          rebase: true,
          doc: doc ? stamped(doc, change.id, stamp) : undefined,
        },
      ]);
    } else if (decision.dropsPending) {
      await this.outbox.dropIfNotNewer(change.collection, change.id, change.stamp.v);
    }
    return decision.doc === null
      ? this.deleteLocal(change.collection, change.id, local, model, decision.stamp)
      : this.writeState(change, local, model, decision.doc, decision.stamp);
  }

  private async deleteLocal(
    collection: string,
    id: unknown,
    local: LocalState,
    model: HostModel | undefined,
    stamp: SyncStamp,
  ): Promise<ApplyOutcome> {
    // The tombstone comes first: the local capture recognises the delete as ours by it.
    await this.tombstones.upsert(this.stores.local, [tombstoneOf(collection, id, stamp, 'remote')]);
    if (!local.doc) return 'applied';
    const filter = unchangedFilter(local.doc);
    const result = model
      ? await model.deleteOne(filter)
      : await this.local(collection).deleteOne(filter);
    if (result.deletedCount === 0) {
      // Changed since the read, so not deleted: the tombstone must not outlive the decision,
      // or the host's own later delete of the document would pass for the engine's.
      await this.tombstones.remove(this.stores.local, collection, [{ id, upTo: stamp.v }]);
      throw new CasMismatch();
    }
    return 'applied';
  }

  /** Inserts or updates the local document to `doc` with `stamp`, through the model when there is one. */
  private async writeState(
    change: IncomingChange,
    local: LocalState,
    model: HostModel | undefined,
    doc: Document,
    stamp: SyncStamp,
  ): Promise<ApplyOutcome> {
    const next = stamped(doc, change.id, stamp);
    const { [SYNC_STAMP_FIELD]: _stamp, ...content } = next;
    try {
      if (!local.doc) {
        if (local.tombstone)
          await this.tombstones.remove(this.stores.local, change.collection, [
            { id: change.id, upTo: stamp.v },
          ]);
        if (model) {
          const created = new model(content);
          created.set(SYNC_STAMP_FIELD, next[SYNC_STAMP_FIELD], undefined, { strict: false });
          await created.save({ timestamps: false });
        } else {
          await this.local(change.collection).insertOne(next);
        }
        return 'applied';
      }
      if (model) {
        const existing = model.hydrate(local.doc);
        existing.overwrite(content);
        existing.set(SYNC_STAMP_FIELD, next[SYNC_STAMP_FIELD], undefined, { strict: false });
        existing.$where = unchangedFilter(local.doc);
        await existing.save({ timestamps: false });
      } else {
        const result = await this.local(change.collection).updateOne(
          unchangedFilter(local.doc),
          stateUpdate(local.doc, next),
        );
        if (result.matchedCount === 0) throw new CasMismatch();
      }
      return 'applied';
    } catch (err) {
      const name = (err as Error)?.name;
      const code = (err as { code?: number })?.code;
      if (
        name === 'DocumentNotFoundError' ||
        (code === MONGO_ERROR_CODES.DuplicateKey && !local.doc)
      )
        throw new CasMismatch();
      if (
        name === 'ValidationError' ||
        name === 'CastError' ||
        code === MONGO_ERROR_CODES.DocumentValidationFailure
      ) {
        await this.deadLetters.record(change, err);
        return 'dead-lettered';
      }
      throw err;
    }
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

  private local(collection: string): Collection<Document> {
    return this.stores.local.collection(collection);
  }
}

/** State-based: within a batch only the newest state of each document matters. */
function newestPerDocument(list: IncomingChange[]): IncomingChange[] {
  const newest = new Map<string, IncomingChange>();
  for (const c of list) {
    const key = idKey(c.id);
    if (compareVersions(c.stamp.v, newest.get(key)?.stamp.v) > 0) newest.set(key, c);
  }
  return [...newest.values()];
}
