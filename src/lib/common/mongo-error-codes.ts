/**
 * The MongoDB server error codes the engine reacts to, named after the
 * server's `codeName`. One place, so a bare number never has to be looked up.
 */
export const MONGO_ERROR_CODES = {
  /** A value the server cannot parse; opening a change stream, it means the stored resume token is unreadable (as dead as a pruned one). */
  FailedToParse: 9,
  /** A unique index already holds the key: a compare-and-set insert lost its race, or a lease/metadata document already exists. */
  DuplicateKey: 11000,
  /** The collection's `$jsonSchema` validator refused the document: dead-lettered, like a Mongoose `ValidationError`. */
  DocumentValidationFailure: 121,
  /** The resume token is not valid for this stream: it can never be used again. */
  InvalidResumeToken: 260,
  /** The change stream cannot be resumed at all: its token can never be used again. */
  ChangeStreamFatalError: 280,
  /** The oplog no longer reaches back to the resume point: the engine re-baselines. */
  ChangeStreamHistoryLost: 286,
  /** `$changeStream` on a standalone server (no replica set): the Mongoose plugin captures instead. */
  ChangeStreamNeedsReplicaSet: 40573,
} as const;

export type MongoErrorCode = (typeof MONGO_ERROR_CODES)[keyof typeof MONGO_ERROR_CODES];

/** The numeric `code` of a server error, if it has one. */
export function mongoErrorCode(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | null | undefined)?.code;
  return typeof code === 'number' ? code : undefined;
}

/** True when `err` is a server error with the given code. */
export function hasMongoErrorCode(err: unknown, code: MongoErrorCode): boolean {
  return mongoErrorCode(err) === code;
}
