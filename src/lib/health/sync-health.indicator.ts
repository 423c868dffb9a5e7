import { Injectable } from '@nestjs/common';
import { HealthIndicatorResult, HealthIndicatorService } from '@nestjs/terminus';
import type { BidirectionalHealth, HealthState } from '../bidirectional-sync.service';
import { redactDeep } from '../errors/redact-deep';
import { redactMessage } from '../errors/sync.errors';
import type { HealthThresholds } from './sync-health.options';
import { SyncEngine } from '../sync-engine';

/** How long `pingAtlas()` waits for Atlas's answer by default (ms). */
const DEFAULT_ATLAS_PING_TIMEOUT_MS = 2000;

/** The specification's health shape plus lag, ages, reasons and the thresholds applied. */
export interface SyncHealthReport extends BidirectionalHealth {
  thresholds: HealthThresholds;
  checkedAt: string;
}

export interface SyncHealthCheckOptions {
  /** Report `down` when sync is `degraded` too (default: only when `unhealthy`). */
  degradedIsDown?: boolean;
}

/**
 * Terminus health indicator of bidirectional sync, for the host's own
 * `/health` next to the ping checks of both connections:
 *
 * ```ts
 * this.health.check([
 *   () => this.mongoose.pingCheck('localMongo'),
 *   () => this.sync.pingAtlas('atlasMongo'),
 *   () => this.sync.isHealthy('bidirectionalSync'),
 * ]);
 * ```
 *
 * Never throws: failures are reported as `down` with a message (credentials
 * removed).
 *
 * @publicApi
 */
@Injectable()
export class SyncHealthIndicator {
  constructor(
    private readonly healthIndicatorService: HealthIndicatorService,
    private readonly engine: SyncEngine,
  ) {}

  /** The full report behind `GET /api/sync/bidirectional/health`. */
  async report(): Promise<SyncHealthReport> {
    const sync = this.engine.sync;
    const { enabled, atlasListener, syncWorker, health, reasons, ...details } =
      await sync.checkBidirectionalHealth();
    // The specification's fields first, then the details.
    return redactDeep({
      enabled,
      atlasListener,
      syncWorker,
      health,
      reasons,
      ...details,
      thresholds: { ...sync.thresholds },
      checkedAt: new Date().toISOString(),
    });
  }

  /**
   * `up` while sync is `healthy` or `degraded`, `down` when it is `unhealthy`
   * (or `degraded`, with `degradedIsDown`). Details: health, reasons, listener and queue.
   */
  async isHealthy<const Key extends string = 'bidirectionalSync'>(
    key: Key = 'bidirectionalSync' as Key,
    options: SyncHealthCheckOptions = {},
  ): Promise<HealthIndicatorResult<Key>> {
    return (await this.evaluate(key, options)).result;
  }

  /** The report and the Terminus result built from it (`report` is undefined when the check failed). */
  async evaluate<const Key extends string = 'bidirectionalSync'>(
    key: Key = 'bidirectionalSync' as Key,
    options: SyncHealthCheckOptions = {},
  ): Promise<{ report?: SyncHealthReport; result: HealthIndicatorResult<Key>; down: boolean }> {
    const indicator = this.healthIndicatorService.check(key);
    let report: SyncHealthReport;
    try {
      report = await this.report();
    } catch (err) {
      return { result: indicator.down({ message: describe(err) }), down: true };
    }
    const down = isDown(report.health, options);
    const details = {
      health: report.health,
      enabled: report.enabled,
      reasons: report.reasons,
      atlasListener: {
        running: report.atlasListener.running,
        connected: report.atlasListener.connected,
        lastChange: report.atlasListener.lastChange,
      },
      syncWorker: { running: report.syncWorker.running, queueSize: report.syncWorker.queueSize },
      lagMs: report.lagMs,
    };
    return { report, result: down ? indicator.down(details) : indicator.up(details), down };
  }

  /** Pings the Atlas cluster through the module's own client (the local side: `MongooseHealthIndicator`). */
  async pingAtlas<const Key extends string = 'atlas'>(
    key: Key = 'atlas' as Key,
    { timeoutMs = DEFAULT_ATLAS_PING_TIMEOUT_MS }: { timeoutMs?: number } = {},
  ): Promise<HealthIndicatorResult<Key>> {
    const indicator = this.healthIndicatorService.check(key);
    // A device in fleet mode holds no Atlas connection: NATS is its link (health's `transport`).
    if (!this.engine.stores.hasAtlas)
      return indicator.up({ message: 'fleet mode: no Atlas connection (the relays reach Atlas)' });
    const started = Date.now();
    let timer: NodeJS.Timeout | undefined;
    try {
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      });
      await Promise.race([this.engine.stores.atlas.command({ ping: 1 }), timeout]);
      return indicator.up({ responseTimeMs: Date.now() - started });
    } catch (err) {
      return indicator.down({ message: describe(err) });
    } finally {
      clearTimeout(timer);
    }
  }
}

function isDown(health: HealthState, options: SyncHealthCheckOptions): boolean {
  return health === 'unhealthy' || (!!options.degradedIsDown && health === 'degraded');
}

function describe(err: unknown): string {
  return redactMessage(err instanceof Error ? err.message : String(err));
}
