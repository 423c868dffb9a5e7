import { Injectable, Logger } from '@nestjs/common';
import type { ChangeStreamDocument, ResumeToken } from 'mongodb';
import { InjectSyncConfig } from '../../bidirectional-sync.decorators';
import { ChangeStreamTailer, ChangeStreamTailerStatus } from '../../common/change-stream-tailer';
import type { ResolvedSyncConfig } from '../../config/sync-config';
import { atlasChangePipeline } from '../../listener/listener.service';
import { SyncStoresService } from '../../metadata/sync-stores.service';
import {
  AtlasDataEvent,
  classifyAtlasEvent,
  ClassifierContext,
  IncomingChange,
} from '../../processor/atlas-change-classifier';
import {
  AtlasDirectWriteAdopter,
  DirectWrite,
} from '../../processor/atlas-direct-write-adopter.service';
import { ResumeTokenRepository } from '../../resume-token/resume-token.repository';
import { encodeFleetMessage, FleetChangeMessage } from '../fleet-message.codec';
import { changeSubject } from '../fleet-subjects';
import { NatsConnectionService } from '../nats-connection.service';

/** Key of the relays' shared Atlas resume token in the relay database's `_sync_metadata`. */
export const RELAY_TOKEN_OWNER = 'relay';

export interface RelayPublisherStatus extends ChangeStreamTailerStatus {
  /** Messages JetStream stored / recognised as duplicates (a replay after a failover). */
  published: number;
  duplicates: number;
  /** Atlas states read from the change stream and not yet acknowledged by JetStream. */
  unpublished: number;
  lastPublishedAt?: Date;
  /** Atlas write (its `wallTime`) to JetStream's acknowledgement, of the last batch's last state. */
  lastPublishLagMs?: number;
}

/** The relay forwards every state, whoever wrote it: devices skip their own by origin. */
const FORWARD_EVERYTHING: Omit<ClassifierContext, 'pullsCollection'> = {
  instanceId: '',
  shouldSkipSync: () => false,
};

/**
 * Atlas → devices: tails the Atlas change stream (the listener's tailer and filter, no origin
 * skipped), classifies each event like a device does, adopts direct Atlas writes (in fleet
 * mode only the relay writes those stamps), and publishes each stamped state to
 * `sync.changes.<collection>`. The tailer saves the resume token only after `handleBatch`
 * resolved, which is after JetStream acknowledged every message of the batch; a replay
 * republishes the same message ids, which JetStream drops within its duplicate window.
 */
@Injectable()
export class RelayChangePublisher {
  private readonly logger = new Logger(RelayChangePublisher.name);
  private readonly tailer: ChangeStreamTailer;
  private published = 0;
  private duplicates = 0;
  private unpublished = 0;
  private lastPublishedAt?: Date;
  private lastPublishLagMs?: number;

  constructor(
    @InjectSyncConfig() private readonly config: ResolvedSyncConfig,
    private readonly stores: SyncStoresService,
    private readonly tokens: ResumeTokenRepository,
    private readonly adopter: AtlasDirectWriteAdopter,
    private readonly nats: NatsConnectionService,
  ) {
    this.tailer = new ChangeStreamTailer({
      name: 'relay Atlas listener',
      db: () => this.stores.atlas,
      pipeline: () => atlasChangePipeline(this.config),
      batchSize: this.config.changeStreamBatchSize,
      reconnect: {
        initialMs: this.config.reconnectInterval,
        maxMs: this.config.maxReconnectInterval,
        maxAttempts: this.config.maxReconnectAttempts,
      },
      loadToken: () => this.loadToken(),
      saveToken: (token) => this.tokens.save(RELAY_TOKEN_OWNER, 'atlas', token),
      handleBatch: (events) => this.handleBatch(events),
      onHistoryLost: async (err) => {
        await this.tokens.clear(RELAY_TOKEN_OWNER, 'atlas');
        this.logger.error(
          `Stored Atlas resume token unusable, continuing from now (devices need a re-baseline): ${(err as Error)?.message ?? err}`,
        );
      },
    });
  }

  get status(): RelayPublisherStatus {
    return {
      ...this.tailer.status,
      published: this.published,
      duplicates: this.duplicates,
      unpublished: this.unpublished,
      lastPublishedAt: this.lastPublishedAt,
      lastPublishLagMs: this.lastPublishLagMs,
    };
  }

  start(): void {
    this.tailer.start();
  }

  /** Stops tailing; the batch in progress is published and its token saved first. */
  stop(): Promise<void> {
    return this.tailer.stop();
  }

  private async loadToken(): Promise<ResumeToken | undefined> {
    const stored = await this.tokens.load(RELAY_TOKEN_OWNER, 'atlas');
    if (!stored) this.logger.warn('No stored Atlas resume token: publishing changes from now on');
    return stored?.token;
  }

  /** Classifies, adopts and publishes one batch; resolves once JetStream acknowledged it all. */
  async handleBatch(events: ChangeStreamDocument[]): Promise<void> {
    const states: IncomingChange[] = [];
    const directWrites: DirectWrite[] = [];
    const plainDeletes: AtlasDataEvent[] = [];
    const context: ClassifierContext = {
      ...FORWARD_EVERYTHING,
      pullsCollection: (name) => this.config.pullsCollection(name),
    };
    for (const event of events) {
      try {
        const meaning = classifyAtlasEvent(event, context);
        if (meaning.kind === 'state') states.push(meaning.change);
        else if (meaning.kind === 'direct') directWrites.push({ event: meaning.event });
        else if (meaning.kind === 'plain-delete') plainDeletes.push(meaning.event);
        else if (meaning.warning) this.logger.warn(meaning.warning);
      } catch (err) {
        this.logger.warn(`Skipping a malformed Atlas event: ${(err as Error).message}`);
      }
    }
    // Until the batch is published (a failed one is replayed, so it stays counted meanwhile).
    this.unpublished = states.length;
    // Adoption stamps Atlas; the stamped state then arrives as its own event and is published.
    await this.adopter.adoptWrites(directWrites);
    await this.adopter.recordDeletes(plainDeletes);
    await this.publish(states.map(toFleetMessage));
    this.unpublished = 0;
    const writtenAt = states[states.length - 1]?.writtenAt;
    if (writtenAt) this.lastPublishLagMs = Math.max(0, Date.now() - writtenAt.getTime());
  }

  /**
   * Publishes in order (JetStream keeps the order of a subject, so of one document) and waits
   * for every acknowledgement; a failed publish fails the batch, which is then replayed.
   */
  async publish(messages: FleetChangeMessage[]): Promise<void> {
    if (!messages.length) return;
    const js = this.nats.jetstream();
    const acks = await Promise.all(
      messages.map((message) => {
        const encoded = encodeFleetMessage(message);
        return js.publish(changeSubject(message.collection), encoded.data, {
          msgID: encoded.msgId,
          headers: encoded.headers,
        });
      }),
    );
    for (const ack of acks) {
      if (ack.duplicate) this.duplicates++;
      else this.published++;
    }
    this.lastPublishedAt = new Date();
  }
}

function toFleetMessage(change: IncomingChange): FleetChangeMessage {
  return change.operation === 'delete'
    ? { collection: change.collection, id: change.id, op: 'delete', stamp: change.stamp }
    : {
        collection: change.collection,
        id: change.id,
        op: 'upsert',
        stamp: change.stamp,
        document: change.doc,
      };
}
