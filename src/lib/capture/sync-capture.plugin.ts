import { Logger } from '@nestjs/common';
import type { Db, Document, ObjectId } from 'mongodb';
import type { HydratedDocument, MongooseQueryMiddleware, Query, Schema } from 'mongoose';
import { SYNC_COLLECTION_PREFIX, SYNC_STAMP_FIELD } from '../bidirectional-sync.constants';
import { idKey } from '../common/sync-stamp';
import { SyncCaptureError } from '../errors/sync.errors';
import { DirtyMarkerRepository } from './dirty-marker.repository';
import { SyncCaptureChannel, syncCaptureChannel } from './sync-capture.channel';
import {
  AnyModel,
  castFilter,
  describe,
  equalityId,
  explicitId,
  INVALID,
  isObject,
  isServerError,
  objectIds,
  resultIds,
} from './sync-capture.helpers';

export { SyncCaptureChannel, syncCaptureChannel } from './sync-capture.channel';

const logger = new Logger('SyncCapturePlugin');

/** Query middleware that writes. */
const QUERY_WRITES: MongooseQueryMiddleware[] = [
  'updateOne',
  'updateMany',
  'findOneAndUpdate',
  'findOneAndReplace',
  'replaceOne',
  'deleteOne',
  'deleteMany',
  'findOneAndDelete',
];

const SINGLE_DOCUMENT_WRITES = new Set<string>([
  'updateOne',
  'findOneAndUpdate',
  'findOneAndReplace',
  'replaceOne',
  'deleteOne',
  'findOneAndDelete',
]);
const UPSERTING_WRITES = new Set<string>([
  'updateOne',
  'updateMany',
  'findOneAndUpdate',
  'findOneAndReplace',
  'replaceOne',
]);
const BULK_FILTER_OPS = ['updateOne', 'updateMany', 'replaceOne', 'deleteOne', 'deleteMany'];

/**
 * A single-document write by filter marks this many candidates: the server
 * writes the first match, which stays among them when concurrent writes
 * change which document that is. Candidates it did not write are dropped
 * by the capture (unchanged content).
 */
const SINGLE_WRITE_CANDIDATES = 16;
/** Markers are written in bulks of this many documents (bounds memory on large updateMany). */
const MARK_CHUNK = 1000;
/** Overlapping bulkWrites of one model remembered until their post hooks ran. */
const MAX_BULK_IN_FLIGHT = 64;

type AnyDocument = HydratedDocument<unknown>;
type AnyQuery = Query<unknown, unknown> & { op?: string };

interface Target {
  collection: string;
  markers: DirtyMarkerRepository;
  channel: SyncCaptureChannel;
  db: Db;
}

/** State a pre hook hands to its post hook. */
interface QueryWriteState {
  target: Target;
  ids: unknown[];
  filter: Document;
  upsert: boolean;
}

const hostSaves = new WeakMap<AnyDocument, Target>();
const engineSaves = new WeakMap<AnyDocument, { target: Target; token: ObjectId }>();
const queryWrites = new WeakMap<AnyQuery, QueryWriteState>();
/** Ids of each model's bulkWrites in flight (their post hook gets no ids, see `afterBulkWrite`). */
const bulkWritesInFlight = new WeakMap<AnyModel, unknown[][]>();

/**
 * Captures local writes made through Mongoose models when the local MongoDB
 * is a standalone server (no change streams). Apply it to the local
 * connection before models are compiled:
 *
 * ```ts
 * MongooseModule.forRoot(uri, {
 *   connectionFactory: (connection) => {
 *     connection.plugin(syncCapturePlugin);
 *     return connection;
 *   },
 * });
 * ```
 *
 * Before each write (document `save`, `create`, `insertMany`, `bulkWrite`
 * and every query write) it records a marker per affected document in
 * `_sync_dirty`; the module's capture turns markers into outbox entries. If
 * a marker cannot be recorded, the write fails with `SyncCaptureError`
 * instead of being made unrecorded. Writes made with the driver directly
 * are not seen. With a replica set the module uses its change stream and
 * the plugin records nothing.
 *
 * @publicApi
 */
export function syncCapturePlugin(schema: Schema): void {
  schema.pre('save', async function (this: AnyDocument) {
    await beforeSave(this);
  });
  schema.post('save', async function (this: AnyDocument) {
    await afterSave(this, true);
  });
  schema.post('save', { errorHandler: true }, async function (this: AnyDocument) {
    await afterSave(this, false);
  });

  schema.pre(QUERY_WRITES, { document: false, query: true }, async function (this: AnyQuery) {
    await beforeQueryWrite(this);
  });
  schema.post(
    QUERY_WRITES,
    { document: false, query: true },
    async function (this: AnyQuery, result: unknown) {
      await afterQueryWrite(this, result);
    },
  );
  schema.post(
    QUERY_WRITES,
    { document: false, query: true, errorHandler: true },
    async function (this: AnyQuery) {
      await afterQueryWrite(this, undefined);
    },
  );

  schema.pre(
    'insertMany',
    async function (this: AnyModel, _next: unknown, docs: unknown, options?: { lean?: boolean }) {
      await beforeInsertMany(this, docs, !!options?.lean);
    },
  );
  schema.post('insertMany', async function (this: AnyModel, result: unknown) {
    await afterInsertMany(this, result);
  });
  schema.post('insertMany', { errorHandler: true }, async function (this: AnyModel, err: unknown) {
    await afterInsertMany(this, (err as { insertedDocs?: unknown })?.insertedDocs ?? []);
  });

  schema.pre('bulkWrite', async function (this: AnyModel, _next: unknown, ops: unknown) {
    await beforeBulkWrite(this, Array.isArray(ops) ? (ops as Document[]) : []);
  });
  schema.post('bulkWrite', async function (this: AnyModel, result: unknown) {
    await afterBulkWrite(this, result);
  });
  schema.post('bulkWrite', { errorHandler: true }, async function (this: AnyModel, err: unknown) {
    await afterBulkWrite(this, err);
  });
}

/** Where a model's writes are recorded; undefined when they are not (module collections, change-stream mode). */
async function targetOf(model: AnyModel | undefined): Promise<Target | undefined> {
  const collection = model?.collection?.collectionName;
  if (!model || !collection) return undefined;
  if (collection.startsWith(SYNC_COLLECTION_PREFIX) || collection.startsWith('system.'))
    return undefined;
  const connection = model.db;
  const channel = syncCaptureChannel(connection);
  if (!channel.recording) return undefined;
  const db = (connection.db ?? (await connection.asPromise()).db) as unknown as Db;
  return { collection, markers: new DirtyMarkerRepository(db), channel, db };
}

/**
 * Runs the recording of a write that is about to be made. A server error
 * fails the write (made unrecorded it would never be pushed); anything else
 * is a problem of the plugin's own and must not cost the host its write.
 */
async function recordOrFail(what: string, record: () => Promise<void>): Promise<void> {
  try {
    await record();
  } catch (err) {
    if (isServerError(err))
      throw new SyncCaptureError(
        `Could not record ${what} for sync, so it was not made: ${describe(err)}`,
        { cause: err },
      );
    logger.error(`Recording ${what} for sync failed; the write goes on: ${describe(err)}`);
  }
}

/**
 * Bookkeeping after a write. Never fails the write: the markers written
 * before it (or the pending-inserts marker) already make it durable.
 */
async function afterwards(what: string, work: () => Promise<void>): Promise<void> {
  try {
    await work();
  } catch (err) {
    logger.warn(`Bookkeeping after ${what} failed (the write is recorded): ${describe(err)}`);
  }
}

async function beforeSave(doc: AnyDocument): Promise<void> {
  if ((doc as { $isSubdocument?: boolean }).$isSubdocument) return; // saved with its parent
  const model = doc.constructor as AnyModel;
  const id = doc._id;
  if (!model?.collection || id === undefined || id === null) return;
  // Only the engine writes `_sync` (it applies remote states with save()): not a change to push.
  if (doc.isModified(SYNC_STAMP_FIELD)) {
    await afterwards('an applied remote change', async () => {
      const target = await targetOf(model);
      const token = target && (await target.markers.tokenOf(target.collection, id));
      if (target && token) engineSaves.set(doc, { target, token });
    });
    return;
  }
  if (!doc.isNew && !doc.modifiedPaths().length) return; // save() writes nothing
  await recordOrFail(`a save to ${model.collection.collectionName}`, async () => {
    const target = await targetOf(model);
    if (!target) return;
    const before = await readByIds(target, [id]);
    await target.markers.markBefore(target.collection, [
      { id, doc: before.get(idKey(id)) ?? null },
    ]);
    hostSaves.set(doc, target);
  });
}

async function afterSave(doc: AnyDocument, succeeded: boolean): Promise<void> {
  const host = hostSaves.get(doc);
  hostSaves.delete(doc);
  if (host) {
    await afterwards('a save', () => host.markers.markAfter(host.collection, [doc._id]));
    host.channel.recorded();
  }
  const engine = engineSaves.get(doc);
  engineSaves.delete(doc);
  if (engine && succeeded) {
    // A host write marked this document before: compare it with the state
    // just applied from Atlas, or that state would be pushed back as a local edit.
    await afterwards('an applied remote change', async () => {
      const now = await readByIds(engine.target, [doc._id]);
      await engine.target.markers.rebase(
        engine.target.collection,
        doc._id,
        engine.token,
        now.get(idKey(doc._id)) ?? null,
      );
    });
  }
}

async function beforeQueryWrite(query: AnyQuery): Promise<void> {
  const model = query.model as AnyModel | undefined;
  if (!model?.collection) return;
  const op = query.op ?? 'write';
  await recordOrFail(`${op} on ${model.collection.collectionName}`, async () => {
    const target = await targetOf(model);
    if (!target) return;
    const filter = castFilter(model, query.getFilter());
    if (!filter) return; // the write fails on the same cast
    const options = query.getOptions() as { sort?: unknown; upsert?: boolean };
    const single = SINGLE_DOCUMENT_WRITES.has(op);
    const ids = await markMatching(target, filter, single, options.sort);
    const upsert = !!options.upsert && UPSERTING_WRITES.has(op);
    if (upsert && !ids.length) ids.push(...(await markUpsertTarget(target, model, filter)));
    queryWrites.set(query, { target, ids, filter, upsert });
  });
}

async function afterQueryWrite(query: AnyQuery, result: unknown): Promise<void> {
  const state = queryWrites.get(query);
  if (!state) return;
  queryWrites.delete(query);
  const { target } = state;
  await afterwards(`${query.op} on ${target.collection}`, async () => {
    const known = new Set(state.ids.map(idKey));
    let written = resultIds(result).filter((id) => !known.has(idKey(id)));
    if (state.upsert && !state.ids.length && !written.length && result !== undefined) {
      // findOneAndUpdate/Replace with `new: false` returns nothing for an
      // upserted document: find it by the filter (the pending-inserts marker
      // covers one that no longer matches).
      const now = await target.db
        .collection(target.collection)
        .find(state.filter, { projection: { _id: 1 }, limit: SINGLE_WRITE_CANDIDATES })
        .toArray();
      written = now.map((d) => d._id);
    }
    await target.markers.markAfter(target.collection, [...state.ids, ...written]);
  });
  target.channel.recorded();
}

async function beforeInsertMany(model: AnyModel, docs: unknown, lean: boolean): Promise<void> {
  await recordOrFail(`insertMany on ${model.collection.collectionName}`, async () => {
    const target = await targetOf(model);
    if (!target) return;
    const list = (Array.isArray(docs) ? docs : [docs]).filter(isObject);
    const ids: unknown[] = [];
    let unknownIds = false;
    for (const doc of list) {
      const id = explicitId(model, doc, lean);
      if (id === undefined) unknownIds = true;
      else if (id !== INVALID) ids.push(id);
    }
    // Mongoose assigns missing ids after this hook; they are found again if the process dies.
    if (unknownIds) await target.markers.markPendingInserts(target.collection, objectIds(model));
    await markIds(target, ids);
  });
}

async function afterInsertMany(model: AnyModel, result: unknown): Promise<void> {
  const target = await targetOf(model).catch(() => undefined);
  if (!target) return;
  const ids = Array.isArray(result)
    ? result.filter(isObject).map((d) => d._id)
    : Object.values((result as { insertedIds?: Record<string, unknown> })?.insertedIds ?? {});
  await afterwards(`insertMany on ${target.collection}`, () =>
    target.markers.markAfter(
      target.collection,
      ids.filter((id) => id !== undefined),
    ),
  );
  target.channel.recorded();
}

async function beforeBulkWrite(model: AnyModel, ops: Document[]): Promise<void> {
  await recordOrFail(`bulkWrite on ${model.collection.collectionName}`, async () => {
    const target = await targetOf(model);
    if (!target) return;
    const byId: unknown[] = [];
    const ids: unknown[] = [];
    let unknownIds = false;
    for (const op of ops) {
      if (op?.insertOne) {
        const id = explicitId(model, op.insertOne.document, false);
        if (id === undefined) unknownIds = true;
        else if (id !== INVALID) byId.push(id);
        continue;
      }
      const kind = BULK_FILTER_OPS.find((k) => op?.[k]);
      if (!kind) continue;
      const spec = op[kind] as { filter?: Document; sort?: unknown; upsert?: boolean };
      const filter = castFilter(model, spec.filter ?? {});
      if (!filter) continue; // Mongoose rejects the same cast
      const id = equalityId(filter);
      if (id !== undefined && Object.keys(filter).length === 1) {
        byId.push(id); // one read for every by-id operation
        continue;
      }
      const matched = await markMatching(target, filter, kind.endsWith('One'), spec.sort);
      ids.push(...matched);
      if (spec.upsert && !matched.length) {
        const upserted = await markUpsertTarget(target, model, filter);
        if (!upserted.length) unknownIds = true;
        ids.push(...upserted);
      }
    }
    if (unknownIds) await target.markers.markPendingInserts(target.collection, objectIds(model));
    ids.push(...(await markIds(target, byId)));
    const inFlight = bulkWritesInFlight.get(model) ?? [];
    inFlight.push(ids);
    bulkWritesInFlight.set(model, inFlight.slice(-MAX_BULK_IN_FLIGHT));
  });
}

/**
 * Mongoose gives a bulkWrite's post hook only the result, not the
 * operations: every bulkWrite of the model still in flight is re-armed (an
 * extra look for the others), and the oldest is forgotten. Ids created by
 * the write come from the result.
 */
async function afterBulkWrite(model: AnyModel, result: unknown): Promise<void> {
  const inFlight = bulkWritesInFlight.get(model) ?? [];
  const ids = inFlight.flat();
  inFlight.shift();
  const r = result as {
    insertedIds?: Record<string, unknown>;
    upsertedIds?: Record<string, unknown>;
  };
  ids.push(...Object.values(r?.insertedIds ?? {}), ...Object.values(r?.upsertedIds ?? {}));
  const target = await targetOf(model).catch(() => undefined);
  if (!target) return;
  await afterwards(`bulkWrite on ${target.collection}`, () =>
    target.markers.markAfter(
      target.collection,
      ids.filter((id) => id !== undefined),
    ),
  );
  target.channel.recorded();
}

/** Marks the documents a filter matches (the first candidates of a single-document write). */
async function markMatching(
  target: Target,
  filter: Document,
  single: boolean,
  sort: unknown,
): Promise<unknown[]> {
  const cursor = target.db.collection(target.collection).find(filter, {
    ...(single ? { limit: SINGLE_WRITE_CANDIDATES } : {}),
    ...(isObject(sort) ? { sort: sort as Document } : {}),
  });
  const ids: unknown[] = [];
  let chunk: { id: unknown; doc: Document }[] = [];
  for await (const doc of cursor) {
    chunk.push({ id: doc._id, doc });
    ids.push(doc._id);
    if (chunk.length >= MARK_CHUNK) {
      await target.markers.markBefore(target.collection, chunk);
      chunk = [];
    }
  }
  await target.markers.markBefore(target.collection, chunk);
  return ids;
}

/** Marks documents by id, with their current state (null when they do not exist yet). */
async function markIds(target: Target, ids: unknown[]): Promise<unknown[]> {
  const unique = [...new Map(ids.map((id) => [idKey(id), id])).values()];
  const before = await readByIds(target, unique);
  await target.markers.markBefore(
    target.collection,
    unique.map((id) => ({ id, doc: before.get(idKey(id)) ?? null })),
  );
  return unique;
}

/** An upsert that matched nothing inserts: by the filter's `_id` when it has one, else a pending-inserts marker. */
async function markUpsertTarget(
  target: Target,
  model: AnyModel,
  filter: Document,
): Promise<unknown[]> {
  const id = equalityId(filter);
  if (id !== undefined) return markIds(target, [id]);
  await target.markers.markPendingInserts(target.collection, objectIds(model));
  return [];
}

async function readByIds(target: Target, ids: unknown[]): Promise<Map<string, Document>> {
  if (!ids.length) return new Map();
  const docs = await target.db
    .collection(target.collection)
    .find({ _id: { $in: ids } } as Document)
    .toArray();
  return new Map(docs.map((d) => [idKey(d._id), d]));
}
