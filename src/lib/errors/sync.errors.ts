/** Base class of every error the sync module throws. @publicApi */
export class SyncError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Invalid configuration; the message names the option and its environment variable. */
export class SyncConfigurationError extends SyncError {
  constructor(readonly problems: string[]) {
    super(`Invalid bidirectional sync configuration:\n  - ${problems.join('\n  - ')}`);
  }
}

/** A change event or document the engine cannot apply (it is dead-lettered, never dropped silently). */
export class InvalidChangeError extends SyncError {}

/**
 * `syncCapturePlugin` could not record a model write for sync; the write was
 * not made (made unrecorded, it would never reach Atlas).
 */
export class SyncCaptureError extends SyncError {}

/** Redacts credentials from a MongoDB connection string (never log or return one unredacted). */
export function redactUri(uri: string): string {
  return uri.replace(/\/\/([^@/]+)@/, '//***@');
}

/** Redacts every connection string found in a message. */
export function redactMessage(message: string): string {
  return message.replace(/mongodb(\+srv)?:\/\/[^@\s/]+@/g, (m) =>
    m.replace(/\/\/[^@]+@/, '//***@'),
  );
}
