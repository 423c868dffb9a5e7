import { InjectSyncConfig } from '../bidirectional-sync.decorators';
import { Inject, Injectable, Logger, OnModuleDestroy } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import { SYNC_WALL_CLOCK } from '../bidirectional-sync.constants';
import { ResolvedSyncConfig } from '../config/sync-config';
import { HybridLogicalClock, SyncVersion } from '../common/hybrid-logical-clock';
import { readStamp } from '../common/sync-stamp';
import { SyncMetadataRepository } from '../metadata/sync-metadata.repository';
import { SyncStoresService } from '../metadata/sync-stores.service';
import { idKey } from '../common/sync-stamp';

interface RecentChange {
  origin: 'local' | 'atlas';
  version?: SyncVersion;
  at: number;
}

const CLEANUP_JOB = 'bidirectional-sync:origin-cleanup';
/** Most recent changes remembered; a catch-up of many thousands of changes must not grow memory. */
const MAX_TRACKED_CHANGES = 10_000;

/**
 * Knows this device's instance id and clock, and which recent changes came
 * from where. Loop prevention does not depend on the in-memory map: every
 * change carries its origin and version in its `_sync` stamp, a replica only
 * accepts newer versions, and Atlas events written by this instance are
 * filtered on the server. The map serves diagnostics and is bounded by
 * `ORIGIN_TRACKING_CLEANUP_INTERVAL` and by the newest 10,000 changes.
 *
 * @publicApi
 */
@Injectable()
export class OriginTrackerService implements OnModuleDestroy {
  private readonly logger = new Logger(OriginTrackerService.name);
  private id?: string;
  private hlc?: HybridLogicalClock;
  private readonly recent = new Map<string, RecentChange>();
  private skipped = 0;
  /** Atlas time minus this machine's time (ms), measured with `hello.localTime`. */
  private atlasOffsetMs = 0;

  constructor(
    @InjectSyncConfig() private readonly config: ResolvedSyncConfig,
    private readonly metadata: SyncMetadataRepository,
    private readonly stores: SyncStoresService,
    private readonly scheduler: SchedulerRegistry,
    @Inject(SYNC_WALL_CLOCK) private readonly wallClock: () => number,
  ) {}

  /** Loads (or creates) the instance id and restores the clock; called once at start. */
  async initialize(): Promise<void> {
    if (this.id) return;
    this.id = await this.metadata.resolveInstanceId(this.config.instanceId);
    this.atlasOffsetMs = (await this.metadata.getClockOffset(this.id)) ?? 0;
    // Versions follow Atlas's clock, not this machine's: devices with skewed
    // clocks then order concurrent writes by (nearly) true time.
    this.hlc = new HybridLogicalClock(this.id, () => this.wallClock() + this.atlasOffsetMs);
    this.hlc.receive(await this.metadata.getClockHighWater(this.id));
    await this.calibrate();
    if (!this.scheduler.doesExist('interval', CLEANUP_JOB)) {
      const timer = setInterval(() => this.cleanup(), this.config.originTrackingCleanupInterval);
      timer.unref();
      this.scheduler.addInterval(CLEANUP_JOB, timer);
    }
    this.logger.log(`Instance id ${this.id}`);
  }

  async onModuleDestroy(): Promise<void> {
    if (this.scheduler.doesExist('interval', CLEANUP_JOB))
      this.scheduler.deleteInterval(CLEANUP_JOB);
    await this.persistClock().catch(() => undefined);
  }

  /**
   * Measures the offset of this machine's clock from Atlas's (`hello.localTime`,
   * halfway through the round trip) and keeps it for offline starts. Atlas
   * unreachable: the last known offset stays.
   */
  async calibrate(): Promise<void> {
    // A device in fleet mode has no Atlas connection: its own clock (the HLC keeps order).
    if (!this.stores.hasAtlas) return;
    try {
      const sent = this.wallClock();
      const hello = await this.stores.atlas.admin().command({ hello: 1 }, { timeoutMS: 3000 });
      const received = this.wallClock();
      if (!(hello.localTime instanceof Date) || received - sent > 2000) return;
      const offset = Math.round(hello.localTime.getTime() - (sent + received) / 2);
      if (Math.abs(offset - this.atlasOffsetMs) > 1000) {
        this.logger.warn(
          `This machine's clock differs from Atlas's by ${offset} ms; versions use Atlas time`,
        );
      }
      this.atlasOffsetMs = offset;
      await this.metadata.saveClockOffset(this.instanceId, offset);
    } catch (err) {
      this.logger.debug(`Clock calibration skipped: ${(err as Error)?.message ?? err}`);
    }
  }

  /** Atlas time minus this machine's time (ms), as last measured. */
  get clockOffsetMs(): number {
    return this.atlasOffsetMs;
  }

  get instanceId(): string {
    if (!this.id) throw new Error('OriginTrackerService is not initialized');
    return this.id;
  }

  get clock(): HybridLogicalClock {
    if (!this.hlc) throw new Error('OriginTrackerService is not initialized');
    return this.hlc;
  }

  /** Persists the clock's high-water mark so a restart never issues older versions. */
  async persistClock(): Promise<void> {
    if (this.id && this.hlc) await this.metadata.saveClockHighWater(this.id, this.hlc.highWater);
  }

  markLocalChange(collection: string, docId: unknown, version?: SyncVersion): void {
    this.remember(collection, docId, { origin: 'local', version, at: Date.now() });
  }

  markAtlasChange(collection: string, docId: unknown, version?: SyncVersion): void {
    this.remember(collection, docId, { origin: 'atlas', version, at: Date.now() });
  }

  private remember(collection: string, docId: unknown, change: RecentChange): void {
    const key = `${collection}:${idKey(docId)}`;
    // Re-inserted so the map stays in order of last change and the oldest goes first.
    this.recent.delete(key);
    this.recent.set(key, change);
    if (this.recent.size > MAX_TRACKED_CHANGES) {
      this.recent.delete(this.recent.keys().next().value as string);
    }
  }

  isLocalChange(collection: string, docId: unknown): boolean {
    return this.recent.get(`${collection}:${idKey(docId)}`)?.origin === 'local';
  }

  /** True when a document's stamp says this instance wrote it (an echo). */
  shouldSkipSync(doc: Record<string, unknown> | null | undefined): boolean {
    const skip = readStamp(doc)?.o === this.id;
    if (skip) {
      this.skipped++;
      this.logger.debug('Skipping sync - same instance');
    }
    return skip;
  }

  get skippedEchoes(): number {
    return this.skipped;
  }

  get trackedChanges(): number {
    return this.recent.size;
  }

  /** Drops origin entries older than the cleanup interval and persists the clock. */
  cleanup(): void {
    const cutoff = Date.now() - this.config.originTrackingCleanupInterval;
    for (const [key, change] of this.recent) if (change.at < cutoff) this.recent.delete(key);
    this.persistClock().catch((err) => this.logger.warn(`Could not persist clock: ${err}`));
    void this.calibrate();
  }
}
