import { InjectSyncConfig, InjectSyncConflictResolver } from '../bidirectional-sync.decorators';
import { Injectable, Logger, OnModuleInit, Optional } from '@nestjs/common';
import { EventEmitter2 } from '@nestjs/event-emitter';
import { ResolvedSyncConfig } from '../config/sync-config';
import { compareVersions, SyncVersion, versionTime } from '../common/hybrid-logical-clock';
import { SyncConfigurationError } from '../errors/sync.errors';
import { SyncConflictResolvedEvent, SyncEvents } from '../events/sync-events';
import type { ConflictResolutionStrategy } from '../config/sync-options.interface';
import { MonitorService } from '../monitor/monitor.service';
import { decide, DecisionInput, SyncDecision } from './sync-decision';

const HOUR_MS = 3_600_000;
import type {
  ConflictContext,
  ConflictResolution,
  SyncConflictResolver,
} from './conflict-resolver.interface';
import { ConflictQuery, ConflictRecord, ConflictRepository } from './conflict.repository';

/**
 * Owns the conflict decision (`decide()`, for pushes and pulls alike) and
 * records every conflict.
 * - `last-write-wins`: the newer version wins; equal times are broken by instance id.
 * - `field-level`: per-field last write wins (`mergeFieldLevel`).
 * - `custom`: the host's `SyncConflictResolver`.
 *
 * @publicApi
 */
@Injectable()
export class ConflictResolverService implements OnModuleInit {
  private readonly logger = new Logger(ConflictResolverService.name);

  constructor(
    @InjectSyncConfig() private readonly config: ResolvedSyncConfig,
    private readonly repository: ConflictRepository,
    private readonly monitor: MonitorService,
    private readonly events: EventEmitter2,
    @Optional()
    @InjectSyncConflictResolver()
    private readonly custom?: SyncConflictResolver | null,
  ) {}

  onModuleInit(): void {
    if (this.config.conflictResolutionStrategy === 'custom' && !this.custom) {
      throw new SyncConfigurationError([
        'conflictResolutionStrategy (CONFLICT_RESOLUTION_STRATEGY) = "custom" needs a SyncConflictResolver bound to SYNC_CONFLICT_RESOLVER (forRoot extras: conflictResolver)',
      ]);
    }
  }

  get strategy(): ConflictResolutionStrategy {
    return this.config.conflictResolutionStrategy;
  }

  /**
   * Decides what a change does to the state it lands on (`decide()` under the
   * configured strategy), asking the custom resolver when the edits are
   * concurrent and the strategy is `custom`. Both sync paths call this.
   */
  async decide(
    input: Omit<DecisionInput, 'strategy' | 'resolution'>,
  ): Promise<Exclude<SyncDecision, { kind: 'resolve' }>> {
    const first = decide({ ...input, strategy: this.strategy });
    if (first.kind !== 'resolve') return first;
    const resolution = await this.resolveConflict(first.context);
    const second = decide({ ...input, strategy: this.strategy, resolution });
    if (second.kind === 'resolve') throw new Error('a resolution was given but asked for again');
    return second;
  }

  /** Decides a whole-document conflict (LWW or custom); `decide()` merges field by field. */
  async resolveConflict(context: ConflictContext): Promise<ConflictResolution> {
    if (this.config.conflictResolutionStrategy === 'custom' && this.custom) {
      return this.custom.resolve(context);
    }
    return this.compareTimestamps(context.local.version, context.atlas.version) > 0
      ? { winner: 'local' }
      : { winner: 'atlas' };
  }

  /** Compares two versions: > 0 when `local` is newer. */
  compareTimestamps(local: SyncVersion | undefined, atlas: SyncVersion | undefined): number {
    return compareVersions(local, atlas);
  }

  /** Records conflicts, counts them and announces them. */
  async logConflict(
    ...conflicts: Omit<
      ConflictRecord,
      'resolvedAt' | 'localTimestamp' | 'atlasTimestamp' | 'strategy'
    >[]
  ): Promise<void> {
    if (!conflicts.length) return;
    const resolvedAt = new Date();
    const records: ConflictRecord[] = conflicts.map((c) => ({
      ...c,
      localTimestamp: versionTime(c.localVersion),
      atlasTimestamp: versionTime(c.atlasVersion),
      strategy: this.strategy,
      resolvedAt,
    }));
    for (const r of records) {
      this.logger.log(
        `Conflict detected in ${r.collection} ${JSON.stringify(r.documentId)}: local ${r.localVersion ?? '-'} vs atlas ${r.atlasVersion ?? '-'}, winner ${r.winner}`,
      );
      this.monitor.recordConflict(r);
      this.events.emit(
        SyncEvents.conflictResolved,
        new SyncConflictResolvedEvent(
          r.collection,
          r.documentId,
          r.localVersion,
          r.atlasVersion,
          r.winner,
          r.strategy,
        ),
      );
    }
    await this.repository.insert(records);
  }

  async getConflicts(query: ConflictQuery): Promise<{ total: number; records: ConflictRecord[] }> {
    return this.repository.find(query);
  }

  /** Totals since start plus the stored count of the last hour. */
  async getConflictStats(): Promise<{
    total: number;
    resolved: number;
    lastHour: number;
    byWinner: Record<string, number>;
  }> {
    const m = this.monitor.conflictCounters;
    return {
      total: m.total,
      // Every recorded conflict was resolved: one is recorded only once its strategy decided it.
      resolved: m.total,
      lastHour: await this.repository.countSince(new Date(Date.now() - HOUR_MS)),
      byWinner: { ...m.byWinner },
    };
  }

  /** Bounds the stored records (called by the cleanup job). */
  trim(): Promise<void> {
    return this.repository.trim(this.config.maxConflictRecords);
  }
}
