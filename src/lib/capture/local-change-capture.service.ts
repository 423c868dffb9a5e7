import { InjectSyncConfig } from '../bidirectional-sync.decorators';
import { Injectable, Logger } from '@nestjs/common';
import { EventEmitter2 } from '@nestjs/event-emitter';
import type { AnyBulkWriteOperation, ChangeStreamDocument, Document } from 'mongodb';
import { SYNC_COLLECTIONS, SYNC_STAMP_FIELD } from '../bidirectional-sync.constants';
import {
  collectionOperationWarning,
  COLLECTION_OPERATIONS,
  DATA_OPERATIONS,
} from '../common/collection-operations';
import { ChangeStreamTailer, matchWithProgressMark } from '../common/change-stream-tailer';
import { compareVersions, maxVersion, SyncVersion } from '../common/hybrid-logical-clock';
import {
  casFilter,
  ENGINE_WRITE_EVENTS,
  isHostWrite,
  stampUpdate,
  stateUpdate,
  tombstoneOf,
} from '../common/engine-writes';
import { documentKeyOf, idKey, readStamp, SyncStamp, topLevelFields } from '../common/sync-stamp';
import { findByIds } from '../common/find-by-ids';
import { groupBy } from '../common/group-by';
import { ResolvedSyncConfig } from '../config/sync-config';
import { SyncErrorEvent, SyncEvents, SyncStateChangedEvent } from '../events/sync-events';
import { SyncStoresService } from '../metadata/sync-stores.service';
import { MonitorService } from '../monitor/monitor.service';
import { OriginTrackerService } from '../origin/origin-tracker.service';
import { NewOutboxEntry } from '../outbox/outbox.repository';
import { OutboxDrainerService } from '../outbox/outbox-drainer.service';
import { contentDigest } from '../common/content-digest';
import { faultPoint } from '../common/fault-points';
import { Tombstone, TombstoneRepository } from '../outbox/tombstone.repository';
import { ResumeTokenRepository } from '../resume-token/resume-token.repository';
import type { LocalCapture } from './local-capture.interface';
import { LocalRescanService } from '../initial-sync/local-rescan.service';

/** A change to a synced document, as `captureBatch` takes it (from the change stream, or made from a dirty marker). */
export type DataEvent = ChangeStreamDocument & {
  ns: { db: string; coll: string };
  documentKey: { _id: unknown };
};

/**
 * One event per document: the last, carrying the fields changed by all of
 * the document's events in the batch. With `updateLookup` every event of a
 * batch sees the same live document, so stamping each separately would race
 * their stamp write-backs (the first would win locally, the last on Atlas).
 */
export function lastEventPerDocument<E extends DataEvent>(events: E[]): E[] {
  const latest = new Map<string, E>();
  for (const e of events) {
    const key = documentKeyOf(e.ns.coll, e.documentKey._id);
    const earlier = latest.get(key);
    latest.delete(key); // re-inserted below: the map keeps the order of last events
    latest.set(key, earlier ? mergeInto(earlier, e) : e);
  }
  return [...latest.values()];
}

function mergeInto<E extends DataEvent>(earlier: E, later: E): E {
  if (later.operationType !== 'update') return later;
  if (earlier.operationType === 'insert' || earlier.operationType === 'replace')
    return { ...later, operationType: 'replace' }; // every field is new since the batch began
  if (earlier.operationType !== 'update') return later;
  const a = earlier.updateDescription ?? {};
  const b = later.updateDescription ?? {};
  return {
    ...later,
    updateDescription: {
      ...b,
      updatedFields: { ...a.updatedFields, ...b.updatedFields },
      removedFields: [...new Set([...(a.removedFields ?? []), ...(b.removedFields ?? [])])],
    },
  };
}

/**
 * Captures every local write to a synced collection, whatever wrote it
 * (Mongoose, the raw driver, a shell), from a change stream on the local
 * replica set. Each captured change gets a new version, is pushed to Atlas at
 * once (or queued in the outbox when it cannot be) and stamped into the
 * document; the capture's resume token is saved only after that, so an
 * acknowledged local write is never lost.
 *
 * Writes by the sync engine itself are recognised from the event alone:
 * they always set `_sync`, host writes never do (the field is reserved).
 */
@Injectable()
export class LocalChangeCaptureService implements LocalCapture {
  private readonly logger = new Logger(LocalChangeCaptureService.name);
  private tailer?: ChangeStreamTailer;

  constructor(
    @InjectSyncConfig() private readonly config: ResolvedSyncConfig,
    private readonly stores: SyncStoresService,
    private readonly origin: OriginTrackerService,
    private readonly drainer: OutboxDrainerService,
    private readonly tombstones: TombstoneRepository,
    private readonly tokens: ResumeTokenRepository,
    private readonly monitor: MonitorService,
    private readonly events: EventEmitter2,
    private readonly rescan: LocalRescanService,
  ) {}

  get status() {
    return this.tailer?.status ?? { running: false, connected: false, consecutiveFailures: 0 };
  }

  start(): void {
    // Every Atlas batch waits for caughtUp(); the mark's event answers it within
    // one round trip while the stream long-polls an idle server.
    const progressMark = {
      collection: SYNC_COLLECTIONS.metadata,
      id: `capture-mark:${this.origin.instanceId}`,
    };
    this.tailer ??= new ChangeStreamTailer({
      name: 'local capture',
      db: () => this.stores.local,
      pipeline: () => [
        matchWithProgressMark(progressMark, {
          operationType: { $in: [...DATA_OPERATIONS, ...COLLECTION_OPERATIONS] },
          'ns.coll': { $not: /^(_sync_|system\.)/ },
          ...(this.config.collections ? { 'ns.coll': { $in: this.config.collections } } : {}),
          // The engine's own writes, dropped on the server: no post-image lookup each.
          $nor: ENGINE_WRITE_EVENTS,
        }),
      ],
      batchSize: Math.max(this.config.changeStreamBatchSize, this.config.outboxBatchSize),
      reconnect: {
        initialMs: Math.min(this.config.reconnectInterval, 1000),
        maxMs: this.config.maxReconnectInterval,
        maxAttempts: this.config.maxReconnectAttempts,
      },
      progressMark,
      loadToken: async () => {
        // A re-scan recorded after history loss runs (or continues) before the stream opens.
        await this.rescan.runPending((events) => this.captureBatch(events));
        return (await this.tokens.load(this.origin.instanceId, 'local'))?.token;
      },
      saveToken: (token) => this.tokens.save(this.origin.instanceId, 'local', token),
      handleBatch: (events) => this.captureBatch(events as DataEvent[]),
      onHistoryLost: async (err) => {
        // The local oplog rolled past our position: the local writes in the
        // gap are found by a re-scan of the synced collections (digest mismatch).
        this.events.emit(
          SyncEvents.error,
          new SyncErrorEvent('capture', `local history lost: ${String(err)}; re-scanning`),
        );
        await this.rescan.begin(`local history lost: ${String(err)}`);
      },
      onStateChange: (state, detail) =>
        this.events.emit(
          SyncEvents.stateChanged,
          new SyncStateChangedEvent('capture', state, detail),
        ),
    });
    this.tailer.start();
  }

  async stop(): Promise<void> {
    await this.tailer?.stop();
  }

  /** Resolves once every local write made before the call has been captured (or capture stopped). */
  caughtUp(): Promise<void> {
    return this.tailer?.caughtUp() ?? Promise.resolve();
  }

  /** Turns local change events into outbox entries and stamps. Idempotent on replay. */
  async captureBatch(events: DataEvent[]): Promise<void> {
    for (const e of events) {
      const warning = collectionOperationWarning('local', e);
      if (warning && this.config.pushesCollection(e.ns?.coll)) {
        this.logger.warn(warning);
        this.events.emit(SyncEvents.error, new SyncErrorEvent('capture', warning, e.ns?.coll));
      }
    }
    const relevant = events.filter(
      (e) => this.config.pushesCollection(e.ns?.coll) && isHostWrite(e),
    );
    if (!relevant.length) return;
    const byCollection = groupBy(lastEventPerDocument(relevant), (e) => e.ns.coll);

    const entries: NewOutboxEntry[] = [];
    const newTombstones: Tombstone[] = [];
    const stampWrites = new Map<string, AnyBulkWriteOperation<Document>[]>();
    const revived: { collection: string; id: unknown; upTo: SyncVersion }[] = [];

    for (const [collection, list] of byCollection) {
      const tombs = await this.tombstones.find(this.stores.local, collection, [
        ...new Set(list.map((e) => e.documentKey._id)),
      ]);
      const reapplied = await this.reappliedSince(collection, list, tombs);
      for (const e of list) {
        const id = e.documentKey._id;
        const tomb = tombs.get(idKey(id));
        if (e.operationType === 'delete') {
          // The engine writes a `remote` tombstone before deleting; such a delete is not ours to push.
          if (tomb?.src === 'remote' || reapplied.has(idKey(id))) continue;
          const v = this.origin.clock.tickAfter(tomb?._sync.v);
          const stamp: SyncStamp = { v, o: this.origin.instanceId };
          const t = tombstoneOf(collection, id, stamp, 'local');
          tombs.set(idKey(id), t);
          newTombstones.push(t);
          entries.push({ collection, id, op: 'delete', v, writtenAt: wallTimeOf(e) });
          this.origin.markLocalChange(collection, id, v);
          continue;
        }
        const doc = (e as { fullDocument?: Document | null }).fullDocument;
        if (!doc) continue; // deleted since; its delete event follows
        const previous = readStamp(doc);
        const v = this.origin.clock.tickAfter(maxVersion(previous?.v, tomb?._sync.v));
        const stamp: SyncStamp = { v, o: this.origin.instanceId, h: contentDigest(doc) };
        if (this.config.conflictResolutionStrategy === 'field-level')
          stamp.f = this.fieldStamps(e, doc, previous, v);
        entries.push({
          collection,
          id,
          op: 'upsert',
          v,
          base: previous?.v ?? tomb?._sync.v,
          doc: { ...doc, [SYNC_STAMP_FIELD]: stamp },
          writtenAt: wallTimeOf(e),
        });
        const ops = stampWrites.get(collection) ?? [];
        ops.push({
          updateOne: { filter: casFilter(id, previous?.v), update: stampUpdate(stamp) },
        });
        stampWrites.set(collection, ops);
        if (tomb) {
          revived.push({ collection, id, upTo: tomb._sync.v });
          tombs.delete(idKey(id));
        }
        this.origin.markLocalChange(collection, id, v);
      }
    }
    // Local tombstones first: a replay after a crash issues newer delete versions from them.
    await this.tombstones.upsert(this.stores.local, newTombstones);
    await faultPoint('capture:before-push');
    // On Atlas or in the outbox before the resume token moves past these
    // events: a crash anywhere before that replays them, and loses nothing.
    await this.drainer.pushCaptured(entries);
    for (const [collection, ops] of stampWrites) {
      const result = await this.stores.local
        .collection(collection)
        .bulkWrite(ops, { ordered: false });
      if (result.matchedCount < ops.length)
        await this.repairLostStamps(
          collection,
          entries.filter((e) => e.collection === collection && e.op === 'upsert'),
        );
    }
    for (const [collection, list] of groupBy(revived, (r) => r.collection))
      await this.tombstones.remove(this.stores.local, collection, list);
    await faultPoint('capture:after-stamps');
  }

  /**
   * A stamp write-back matched nothing: the engine wrote the document between
   * the capture reading it and stamping it (a remote state applied in that
   * instant). Atlas (or the outbox) has the captured state; where it is the newer one,
   * the local copy is set back to it, so this device agrees with what Atlas
   * will hold. Where the applied state is newer, it stands (the drainer finds
   * the captured entry stale).
   */
  private async repairLostStamps(collection: string, captured: NewOutboxEntry[]): Promise<void> {
    const coll = this.stores.local.collection(collection);
    const current = new Map(
      (await coll.find({ _id: { $in: captured.map((e) => e.id) } } as Document).toArray()).map(
        (d) => [idKey(d._id), d],
      ),
    );
    for (const entry of captured) {
      const key = idKey(entry.id);
      if (!current.has(key)) continue; // deleted since: its delete event follows
      const doc = current.get(key)!;
      const stamp = readStamp(doc);
      // No stamp: a host replace came after the capture read the document;
      // its own event follows and carries the newer state.
      if (!stamp) continue;
      if (stamp.v === entry.v || compareVersions(stamp.v, entry.v) > 0) continue;
      this.logger.warn(
        `Local ${collection} ${JSON.stringify(entry.id)} changed by sync while being captured; restoring the captured state ${entry.v}`,
      );
      // An update, not a replace: the capture tells the engine's writes by their `_sync` change.
      await coll.updateOne(casFilter(entry.id, stamp.v), stateUpdate(doc, entry.doc!));
    }
  }

  /**
   * Deletes whose document an apply has written again since (no host write
   * followed the delete, or it would be the document's last event here). The
   * apply that re-created it removed the `remote` tombstone the engine's own
   * delete left, so the delete cannot be told apart by its tombstone any more:
   * pushed as a host delete, it would delete the newer remote state on Atlas.
   */
  private async reappliedSince(
    collection: string,
    events: DataEvent[],
    tombs: Map<string, Tombstone>,
  ): Promise<Set<string>> {
    const ids = events
      .filter(
        (e) =>
          e.operationType === 'delete' && tombs.get(idKey(e.documentKey._id))?.src !== 'remote',
      )
      .map((e) => e.documentKey._id);
    const found = await findByIds(this.stores.local.collection(collection), ids, { _sync: 1 });
    return new Set(
      [...found]
        .filter(([, doc]) => readStamp(doc)?.o !== this.origin.instanceId)
        .map(([key]) => key),
    );
  }

  private fieldStamps(
    e: DataEvent,
    doc: Document,
    previous: SyncStamp | undefined,
    v: SyncVersion,
  ): Record<string, SyncVersion> {
    const base: Record<string, SyncVersion> = {};
    if (e.operationType === 'update' && previous) {
      for (const key of Object.keys(doc))
        if (key !== '_id' && key !== SYNC_STAMP_FIELD) base[key] = previous.f?.[key] ?? previous.v;
      Object.assign(base, previous.f ?? {});
      const d = e.updateDescription;
      for (const field of topLevelFields([
        ...Object.keys(d?.updatedFields ?? {}),
        ...(d?.removedFields ?? []),
      ]))
        base[field] = v;
      return base;
    }
    for (const key of Object.keys(doc))
      if (key !== '_id' && key !== SYNC_STAMP_FIELD) base[key] = v;
    // A replace removes fields too: their removal is this version's.
    for (const key of Object.keys(previous?.f ?? {})) base[key] ??= v;
    return base;
  }
}

/** When the local server made the write (the event's wall time, MongoDB 6.0+). */
function wallTimeOf(e: DataEvent): Date | undefined {
  return (e as { wallTime?: Date }).wallTime;
}
