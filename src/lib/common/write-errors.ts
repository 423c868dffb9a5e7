/** One failed statement of a bulk write or `insertMany`. */
export interface StatementError {
  index: number;
  code: number;
  errmsg?: string;
}

/**
 * The failed statements of a bulk write error (the driver reports one as an
 * object, several as an array); `undefined` when the error is not a bulk
 * write's (a network error, say).
 */
export function statementErrorsOf(err: unknown): StatementError[] | undefined {
  const writeErrors = (err as { writeErrors?: unknown } | undefined)?.writeErrors;
  if (!writeErrors) return undefined;
  return (Array.isArray(writeErrors) ? writeErrors : [writeErrors]) as StatementError[];
}
