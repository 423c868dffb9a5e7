import { Injectable } from '@nestjs/common';
import { Counter, Gauge, Registry } from 'prom-client';
import type { BidirectionalHealth } from '../bidirectional-sync.service';
import type { SyncDirection } from '../events/sync-events';
import { SyncEngine } from '../sync-engine';
import type { DirectionalMetrics } from '../monitor/monitor.service';

/** Metric name prefix. */
export const SYNC_METRIC_PREFIX = 'bidirectional_sync_';

const DIRECTIONS: Record<SyncDirection, string> = {
  localToAtlas: 'local_to_atlas',
  atlasToLocal: 'atlas_to_local',
};
const QUANTILES = [
  ['p50', '0.5'],
  ['p95', '0.95'],
  ['p99', '0.99'],
] as const;
const HEALTH_STATES = ['healthy', 'degraded', 'unhealthy'] as const;
/** Metrics of one scrape share one reading of the engine if it is at most this old (ms). */
const SNAPSHOT_REUSE_MS = 250;
const MS_PER_SECOND = 1000;

interface Snapshot {
  metrics: DirectionalMetrics;
  results: Record<SyncDirection, Record<string, { successful: number; failed: number }>>;
  health?: BidirectionalHealth;
}

/**
 * Prometheus exposition of the sync figures, in its own `Registry` (merge it
 * into the host's with `Registry.merge([hostRegistry, service.registry])`).
 * Values are read from the engine at scrape time; counters count since the
 * service started.
 *
 * @publicApi
 */
@Injectable()
export class SyncPrometheusService {
  readonly registry = new Registry();
  private cached?: { at: number; snapshot: Promise<Snapshot> };

  constructor(private readonly engine: SyncEngine) {
    const registers = [this.registry];
    const snapshot = () => this.snapshot();

    new Counter({
      name: `${SYNC_METRIC_PREFIX}changes_total`,
      help: 'Changes processed, by direction, operation and result (success or failure).',
      labelNames: ['direction', 'operation', 'result'],
      registers,
      async collect() {
        const s = await snapshot();
        this.reset();
        for (const [direction, label] of Object.entries(DIRECTIONS)) {
          for (const [operation, r] of Object.entries(s.results[direction as SyncDirection])) {
            this.inc({ direction: label, operation, result: 'success' }, r.successful);
            this.inc({ direction: label, operation, result: 'failure' }, r.failed);
          }
        }
      },
    });

    new Gauge({
      name: `${SYNC_METRIC_PREFIX}lag_seconds`,
      help: 'Sync lag (write on one side to applied on the other) over the last 2048 changes, by direction and quantile.',
      labelNames: ['direction', 'quantile'],
      registers,
      async collect() {
        const s = await snapshot();
        this.reset();
        for (const [direction, label] of Object.entries(DIRECTIONS)) {
          const lag = s.metrics[direction as SyncDirection].lag;
          for (const [key, quantile] of QUANTILES) {
            const ms = lag[key];
            if (ms !== null) this.set({ direction: label, quantile }, ms / MS_PER_SECOND);
          }
        }
      },
    });

    new Gauge({
      name: `${SYNC_METRIC_PREFIX}process_time_avg_seconds`,
      help: 'Mean processing time per change, by direction.',
      labelNames: ['direction'],
      registers,
      async collect() {
        const s = await snapshot();
        for (const [direction, label] of Object.entries(DIRECTIONS))
          this.set(
            { direction: label },
            s.metrics[direction as SyncDirection].avgProcessTime / MS_PER_SECOND,
          );
      },
    });

    new Gauge({
      name: `${SYNC_METRIC_PREFIX}outbox_depth`,
      help: 'Local changes waiting to be pushed to Atlas.',
      registers,
      async collect() {
        const queue = (await snapshot()).health?.syncWorker.queueSize;
        this.reset();
        if (queue !== undefined && queue >= 0) this.set(queue);
      },
    });

    new Gauge({
      name: `${SYNC_METRIC_PREFIX}outbox_oldest_age_seconds`,
      help: 'Age of the oldest pending local change (0 when the outbox is empty).',
      registers,
      async collect() {
        const health = (await snapshot()).health;
        this.reset();
        if (health) this.set((health.syncWorker.oldestPendingAgeMs ?? 0) / MS_PER_SECOND);
      },
    });

    new Counter({
      name: `${SYNC_METRIC_PREFIX}conflicts_total`,
      help: 'Conflicts resolved, by winner.',
      labelNames: ['winner'],
      registers,
      async collect() {
        const { conflicts } = (await snapshot()).metrics;
        this.reset();
        for (const winner of ['local', 'atlas', 'merged'])
          this.inc({ winner }, conflicts.byWinner[winner] ?? 0);
      },
    });

    new Gauge({
      name: `${SYNC_METRIC_PREFIX}conflicts_last_hour`,
      help: 'Conflicts in the last hour (alert threshold: health maxConflictsPerHour).',
      registers,
      async collect() {
        const health = (await snapshot()).health;
        this.reset();
        if (health) this.set(health.conflictsLastHour);
      },
    });

    this.counter(
      'dead_letters_total',
      'Remote changes the host rejected (dead-lettered).',
      (m) => m.deadLettered,
    );
    this.counter(
      'reconnects_total',
      'Atlas change stream disconnects followed by a reconnect.',
      (m) => m.reconnects,
    );
    this.counter(
      'stale_rejected_total',
      'Changes older than the stored version (echoes or lost races), skipped.',
      (m) => m.staleRejected,
    );

    new Gauge({
      name: `${SYNC_METRIC_PREFIX}up`,
      help: '1 while sync is healthy or degraded, 0 when unhealthy or the health check fails.',
      registers,
      async collect() {
        const health = (await snapshot()).health;
        this.set(health && health.health !== 'unhealthy' ? 1 : 0);
      },
    });

    new Gauge({
      name: `${SYNC_METRIC_PREFIX}health_status`,
      help: 'Health of sync: 1 for the current state, 0 for the others.',
      labelNames: ['state'],
      registers,
      async collect() {
        const health = (await snapshot()).health;
        for (const state of HEALTH_STATES) this.set({ state }, health?.health === state ? 1 : 0);
      },
    });

    new Gauge({
      name: `${SYNC_METRIC_PREFIX}enabled`,
      help: '1 when Atlas to Local sync is enabled (POST /toggle).',
      registers,
      async collect() {
        const health = (await snapshot()).health;
        this.reset();
        if (health) this.set(health.enabled ? 1 : 0);
      },
    });

    new Gauge({
      name: `${SYNC_METRIC_PREFIX}change_stream_connected`,
      help: '1 while a change stream is connected, by stream (atlas listener, local capture).',
      labelNames: ['stream'],
      registers,
      async collect() {
        const health = (await snapshot()).health;
        this.reset();
        if (!health) return;
        this.set({ stream: 'atlas' }, health.atlasListener.connected ? 1 : 0);
        this.set({ stream: 'local' }, health.localCapture.connected ? 1 : 0);
      },
    });

    new Gauge({
      name: `${SYNC_METRIC_PREFIX}resume_token_age_seconds`,
      help: 'Age of the saved Atlas resume token.',
      registers,
      async collect() {
        const age = (await snapshot()).health?.atlasListener.resumeTokenAgeMs;
        this.reset();
        if (age !== null && age !== undefined) this.set(age / MS_PER_SECOND);
      },
    });
    this.transportMetrics();
  }

  /** The Prometheus text exposition. */
  metrics(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /**
   * Fleet mode: the transport, the NATS connection and the device consumer's lag. NATS
   * figures are absent in direct mode; the transport info is always there.
   */
  private transportMetrics(): void {
    const registers = [this.registry];
    const transport = async () => (await this.snapshot()).health?.transport;
    new Gauge({
      name: `${SYNC_METRIC_PREFIX}transport_info`,
      help: 'How this device reaches Atlas: 1 for its transport (direct, or nats in fleet mode).',
      labelNames: ['mode'],
      registers,
      async collect() {
        const t = await transport();
        this.reset();
        if (t) this.set({ mode: t.mode }, 1);
      },
    });
    new Gauge({
      name: `${SYNC_METRIC_PREFIX}nats_connected`,
      help: '1 while the NATS connection is up (fleet mode), 0 while connecting, reconnecting or closed.',
      registers,
      async collect() {
        const nats = (await transport())?.nats;
        this.reset();
        if (nats) this.set(nats.state === 'connected' ? 1 : 0);
      },
    });
    new Counter({
      name: `${SYNC_METRIC_PREFIX}nats_reconnects_total`,
      help: 'Reconnects of the NATS connection since start (fleet mode).',
      registers,
      async collect() {
        const nats = (await transport())?.nats;
        this.reset();
        if (nats) this.inc(nats.reconnects);
      },
    });
    new Gauge({
      name: `${SYNC_METRIC_PREFIX}fleet_consumer_pending`,
      help: "Consumer lag in fleet mode: messages on the changes stream this device's consumer has not applied yet.",
      registers,
      async collect() {
        const pending = (await transport())?.changesPending;
        this.reset();
        if (pending !== null && pending !== undefined) this.set(pending);
      },
    });
    new Gauge({
      name: `${SYNC_METRIC_PREFIX}fleet_changes_sequence`,
      help: 'Last changes-stream sequence this device applied and saved (fleet mode).',
      registers,
      async collect() {
        const seq = (await transport())?.changesSequence;
        this.reset();
        if (seq !== null && seq !== undefined) this.set(seq);
      },
    });
  }

  private counter(name: string, help: string, read: (m: DirectionalMetrics) => number): void {
    const snapshot = () => this.snapshot();
    new Counter({
      name: `${SYNC_METRIC_PREFIX}${name}`,
      help,
      registers: [this.registry],
      async collect() {
        const value = read((await snapshot()).metrics);
        this.reset();
        this.inc(value);
      },
    });
  }

  /** One reading of the engine shared by every metric of a scrape. */
  private snapshot(): Promise<Snapshot> {
    const now = Date.now();
    if (!this.cached || now - this.cached.at > SNAPSHOT_REUSE_MS) {
      this.cached = { at: now, snapshot: this.read() };
    }
    return this.cached.snapshot;
  }

  private async read(): Promise<Snapshot> {
    const monitor = this.engine.monitor;
    const health = await this.engine.sync.checkBidirectionalHealth().catch(() => undefined);
    return {
      metrics: monitor.getDirectionalMetrics(),
      results: {
        localToAtlas: monitor.operationResults('localToAtlas'),
        atlasToLocal: monitor.operationResults('atlasToLocal'),
      },
      health,
    };
  }
}
