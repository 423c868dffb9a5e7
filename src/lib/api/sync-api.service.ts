import { Injectable, Logger, ServiceUnavailableException } from '@nestjs/common';
import { BSON, ObjectId } from 'mongodb';
import type { ConflictRecord } from '../conflict/conflict.repository';
import { redactMessage } from '../errors/sync.errors';
import { SyncEngine } from '../sync-engine';
import { SyncHealthIndicator, SyncHealthReport } from '../health/sync-health.indicator';
import type { DirectionMetrics } from '../monitor/monitor.service';
import type { ConflictsQueryDto } from './dto/conflicts-query.dto';
import type {
  ConflictEntryDto,
  ConflictsResponseDto,
  DirectionMetricsDto,
  SyncMetricsResponseDto,
  ToggleSyncResponseDto,
} from './dto/sync-responses.dto';

/** Builds the sync API's answers (the specification's shapes) from the engine. */
@Injectable()
export class SyncApiService {
  private readonly logger = new Logger('SyncApi');

  constructor(
    private readonly engine: SyncEngine,
    private readonly indicator: SyncHealthIndicator,
  ) {}

  /** The health report and whether it is `down` (HTTP 503). */
  async health(): Promise<{
    body: SyncHealthReport | { health: 'unhealthy'; reasons: string[] };
    down: boolean;
  }> {
    const { report, result, down } = await this.indicator.evaluate('bidirectionalSync');
    if (report) return { body: report, down };
    const message = String(result.bidirectionalSync?.message ?? 'health check failed');
    return { body: { health: 'unhealthy', reasons: [message] }, down: true };
  }

  async metrics(): Promise<SyncMetricsResponseDto> {
    const m = this.engine.monitor.getDirectionalMetrics();
    const outbox = this.engine.outbox;
    const [stats, summary, transport] = await Promise.all([
      this.engine.conflicts.getConflictStats().catch(() => undefined),
      outbox.summary().catch(() => undefined),
      this.engine.sync.transportStatus(),
    ]);
    return {
      localToAtlas: direction(m.localToAtlas),
      atlasToLocal: direction(m.atlasToLocal),
      conflicts: {
        total: m.conflicts.total,
        resolved: m.conflicts.resolved,
        lastHour: stats?.lastHour ?? null,
        byWinner: m.conflicts.byWinner,
      },
      outboxDepth: summary?.depth ?? null,
      oldestPendingAgeMs: summary?.oldestEnqueuedAt
        ? Date.now() - summary.oldestEnqueuedAt.getTime()
        : null,
      deadLettered: m.deadLettered,
      reconnects: m.reconnects,
      staleRejected: m.staleRejected,
      transport,
      since: m.since,
    };
  }

  async conflicts(query: ConflictsQueryDto): Promise<ConflictsResponseDto> {
    const { total, records } = await this.engine.conflicts.getConflicts({
      limit: query.limit,
      offset: query.offset,
      collection: query.collection,
      since: query.since ? new Date(query.since) : undefined,
    });
    return { totalConflicts: total, recentConflicts: records.map(conflictEntry) };
  }

  async toggle(enabled: boolean): Promise<ToggleSyncResponseDto> {
    const sync = this.engine.sync;
    try {
      await sync.setEnabled(enabled);
    } catch (err) {
      const reason = redactMessage(err instanceof Error ? err.message : String(err));
      this.logger.error(
        `Could not ${enabled ? 'enable' : 'disable'} bidirectional sync: ${reason}`,
      );
      throw new ServiceUnavailableException({
        success: false,
        enabled: sync.isEnabled(),
        message: `Could not ${enabled ? 'enable' : 'disable'} bidirectional sync: ${reason}`,
      });
    }
    const now = sync.isEnabled();
    return {
      success: true,
      enabled: now,
      message: `Bidirectional sync ${now ? 'enabled' : 'disabled'}`,
    };
  }
}

function direction(d: DirectionMetrics): DirectionMetricsDto {
  return {
    totalProcessed: d.totalProcessed,
    successful: d.successful,
    failed: d.failed,
    avgProcessTime: d.avgProcessTime,
    byOperation: d.byOperation,
    lagMs: d.lag,
  };
}

function conflictEntry(r: ConflictRecord): ConflictEntryDto {
  return {
    collection: r.collection,
    documentId: idToString(r.documentId),
    localTimestamp: iso(r.localTimestamp),
    atlasTimestamp: iso(r.atlasTimestamp),
    winner: r.winner,
    resolvedAt: iso(r.resolvedAt) ?? '',
    strategy: r.strategy,
    ...(r.localVersion ? { localVersion: r.localVersion } : {}),
    ...(r.atlasVersion ? { atlasVersion: r.atlasVersion } : {}),
  };
}

function iso(value: unknown): string | null {
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : value.toISOString();
  return typeof value === 'string' ? value : null;
}

/** Document ids as strings: ObjectId as hex, strings as they are, anything else as relaxed EJSON. */
function idToString(id: unknown): string {
  if (typeof id === 'string') return id;
  if (id instanceof ObjectId) return id.toHexString();
  if (typeof id === 'number' || typeof id === 'bigint' || typeof id === 'boolean')
    return String(id);
  return BSON.EJSON.stringify(id as never, { relaxed: true });
}
