/** What the capture plugin's hooks read from Mongoose models, filters, results and errors. */
import type { Document } from 'mongodb';
import type { Model } from 'mongoose';
import { redactMessage } from '../errors/sync.errors';

/** A host model of any document shape. */
export type AnyModel = Model<Document>;

/** The filter cast to the schema's types, as the write will send it; undefined when it does not cast. */
export function castFilter(model: AnyModel, filter: unknown): Document | undefined {
  try {
    return model.find(filter as Document).cast(model) as Document;
  } catch {
    return undefined;
  }
}

export const INVALID = Symbol('invalid id');

/** The id a document to insert already has (cast as Mongoose will), undefined when Mongoose assigns one. */
export function explicitId(model: AnyModel, doc: unknown, lean: boolean): unknown {
  if (!isObject(doc)) return INVALID;
  const raw = doc._id;
  if (raw === undefined || raw === null) return undefined;
  if (lean || (doc as { $__?: unknown }).$__) return raw; // lean: stored as given; a document: cast already
  try {
    return model.castObject({ _id: raw })._id;
  } catch {
    return INVALID; // the insert fails validation the same way
  }
}

/** The `_id` a filter pins (`{_id: v}` or `{_id: {$eq: v}}`). */
export function equalityId(filter: Document): unknown {
  const v = filter._id;
  if (v === undefined) return undefined;
  if (isObject(v) && !(v as { _bsontype?: unknown })._bsontype && !(v instanceof Date)) {
    const keys = Object.keys(v);
    if (keys.some((k) => k.startsWith('$'))) return keys.length === 1 ? v.$eq : undefined;
  }
  return v;
}

export function resultIds(result: unknown): unknown[] {
  if (!isObject(result)) return [];
  const r = result as {
    _id?: unknown;
    upsertedId?: unknown;
    value?: { _id?: unknown } | null;
    lastErrorObject?: { upserted?: unknown };
  };
  return [r._id, r.upsertedId, r.value?._id, r.lastErrorObject?.upserted].filter(
    (id) => id !== undefined && id !== null,
  );
}

/** True when the model's ids are auto ObjectIds (new ones sort after the time they were made). */
export function objectIds(model: AnyModel): boolean {
  return model.schema.path('_id')?.instance === 'ObjectId';
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null;
}

export function isServerError(err: unknown): boolean {
  return err instanceof Error && /^Mongo/.test(err.name); // MongoServerError, MongoNetworkError, MongooseServerSelectionError...
}

export function describe(err: unknown): string {
  return redactMessage(err instanceof Error ? err.message : String(err));
}
