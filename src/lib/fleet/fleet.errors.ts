import { SyncError } from '../errors/sync.errors';

/** Invalid fleet options; the message names each option with its environment variable. */
export class FleetConfigurationError extends SyncError {
  constructor(readonly problems: string[]) {
    super(`Invalid fleet mode configuration:\n  - ${problems.join('\n  - ')}`);
  }
}

/** No NATS server could be reached (or the connection was lost for good). */
export class NatsConnectionError extends SyncError {}

/**
 * The NATS server refused the credentials (wrong user/password/token/creds, or expired).
 * The message names the user and the server, never a secret.
 */
export class NatsAuthenticationError extends NatsConnectionError {
  constructor(
    message: string,
    readonly user: string | undefined,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The server refused an operation this user has no permission for. */
export class NatsPermissionError extends SyncError {
  constructor(
    message: string,
    readonly operation: 'publish' | 'subscribe' | 'jetstream-api',
    readonly subject: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A stream exists with a configuration that cannot be changed to the one fleet mode needs. */
export class FleetStreamConfigError extends SyncError {}

/** A fleet message that is not what the codec writes (it is dead-lettered, never applied). */
export class FleetMessageDecodeError extends SyncError {}

/** A device's stream position is older than the stream's first message: it must re-baseline. */
export class FleetPositionExpiredError extends SyncError {
  constructor(
    readonly stream: string,
    readonly position: number,
    readonly firstSequence: number,
  ) {
    super(
      `stream ${stream} no longer holds sequence ${position + 1} (first is ${firstSequence}): a re-baseline is needed`,
    );
  }
}

/** Removes passwords and tokens from NATS URLs in a message (`nats://user:secret@host`). */
export function redactNatsMessage(message: string): string {
  return message.replace(/\b((?:nats|tls|wss?):\/\/)[^@\s/]+@/g, '$1***@');
}

/** A re-baseline through the relays failed (no relay, a timeout, or the relay's error). */
export class FleetRebaselineError extends SyncError {}
