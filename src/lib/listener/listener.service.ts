import { Inject, Injectable, Logger, Optional } from '@nestjs/common';
import { EventEmitter2 } from '@nestjs/event-emitter';
import type { ChangeStreamDocument, Document, ResumeToken } from 'mongodb';
import { SYNC_COLLECTIONS, SYNC_STAMP_FIELD } from '../bidirectional-sync.constants';
import { COLLECTION_OPERATIONS, DATA_OPERATIONS } from '../common/collection-operations';
import {
  ChangeStreamTailer,
  ChangeStreamTailerStatus,
  matchWithProgressMark,
  ProgressMark,
} from '../common/change-stream-tailer';
import { ResolvedSyncConfig } from '../config/sync-config';
import { SyncEvents, SyncStateChangedEvent } from '../events/sync-events';
import { GapDeletesService } from '../initial-sync/gap-deletes.service';
import { LOCAL_RESCAN_DONE } from '../initial-sync/gap-check';
import { RebaselineService } from '../initial-sync/rebaseline.service';
import { SyncStoresService } from '../metadata/sync-stores.service';
import { MonitorService } from '../monitor/monitor.service';
import { OriginTrackerService } from '../origin/origin-tracker.service';
import { ChangeProcessorService } from '../processor/change-processor.service';
import { ResumeTokenRepository } from '../resume-token/resume-token.repository';
import { InjectSyncConfig } from '../bidirectional-sync.decorators';
import { PullSource, SYNC_PULL_SOURCE } from './pull-source';

/** The module's own collections other than tombstones, never streamed. */
const PRIVATE_COLLECTIONS = Object.values(SYNC_COLLECTIONS).filter(
  (c) => c !== SYNC_COLLECTIONS.tombstones,
);

/**
 * The specification's Atlas Change Listener: one database-level change
 * stream on Atlas, filtered on the server by synced and excluded
 * collections and by origin, read in batches of
 * `ATLAS_CHANGE_STREAM_BATCH_SIZE` and handed to the Change Processor. The
 * resume token (post-batch, so an idle stream keeps advancing) is saved
 * after each applied batch. Without a stored token (first start) or when it
 * is unusable, the databases are re-baselined first.
 *
 * @publicApi
 */
@Injectable()
export class ListenerService {
  private readonly logger = new Logger(ListenerService.name);
  /** The Atlas change stream, or the bound `SYNC_PULL_SOURCE` (fleet mode). */
  private readonly tailer: PullSource;
  /** The Atlas change stream itself (direct mode), whose `caughtUp()` the gap check waits for. */
  private readonly stream?: ChangeStreamTailer;

  constructor(
    @InjectSyncConfig() private readonly config: ResolvedSyncConfig,
    private readonly stores: SyncStoresService,
    private readonly origin: OriginTrackerService,
    private readonly processor: ChangeProcessorService,
    private readonly tokens: ResumeTokenRepository,
    private readonly rebaseline: RebaselineService,
    private readonly monitor: MonitorService,
    private readonly events: EventEmitter2,
    private readonly gapDeletes: GapDeletesService,
    @Optional() @Inject(SYNC_PULL_SOURCE) source?: PullSource,
  ) {
    // Resolved on first use: the instance id is known only once the module initialised.
    const tracker = this.origin;
    const listenerMark: ProgressMark = {
      collection: SYNC_COLLECTIONS.metadata,
      get id() {
        return `listener-mark:${tracker.instanceId}`;
      },
    };
    this.stream = source
      ? undefined
      : new ChangeStreamTailer({
          name: 'Atlas listener',
          db: () => this.stores.atlas,
          pipeline: () => [matchWithProgressMark(listenerMark, this.pipeline()[0].$match)],
          // Only the gap check waits for caughtUp(): an empty read of a resumed
          // stream proves nothing (see docs/test-server.md), a mark read does.
          progressMark: listenerMark,
          batchSize: this.config.changeStreamBatchSize,
          reconnect: {
            initialMs: this.config.reconnectInterval,
            maxMs: this.config.maxReconnectInterval,
            maxAttempts: this.config.maxReconnectAttempts,
          },
          loadToken: () => this.loadOrBaseline(),
          saveToken: (token) => this.tokens.save(this.origin.instanceId, 'atlas', token),
          handleBatch: (events) => this.handleChange(events),
          onHistoryLost: async (err) => {
            await this.tokens.clear(this.origin.instanceId, 'atlas');
            this.logger.warn(
              `Stored Atlas resume token unusable: ${(err as Error)?.message ?? err}`,
            );
          },
          onStateChange: (state, detail) => {
            if (state === 'disconnected') this.monitor.recordReconnect();
            this.events.emit(
              SyncEvents.stateChanged,
              new SyncStateChangedEvent('listener', state, detail),
            );
          },
        });
    this.tailer = source ?? this.stream!;
    // A re-scan that ran while the stream was open: reopen it, so the gap check runs before it resumes.
    this.events.on(LOCAL_RESCAN_DONE, () => {
      if (this.tailer.status.running) void this.reconnect();
    });
  }

  get status(): ChangeStreamTailerStatus {
    return this.tailer.status;
  }

  /** Starts monitoring Atlas. */
  start(): void {
    // Fleet mode reads no Atlas history, so it cannot tell a delete made in a gap from a new document.
    if (!this.stream) void this.gapDeletes.abandon('fleet mode reads no Atlas history');
    this.tailer.start();
    this.events.emit(SyncEvents.stateChanged, new SyncStateChangedEvent('listener', 'started'));
  }

  /** Stops monitoring; the batch in progress finishes and its token is saved. */
  async stop(): Promise<void> {
    await this.tailer.stop();
    this.events.emit(SyncEvents.stateChanged, new SyncStateChangedEvent('listener', 'stopped'));
  }

  /**
   * Processes incoming changes: the stream hands over each batch it read
   * (applied together: state-based, only each document's newest state counts),
   * a caller may hand over a single event.
   */
  handleChange(change: ChangeStreamDocument | ChangeStreamDocument[]): Promise<void> {
    const batch = Array.isArray(change) ? change : [change];
    this.gapDeletes.observe(batch);
    return this.processor.processBatch(batch);
  }

  /**
   * Closes and reopens the stream from the stored token at once (no backoff).
   * After a failure the tailer reopens the stream by itself, with backoff.
   */
  async reconnect(): Promise<void> {
    await this.stop();
    this.start();
  }

  private async loadOrBaseline(): Promise<ResumeToken | undefined> {
    const stored = await this.tokens.load(this.origin.instanceId, 'atlas');
    if (stored) {
      // After local history loss: the stream from here tells deletes made in the gap from new documents.
      const settle = await this.gapDeletes.prepare();
      if (settle)
        void settle(async () => {
          await this.stream!.caughtUp();
          return this.stream!.status.running;
        }).catch((err) =>
          this.logger.error(`Local history gap check failed (retried at the next start): ${err}`),
        );
      return stored.token;
    }
    await this.rebaseline.rebaseline('no stored Atlas resume token');
    await this.gapDeletes.abandon('the Atlas history was lost as well, and re-baselined');
    return (await this.tokens.load(this.origin.instanceId, 'atlas'))?.token;
  }

  /** Server-side filter: synced collections only, and nothing this instance wrote. */
  pipeline(): Document[] {
    return atlasChangePipeline(this.config, this.origin.instanceId);
  }
}

/**
 * The Atlas change stream's server-side filter: data and collection events of the synced
 * collections and tombstones; with `skipOrigin`, not the states that origin wrote (a device
 * skips its own writes; the fleet relay passes none, since it forwards every state).
 */
export function atlasChangePipeline(config: ResolvedSyncConfig, skipOrigin?: string): Document[] {
  const excluded = [...PRIVATE_COLLECTIONS, ...config.excludedCollections];
  const collections = config.collections
    ? {
        $in: [
          ...config.collections.filter((c) => !excluded.includes(c)),
          SYNC_COLLECTIONS.tombstones,
        ],
      }
    : { $nin: excluded };
  const operations = { $in: [...DATA_OPERATIONS, ...COLLECTION_OPERATIONS] };
  if (skipOrigin === undefined)
    return [{ $match: { 'ns.coll': collections, operationType: operations } }];
  return [
    {
      $match: {
        'ns.coll': collections,
        operationType: operations,
        $or: [
          { operationType: { $in: ['delete', ...COLLECTION_OPERATIONS] } },
          { [`fullDocument.${SYNC_STAMP_FIELD}.o`]: { $ne: skipOrigin } },
        ],
      },
    },
  ];
}
