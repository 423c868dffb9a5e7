import {
  Inject,
  Injectable,
  Logger,
  MessageEvent,
  OnApplicationBootstrap,
  OnModuleDestroy,
} from '@nestjs/common';
import { Observable, Subject } from 'rxjs';
import { SYNC_API_CONFIG } from '../api/sync-api.constants';
import type { ResolvedSyncApiConfig } from '../api/sync-api.config';
import { SYNC_COLLECTIONS } from '../bidirectional-sync.constants';
import { redactDeep } from '../errors/redact-deep';
import { redactMessage } from '../errors/sync.errors';
import type { SyncDirection } from '../events/sync-events';
import { SyncEngine } from '../sync-engine';
import { SyncHealthIndicator, SyncHealthReport } from '../health/sync-health.indicator';
import { SyncDashboardAlert, syncDashboardAlerts } from './sync-dashboard-alerts';
import { SyncDashboardHistory, SyncDashboardSample } from './sync-dashboard-history';
import { SYNC_DASHBOARD_HISTORY_MS, SYNC_DASHBOARD_INTERVAL_MS } from './sync-dashboard.constants';

/** What the dashboard shows at one moment (one message of its live stream). */
export interface SyncDashboardState {
  at: string;
  /** The health report (`GET /health`'s body); null when the engine could not be asked. */
  health: SyncHealthReport | null;
  /** Why `health` is null. */
  healthError?: string;
  /** The specification's alerts that hold now. */
  alerts: SyncDashboardAlert[];
  /** Counts since the service started, and the stored conflicts and dead letters. */
  totals: {
    successful: Record<SyncDirection, number>;
    conflictsStored: number | null;
    deadLetters: number | null;
  };
  /** Points of the time series (one per second, the last 15 minutes). */
  samples: SyncDashboardSample[];
  /** Milliseconds between points and between messages. */
  intervalMs: number;
}

/** How long one reading of the engine is shared between requests and clients. */
const STATE_REUSE_MS = 500;

/**
 * Feeds the operator dashboard: samples lag and throughput into a bounded
 * 15-minute time series every second, and streams the state (health,
 * alerts, totals, new points) to each open page.
 */
@Injectable()
export class SyncDashboardService implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger(SyncDashboardService.name);
  readonly history = new SyncDashboardHistory(
    Math.ceil(SYNC_DASHBOARD_HISTORY_MS / SYNC_DASHBOARD_INTERVAL_MS),
  );
  private readonly closing = new Subject<void>();
  private timer?: NodeJS.Timeout;
  private stopLagFeed?: () => void;
  private reading?: { at: number; state: Promise<Omit<SyncDashboardState, 'samples'>> };

  constructor(
    @Inject(SYNC_API_CONFIG) private readonly config: ResolvedSyncApiConfig,
    private readonly engine: SyncEngine,
    private readonly indicator: SyncHealthIndicator,
  ) {}

  get enabled(): boolean {
    return this.config.dashboard;
  }

  onApplicationBootstrap(): void {
    if (!this.enabled) return;
    const monitor = this.engine.monitor;
    this.stopLagFeed = monitor.onLag((direction, lagMs) => this.history.add(direction, lagMs));
    const sample = () =>
      this.history.sample(Date.now(), {
        localToAtlas: monitor.successful('localToAtlas'),
        atlasToLocal: monitor.successful('atlasToLocal'),
      });
    sample();
    this.timer = setInterval(sample, SYNC_DASHBOARD_INTERVAL_MS);
    this.timer.unref();
  }

  /** Ends every live stream, so open pages do not hold the HTTP server open at shutdown. */
  onModuleDestroy(): void {
    if (this.timer) clearInterval(this.timer);
    this.stopLagFeed?.();
    this.closing.next();
    this.closing.complete();
  }

  /** The state now, with the points newer than `after` (ms since the epoch). */
  async state(after = 0): Promise<SyncDashboardState> {
    const now = Date.now();
    if (!this.reading || now - this.reading.at >= STATE_REUSE_MS)
      this.reading = { at: now, state: this.read() };
    return { ...(await this.reading.state), samples: this.history.since(after) };
  }

  /**
   * The live stream: one message at once with the whole history, then one
   * per second with the new points. Completes when the application shuts down.
   */
  stream(): Observable<MessageEvent> {
    return new Observable<MessageEvent>((subscriber) => {
      let after = 0;
      let busy = false;
      const push = async () => {
        if (busy) return;
        busy = true;
        try {
          const state = await this.state(after);
          if (state.samples.length) after = state.samples[state.samples.length - 1].t;
          subscriber.next({ data: state });
        } catch (err) {
          this.logger.warn(`Dashboard state failed: ${redactMessage(String(err))}`);
        } finally {
          busy = false;
        }
      };
      void push();
      const timer = setInterval(() => void push(), SYNC_DASHBOARD_INTERVAL_MS);
      const closing = this.closing.subscribe({ complete: () => subscriber.complete() });
      return () => {
        clearInterval(timer);
        closing.unsubscribe();
      };
    });
  }

  private async read(): Promise<Omit<SyncDashboardState, 'samples'>> {
    const monitor = this.engine.monitor;
    const [health, conflictsStored, deadLetters] = await Promise.all([
      this.indicator.report().then(
        (report) => ({ report, error: undefined }),
        (err: unknown) => ({
          report: null,
          error: redactMessage(err instanceof Error ? err.message : String(err)),
        }),
      ),
      this.engine.conflicts
        .getConflicts({ limit: 1 })
        .then((r) => r.total)
        .catch(() => null),
      this.engine.stores.local
        .collection(SYNC_COLLECTIONS.deadLetters)
        .countDocuments()
        .catch(() => null),
    ]);
    return redactDeep({
      at: new Date().toISOString(),
      health: health.report,
      ...(health.error ? { healthError: health.error } : {}),
      alerts: health.report ? syncDashboardAlerts(health.report) : [],
      totals: {
        successful: {
          localToAtlas: monitor.successful('localToAtlas'),
          atlasToLocal: monitor.successful('atlasToLocal'),
        },
        conflictsStored,
        deadLetters,
      },
      intervalMs: SYNC_DASHBOARD_INTERVAL_MS,
    });
  }
}
