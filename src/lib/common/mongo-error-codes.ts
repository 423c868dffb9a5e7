/** MongoDB server error codes the engine acts on (see the server's error_codes.yml). */
export const MongoErrorCode = {
  /** A write hit a unique index: a concurrent insert of the same `_id` won. */
  DuplicateKey: 11000,
  /** The collection's `$jsonSchema` validator rejected the document. */
  DocumentValidationFailure: 121,
  /** A malformed command or value (an unusable resume token, among others). */
  FailedToParse: 9,
} as const;
