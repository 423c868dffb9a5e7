import { Injectable } from '@nestjs/common';
import { Counter, Gauge, Registry } from 'prom-client';
import { RelayHealth, RelayHealthService } from './relay-health.service';

/** Metric name prefix of the relay. */
export const RELAY_METRIC_PREFIX = 'relay_';

const HEALTH_STATES = ['ok', 'degraded', 'down'] as const;
const PUSH_RESULTS = ['applied', 'stale', 'rejected', 'retried'] as const;
/** Metrics of one scrape share one reading of the relay if it is at most this old (ms). */
const SNAPSHOT_REUSE_MS = 250;
const MS_PER_SECOND = 1000;

type Read = (health: RelayHealth) => number | null | undefined;

/**
 * The relay's Prometheus exposition (`relay_*`, its own `Registry`), read from
 * `RelayHealthService.check()` at scrape time; counters count since the relay started.
 */
@Injectable()
export class RelayPrometheusService {
  readonly registry = new Registry();
  private cached?: { at: number; health: Promise<RelayHealth> };

  constructor(private readonly relayHealth: RelayHealthService) {
    const registers = [this.registry];
    const snapshot = () => this.snapshot();

    new Gauge({
      name: `${RELAY_METRIC_PREFIX}up`,
      help: '1 while the relay is ok or degraded, 0 when it is down.',
      registers,
      async collect() {
        this.set((await snapshot()).status === 'down' ? 0 : 1);
      },
    });
    new Gauge({
      name: `${RELAY_METRIC_PREFIX}health_status`,
      help: 'Health of the relay: 1 for the current state (ok, degraded, down), 0 for the others.',
      labelNames: ['state'],
      registers,
      async collect() {
        const { status } = await snapshot();
        for (const state of HEALTH_STATES) this.set({ state }, status === state ? 1 : 0);
      },
    });
    this.gauge(
      'active',
      '1 while this relay holds the lease (tails Atlas and publishes changes), 0 on standby.',
      (h) => (h.role === 'active' ? 1 : 0),
    );
    this.gauge('nats_connected', '1 while the NATS connection is up.', (h) =>
      h.nats.state === 'connected' ? 1 : 0,
    );
    this.counter(
      'nats_reconnects_total',
      'Reconnects of the NATS connection.',
      (h) => h.nats.reconnects,
    );
    this.gauge(
      'atlas_change_stream_connected',
      '1 while the Atlas change stream is open (the active relay only).',
      (h) => (h.changes.connected ? 1 : 0),
    );
    this.counter(
      'changes_published_total',
      'Atlas changes published to the changes stream (stored by JetStream).',
      (h) => h.changes.published,
    );
    this.counter(
      'changes_duplicates_total',
      'Atlas changes JetStream already held (a replay after a failover), not stored again.',
      (h) => h.changes.duplicates,
    );
    this.gauge(
      'changes_unpublished',
      'Atlas changes read from the change stream and not yet acknowledged by JetStream.',
      (h) => h.changes.unpublished,
    );
    this.gauge(
      'changes_last_published_timestamp_seconds',
      'When this relay last published Atlas changes (Unix time).',
      (h) =>
        h.changes.lastPublishedAt ? Date.parse(h.changes.lastPublishedAt) / MS_PER_SECOND : null,
    );
    this.gauge(
      'changes_publish_lag_seconds',
      "Atlas write to JetStream's acknowledgement, of the last published batch.",
      (h) =>
        h.changes.lastPublishLagMs === null ? null : h.changes.lastPublishLagMs / MS_PER_SECOND,
    );
    new Counter({
      name: `${RELAY_METRIC_PREFIX}pushes_total`,
      help: 'Device pushes by result: applied to Atlas, stale (Atlas was newer), rejected (origin not the device of the subject), retried.',
      labelNames: ['result'],
      registers,
      async collect() {
        const { pushes } = await snapshot();
        this.reset();
        for (const result of PUSH_RESULTS) this.inc({ result }, pushes[result]);
      },
    });
    this.gauge(
      'push_pending',
      'Device pushes on the push stream that no relay has applied yet (the work queue depth).',
      (h) => h.pushes.pending,
    );
    this.gauge(
      'push_partitions_owned',
      'Push partitions this relay works (holds the lease of).',
      (h) => h.pushes.owned.length,
    );
    this.gauge(
      'push_partitions',
      'Push partitions of the fleet (NATS_PUSH_PARTITIONS).',
      (h) => h.pushes.partitions,
    );
  }

  /** The Prometheus text exposition. */
  metrics(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** A gauge absent while `read` gives null. */
  private gauge(name: string, help: string, read: Read): void {
    const snapshot = () => this.snapshot();
    new Gauge({
      name: `${RELAY_METRIC_PREFIX}${name}`,
      help,
      registers: [this.registry],
      async collect() {
        const value = read(await snapshot());
        this.reset();
        if (value !== null && value !== undefined) this.set(value);
      },
    });
  }

  private counter(name: string, help: string, read: Read): void {
    const snapshot = () => this.snapshot();
    new Counter({
      name: `${RELAY_METRIC_PREFIX}${name}`,
      help,
      registers: [this.registry],
      async collect() {
        const value = read(await snapshot());
        this.reset();
        if (value !== null && value !== undefined) this.inc(value);
      },
    });
  }

  /** One reading of the relay shared by every metric of a scrape. */
  private snapshot(): Promise<RelayHealth> {
    const now = Date.now();
    if (!this.cached || now - this.cached.at > SNAPSHOT_REUSE_MS)
      this.cached = { at: now, health: this.relayHealth.check() };
    return this.cached.health;
  }
}
