import { Injectable, Logger } from '@nestjs/common';
import type { SyncDirection, SyncOperation } from '../events/sync-events';
import type { ConflictRecord } from '../conflict/conflict.repository';
import { LatencyWindow } from './latency-window';

const HOUR_MS = 3_600_000;
/** Conflict times kept for `conflictsInLastHour()`: bounds memory under a conflict storm. */
const MAX_CONFLICT_TIMES = 10_000;

interface DirectionCounters {
  totalProcessed: number;
  successful: number;
  failed: number;
  totalTime: number;
  byOperation: Record<string, number>;
  byOperationResult: Record<string, { successful: number; failed: number }>;
  lag: LatencyWindow;
  lastLagMs?: number;
}

export interface DirectionMetrics {
  totalProcessed: number;
  successful: number;
  failed: number;
  /** Mean processing time per change (ms). */
  avgProcessTime: number;
  byOperation: Record<string, number>;
  /** Write on one side → applied on the other (ms), over the last 2048 changes. */
  lag: { p50: number | null; p95: number | null; p99: number | null; last: number | null };
}

/** Receives the lag (ms) of each change as `MonitorService` records it. */
export type LagListener = (direction: SyncDirection, lagMs: number) => void;

export interface DirectionalMetrics {
  localToAtlas: DirectionMetrics;
  atlasToLocal: DirectionMetrics;
  conflicts: {
    total: number;
    /**
     * Equal to `total` by construction: a conflict is recorded only once its
     * strategy has decided it (there are no open conflicts). Kept because the
     * specification's `GET /metrics` has it.
     */
    resolved: number;
    byWinner: Record<string, number>;
  };
  deadLettered: number;
  reconnects: number;
  staleRejected: number;
  since: string;
}

/**
 * Counts what both directions do: processed, failed, time per change, lag
 * percentiles, conflicts, dead letters, reconnects. In memory since start;
 * durable history lives in `_sync_conflicts` and `_sync_dead_letters`.
 * Health is composed by `BidirectionalSyncService.checkBidirectionalHealth()`.
 *
 * @publicApi
 */
@Injectable()
export class MonitorService {
  private readonly logger = new Logger(MonitorService.name);
  private readonly since = new Date();
  private readonly directions: Record<SyncDirection, DirectionCounters> = {
    localToAtlas: MonitorService.emptyCounters(),
    atlasToLocal: MonitorService.emptyCounters(),
  };
  private conflicts = { total: 0, byWinner: {} as Record<string, number> };
  private readonly conflictTimes: number[] = [];
  private deadLettered = 0;
  private reconnects = 0;
  private staleRejected = 0;
  private readonly lagListeners = new Set<LagListener>();

  private static emptyCounters(): DirectionCounters {
    return {
      totalProcessed: 0,
      successful: 0,
      failed: 0,
      totalTime: 0,
      byOperation: {},
      byOperationResult: {},
      lag: new LatencyWindow(),
    };
  }

  /** Records one change pushed to Atlas. */
  recordLocalToAtlas(
    op: SyncOperation,
    success: boolean,
    durationMs: number,
    lagMs?: number,
  ): void {
    this.record('localToAtlas', op, success, durationMs, lagMs);
  }

  /** Records one Atlas change applied locally (the specification's `recordAtlasToLocal`). */
  recordAtlasToLocal(
    op: SyncOperation,
    success: boolean,
    durationMs: number,
    lagMs?: number,
  ): void {
    this.record('atlasToLocal', op, success, durationMs, lagMs);
  }

  private record(
    direction: SyncDirection,
    op: SyncOperation,
    success: boolean,
    durationMs: number,
    lagMs?: number,
  ): void {
    const c = this.directions[direction];
    c.totalProcessed++;
    if (success) c.successful++;
    else c.failed++;
    c.totalTime += durationMs;
    c.byOperation[op] = (c.byOperation[op] ?? 0) + 1;
    const results = (c.byOperationResult[op] ??= { successful: 0, failed: 0 });
    if (success) results.successful++;
    else results.failed++;
    if (lagMs !== undefined && lagMs >= 0) {
      c.lag.add(lagMs);
      c.lastLagMs = lagMs;
      for (const listener of this.lagListeners) listener(direction, lagMs);
    }
  }

  /**
   * Calls `listener` with the lag of every change recorded from now on (for
   * time series such as the dashboard's); returns the function that stops it.
   */
  onLag(listener: LagListener): () => void {
    this.lagListeners.add(listener);
    return () => this.lagListeners.delete(listener);
  }

  recordConflict(conflict: Pick<ConflictRecord, 'winner'>): void {
    this.conflicts.total++;
    this.conflicts.byWinner[conflict.winner] = (this.conflicts.byWinner[conflict.winner] ?? 0) + 1;
    this.conflictTimes.push(Date.now());
    if (this.conflictTimes.length > MAX_CONFLICT_TIMES)
      this.conflictTimes.splice(0, this.conflictTimes.length - MAX_CONFLICT_TIMES);
  }

  recordDeadLetter(): void {
    this.deadLettered++;
  }

  recordReconnect(): void {
    this.reconnects++;
  }

  /** A change that arrived older than the replica's version (an echo or a lost race). */
  recordStale(count = 1): void {
    this.staleRejected += count;
  }

  get conflictCounters(): { total: number; byWinner: Record<string, number> } {
    return { total: this.conflicts.total, byWinner: { ...this.conflicts.byWinner } };
  }

  /** Conflicts recorded in the last hour by this process. */
  conflictsInLastHour(): number {
    const cutoff = Date.now() - HOUR_MS;
    return this.conflictTimes.filter((t) => t >= cutoff).length;
  }

  /** Successful and failed changes per operation of one direction (for the Prometheus exporter). */
  operationResults(
    direction: SyncDirection,
  ): Record<string, { successful: number; failed: number }> {
    return Object.fromEntries(
      Object.entries(this.directions[direction].byOperationResult).map(([op, r]) => [op, { ...r }]),
    );
  }

  /** Latest lag in ms per direction (undefined before the first change). */
  lastLag(direction: SyncDirection): number | undefined {
    return this.directions[direction].lastLagMs;
  }

  /** Changes synced successfully in one direction (cheap: no percentiles computed). */
  successful(direction: SyncDirection): number {
    return this.directions[direction].successful;
  }

  getDirectionalMetrics(): DirectionalMetrics {
    const view = (c: DirectionCounters): DirectionMetrics => ({
      totalProcessed: c.totalProcessed,
      successful: c.successful,
      failed: c.failed,
      avgProcessTime: c.totalProcessed
        ? Math.round((c.totalTime / c.totalProcessed) * 100) / 100
        : 0,
      byOperation: { ...c.byOperation },
      lag: { ...c.lag.percentiles(), last: c.lastLagMs ?? null },
    });
    return {
      localToAtlas: view(this.directions.localToAtlas),
      atlasToLocal: view(this.directions.atlasToLocal),
      conflicts: {
        total: this.conflicts.total,
        resolved: this.conflicts.total, // see DirectionalMetrics.conflicts.resolved
        byWinner: { ...this.conflicts.byWinner },
      },
      deadLettered: this.deadLettered,
      reconnects: this.reconnects,
      staleRejected: this.staleRejected,
      since: this.since.toISOString(),
    };
  }
}
