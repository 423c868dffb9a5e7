import { readFileSync } from 'node:fs';
import { Injectable, Logger, OnApplicationShutdown } from '@nestjs/common';
import { jetstream, jetstreamManager, JetStreamClient, JetStreamManager } from '@nats-io/jetstream';
import {
  AuthorizationError,
  credsAuthenticator,
  NatsConnection,
  PermissionViolationError,
  UserAuthenticationExpiredError,
} from '@nats-io/nats-core';
import { connect, NodeConnectionOptions } from '@nats-io/transport-node';
import { InjectFleetConfig } from './fleet.decorators';
import type { ResolvedFleetConfig } from './fleet-config';
import {
  NatsAuthenticationError,
  NatsConnectionError,
  NatsPermissionError,
  redactNatsMessage,
} from './fleet.errors';
import { provisionFleetStreams, StreamProvisionResult } from './fleet-streams';
import { deviceInboxPrefix } from './fleet-subjects';

export type NatsConnectionState = 'idle' | 'connecting' | 'connected' | 'reconnecting' | 'closed';

/** What health, the REST API and `/metrics` report about the NATS connection (no secret). */
export interface NatsConnectionStatus {
  state: NatsConnectionState;
  /** The server the client is connected to (host:port), when connected. */
  server?: string;
  /** The configured servers, credentials removed. */
  servers: string[];
  authMethod: ResolvedFleetConfig['authMethod'];
  user?: string;
  /** Round trip of the last `measureRtt()` (ms). */
  rttMs?: number;
  reconnects: number;
  /** The last error the client or the server reported, redacted. */
  lastError?: string;
  lastErrorAt?: Date;
  /** When `state` last changed. */
  since: Date;
}

/**
 * The process's one NATS connection: connects with endless reconnects (per the options),
 * tracks its state for health and metrics, hands out the JetStream client and manager, and
 * provisions the fleet streams. Errors come out typed (`NatsAuthenticationError`,
 * `NatsConnectionError`, `NatsPermissionError`) with credentials removed.
 */
@Injectable()
export class NatsConnectionService implements OnApplicationShutdown {
  private readonly logger = new Logger(NatsConnectionService.name);
  private nc?: NatsConnection;
  private connecting?: Promise<NatsConnection>;
  private state: NatsConnectionState = 'idle';
  private since = new Date();
  private reconnects = 0;
  private rttMs?: number;
  private lastError?: string;
  private lastErrorAt?: Date;
  private manager?: Promise<JetStreamManager>;

  constructor(@InjectFleetConfig() private readonly config: ResolvedFleetConfig) {}

  /** Connects (once; concurrent calls share the attempt) and returns the connection. */
  async connect(): Promise<NatsConnection> {
    if (this.nc && !this.nc.isClosed()) return this.nc;
    this.connecting ??= this.open().finally(() => (this.connecting = undefined));
    return this.connecting;
  }

  /** The open connection; throws `NatsConnectionError` before `connect()` or after close. */
  get connection(): NatsConnection {
    if (!this.nc || this.nc.isClosed())
      throw new NatsConnectionError(`not connected to NATS (${this.state})`);
    return this.nc;
  }

  jetstream(): JetStreamClient {
    return jetstream(this.connection);
  }

  /**
   * The JetStream manager. It skips the account-info probe a device may not be allowed
   * (`$JS.API.INFO` is allowed by docs/nats, but a stricter config need not).
   */
  jetstreamManager(): Promise<JetStreamManager> {
    this.manager ??= jetstreamManager(this.connection, { checkAPI: false });
    return this.manager;
  }

  /** Creates or updates the changes and push streams (relays; idempotent). */
  async provisionStreams(): Promise<StreamProvisionResult[]> {
    const results = await provisionFleetStreams(await this.jetstreamManager(), this.config);
    for (const r of results)
      if (r.action !== 'unchanged')
        this.logger.log(
          `stream ${r.name} ${r.action}${r.changed.length ? ` (${r.changed.join(', ')})` : ''}`,
        );
    return results;
  }

  /** Measures the round trip to the server (a PING/PONG) and records it in the status. */
  async measureRtt(): Promise<number> {
    this.rttMs = await this.connection.rtt();
    return this.rttMs;
  }

  status(): NatsConnectionStatus {
    const connected = this.nc && !this.nc.isClosed() && this.state === 'connected';
    return {
      state: this.state,
      server: connected ? this.nc?.getServer() : undefined,
      servers: this.config.redactedServers,
      authMethod: this.config.authMethod,
      user: this.config.user,
      rttMs: this.rttMs,
      reconnects: this.reconnects,
      lastError: this.lastError,
      lastErrorAt: this.lastErrorAt,
      since: this.since,
    };
  }

  /** Drains and closes the connection (pending publishes are flushed first). */
  async close(): Promise<void> {
    const nc = this.nc;
    this.manager = undefined;
    if (!nc || nc.isClosed()) return;
    await nc.drain().catch(() => nc.close());
    this.setState('closed');
  }

  async onApplicationShutdown(): Promise<void> {
    await this.close();
  }

  /** The client options, without logging them (they hold the credentials). */
  private connectionOptions(): NodeConnectionOptions {
    const c = this.config;
    const options: NodeConnectionOptions = {
      servers: c.servers,
      name:
        c.connectionName ??
        ['nest-bidirectional-sync', c.role, c.deviceId].filter(Boolean).join(':'),
      timeout: c.connectTimeout,
      reconnect: true,
      maxReconnectAttempts: c.maxReconnectAttempts,
      reconnectTimeWait: c.reconnectTimeWait,
    };
    // A device's permissions allow replies on its own inbox prefix only.
    if (c.role === 'device' && c.deviceId) options.inboxPrefix = deviceInboxPrefix(c.deviceId);
    if (c.credsFile) options.authenticator = credsAuthenticator(readFileSync(c.credsFile));
    else if (c.user !== undefined) {
      options.user = c.user;
      options.pass = c.password;
    } else if (c.token) options.token = c.token;
    return options;
  }

  private async open(): Promise<NatsConnection> {
    this.setState('connecting');
    let nc: NatsConnection;
    try {
      nc = await connect(this.connectionOptions());
    } catch (err) {
      const error = this.translateConnectError(err);
      this.recordError(error);
      this.setState('closed');
      throw error;
    }
    this.nc = nc;
    this.manager = undefined;
    this.setState('connected');
    this.logger.log(
      `connected to ${nc.getServer()} as ${this.config.user ?? this.config.authMethod}`,
    );
    void this.watch(nc);
    return nc;
  }

  /** Follows the client's status events until the connection closes. */
  private async watch(nc: NatsConnection): Promise<void> {
    void nc.closed().then((err) => {
      if (err) this.recordError(this.translateConnectError(err));
      if (this.nc === nc) this.setState('closed');
    });
    for await (const s of nc.status()) {
      switch (s.type) {
        case 'disconnect':
        case 'reconnecting':
          if (this.state !== 'reconnecting') {
            this.setState('reconnecting');
            this.logger.warn(`lost the connection to NATS; reconnecting`);
          }
          break;
        case 'reconnect':
          this.reconnects++;
          this.setState('connected');
          this.logger.log(`reconnected to ${nc.getServer()}`);
          break;
        case 'error':
          this.recordError(s.error);
          break;
        case 'close':
          this.setState('closed');
          break;
        default:
          break;
      }
    }
  }

  private translateConnectError(err: unknown): Error {
    const message = redactNatsMessage(err instanceof Error ? err.message : String(err));
    const servers = this.config.redactedServers.join(', ');
    if (err instanceof AuthorizationError || err instanceof UserAuthenticationExpiredError)
      return new NatsAuthenticationError(
        `NATS at ${servers} refused the credentials (${this.config.authMethod}${this.config.user ? ` of user "${this.config.user}"` : ''}): ${message}`,
        this.config.user,
        { cause: err },
      );
    return new NatsConnectionError(`could not connect to NATS at ${servers}: ${message}`, {
      cause: err,
    });
  }

  private recordError(err: unknown): void {
    this.lastError = redactNatsMessage(err instanceof Error ? err.message : String(err));
    this.lastErrorAt = new Date();
  }

  private setState(state: NatsConnectionState): void {
    if (state === this.state) return;
    this.state = state;
    this.since = new Date();
  }
}

/**
 * Turns the client's permission errors into `NatsPermissionError` (naming the subject and the
 * operation); other errors are returned unchanged. JetStream API refusals surface as
 * permission violations on `$JS.API.…` subjects and are classified as `jetstream-api`.
 */
export function toNatsPermissionError(err: unknown): unknown {
  const violation = findCause(err, PermissionViolationError);
  if (!violation) return err;
  const operation = violation.subject.startsWith('$JS.API.')
    ? 'jetstream-api'
    : violation.operation === 'publish'
      ? 'publish'
      : 'subscribe';
  return new NatsPermissionError(
    `NATS refused ${operation} on "${violation.subject}": ${violation.message}`,
    operation,
    violation.subject,
    { cause: err },
  );
}

function findCause<T extends Error>(
  err: unknown,
  type: new (...args: never[]) => T,
): T | undefined {
  for (let e: unknown = err, depth = 0; e && depth < 5; depth++) {
    if (e instanceof type) return e;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}
