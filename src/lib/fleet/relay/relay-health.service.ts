import { Injectable } from '@nestjs/common';
import { redactDeep } from '../../errors/redact-deep';
import { CachedReading } from '../cached-reading';
import { InjectFleetConfig } from '../fleet.decorators';
import type { ResolvedFleetConfig } from '../fleet-config';
import { NatsConnectionService } from '../nats-connection.service';
import { RelayService } from './relay.service';

export type RelayHealthState = 'ok' | 'degraded' | 'down';

/** A push failure this recent makes the relay `degraded` (ms). */
const RECENT_PUSH_ERROR_MS = 30_000;

/** What the relay's `GET /health` serves (and its `/metrics` are read from); no secret. */
export interface RelayHealth {
  /** `down` (HTTP 503): not running or NATS closed; `degraded`: working with a problem. */
  status: RelayHealthState;
  /** Why it is not `ok`. */
  reasons: string[];
  /** `active`: holds the lease, tails Atlas and publishes changes; `standby`: pushes only. */
  role: 'active' | 'standby';
  instanceId: string;
  lease: { holderId: string; currentHolder: string | null; term: number | null };
  nats: {
    state: string;
    server: string | null;
    servers: string[];
    reconnects: number;
    lastError: string | null;
  };
  /** Atlas → devices (the active relay only). */
  changes: {
    running: boolean;
    /** The Atlas change stream is open. */
    connected: boolean;
    published: number;
    duplicates: number;
    /** Atlas states read and not yet acknowledged by JetStream (the batch in progress). */
    unpublished: number;
    lastPublishedAt: string | null;
    /** Atlas write to JetStream acknowledgement of the last published batch (ms). */
    lastPublishLagMs: number | null;
    lastError: string | null;
  };
  /** Devices → Atlas (every relay). */
  pushes: {
    running: boolean;
    partitions: number;
    /** The partitions this relay works (holds the lease of). */
    owned: number[];
    applied: number;
    stale: number;
    rejected: number;
    retried: number;
    /**
     * Pushes on the push stream not yet applied to Atlas by any relay (the work queue's
     * depth; null before the first reading).
     */
    pending: number | null;
    lastError: string | null;
  };
  checkedAt: string;
}

/**
 * The relay's health: its role, lease, NATS connection, publisher lag and the push backlog,
 * with a verdict (`ok`, `degraded`, `down`) and the reasons for it.
 */
@Injectable()
export class RelayHealthService {
  /**
   * The push stream's depth: it is a work queue, so every message on it is a push no relay
   * has acknowledged (applied) yet.
   */
  private readonly pushPending = new CachedReading(
    async () =>
      (await (await this.nats.jetstreamManager()).streams.info(this.fleet.pushStream)).state
        .messages,
  );

  constructor(
    private readonly relay: RelayService,
    private readonly nats: NatsConnectionService,
    @InjectFleetConfig() private readonly fleet: ResolvedFleetConfig,
  ) {}

  async check(): Promise<RelayHealth> {
    const s = this.relay.status();
    const pending = await this.pushPending.read(this.nats.status().state === 'connected');
    const reasons: string[] = [];
    let status: RelayHealthState = 'ok';
    const worsen = (to: RelayHealthState, reason: string): void => {
      reasons.push(reason);
      if (to === 'down' || status === 'ok') status = to;
    };
    if (!s.pushes.running) worsen('down', 'the relay is not running');
    if (s.nats.state === 'closed' || s.nats.state === 'idle')
      worsen('down', `NATS ${s.nats.state}${s.nats.lastError ? `: ${s.nats.lastError}` : ''}`);
    else if (s.nats.state !== 'connected')
      worsen('degraded', `NATS ${s.nats.state}${s.nats.lastError ? `: ${s.nats.lastError}` : ''}`);
    if (s.role === 'active' && !s.changes.running)
      worsen('degraded', 'active, but not tailing Atlas');
    else if (s.role === 'active' && !s.changes.connected)
      worsen(
        'degraded',
        `Atlas change stream not connected${s.changes.lastError ? `: ${s.changes.lastError}` : ''}`,
      );
    if (s.lease.lastError) worsen('degraded', `lease: ${s.lease.lastError}`);
    const pushErrorAt = s.pushes.lastErrorAt?.getTime();
    if (pushErrorAt && Date.now() - pushErrorAt < RECENT_PUSH_ERROR_MS)
      worsen('degraded', `applying pushes failed recently: ${s.pushes.lastError}`);
    return redactDeep({
      status,
      reasons,
      role: s.role,
      instanceId: s.instanceId,
      lease: {
        holderId: s.lease.holderId,
        currentHolder: s.lease.currentHolder ?? null,
        term: s.lease.term ?? null,
      },
      nats: {
        state: s.nats.state,
        server: s.nats.server ?? null,
        servers: s.nats.servers,
        reconnects: s.nats.reconnects,
        lastError: s.nats.lastError ?? null,
      },
      changes: {
        running: s.changes.running,
        connected: s.changes.connected,
        published: s.changes.published,
        duplicates: s.changes.duplicates,
        unpublished: s.changes.unpublished,
        lastPublishedAt: s.changes.lastPublishedAt?.toISOString() ?? null,
        lastPublishLagMs: s.changes.lastPublishLagMs ?? null,
        lastError: s.changes.lastError ?? null,
      },
      pushes: {
        running: s.pushes.running,
        partitions: s.pushes.partitions,
        owned: s.pushes.owned,
        applied: s.pushes.applied,
        stale: s.pushes.stale,
        rejected: s.pushes.rejected,
        retried: s.pushes.retried,
        pending: pending ?? null,
        lastError: s.pushes.lastError ?? null,
      },
      checkedAt: new Date().toISOString(),
    });
  }
}
