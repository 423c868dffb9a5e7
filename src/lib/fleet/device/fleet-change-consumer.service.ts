import { Injectable, Logger } from '@nestjs/common';
import type { Consumer, JsMsg } from '@nats-io/jetstream';
import { InjectSyncConfig } from '../../bidirectional-sync.decorators';
import type { ChangeStreamTailerStatus } from '../../common/change-stream-tailer';
import { backoffDelay } from '../../common/worker-loop';
import type { ResolvedSyncConfig } from '../../config/sync-config';
import { redactMessage } from '../../errors/sync.errors';
import type { PullSource } from '../../listener/pull-source';
import { OriginTrackerService } from '../../origin/origin-tracker.service';
import type { IncomingChange } from '../../processor/atlas-change-classifier';
import { ChangeProcessorService } from '../../processor/change-processor.service';
import { RebaselineService } from '../../initial-sync/rebaseline.service';
import { InjectFleetConfig } from '../fleet.decorators';
import { FleetPositionExpiredError } from '../fleet.errors';
import type { ResolvedFleetConfig } from '../fleet-config';
import { decodeFleetMessage } from '../fleet-message.codec';
import { ensureDeviceConsumer } from '../fleet-streams';
import { CachedReading } from '../cached-reading';
import { NatsConnectionService } from '../nats-connection.service';
import { FleetPositionRepository } from './fleet-position.repository';

/** How long one fetch waits for changes (a long poll; also the longest a stop waits). */
const FETCH_EXPIRES_MS = 1000;

/**
 * Fleet mode's pull source for the listener: reads the changes stream through the device's
 * own durable consumer, from the sequence persisted in `_sync_metadata`, applies each batch
 * with `ChangeProcessorService.applyChanges` (the local applier, as for Atlas states), then
 * saves the last sequence and acknowledges. A crash in between replays the batch (applying
 * a state twice is a no-op); the persisted sequence, not the consumer's acknowledgements,
 * decides where to resume (`ensureDeviceConsumer`). Without a stored sequence (first start),
 * and when the stream's retention passed it (`FleetPositionExpiredError`, at open or seen as
 * a gap in the sequences delivered), it re-baselines through the relays first, as the
 * direct listener does without a usable resume token, and consumes from the sequence the
 * re-baseline recorded.
 */
@Injectable()
export class FleetChangeConsumer implements PullSource {
  private readonly logger = new Logger(FleetChangeConsumer.name);
  private running = false;
  private loop?: Promise<void>;
  private consumer?: Consumer;
  private readonly state: ChangeStreamTailerStatus = {
    running: false,
    connected: false,
    consecutiveFailures: 0,
  };
  /** The consumer's lag: undelivered plus delivered but unacknowledged messages. */
  private readonly lag = new CachedReading(async () => {
    const jsm = await this.nats.jetstreamManager();
    const info = await jsm.consumers.info(this.fleet.changesStream, this.fleet.deviceId as string);
    return info.num_pending + info.num_ack_pending;
  });
  lastSequence = 0;

  constructor(
    @InjectSyncConfig() private readonly config: ResolvedSyncConfig,
    @InjectFleetConfig() private readonly fleet: ResolvedFleetConfig,
    private readonly nats: NatsConnectionService,
    private readonly origin: OriginTrackerService,
    private readonly processor: ChangeProcessorService,
    private readonly positions: FleetPositionRepository,
    private readonly rebaseline: RebaselineService,
  ) {}

  get status(): ChangeStreamTailerStatus {
    return { ...this.state, running: this.running };
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
    this.loop = undefined;
    this.consumer = undefined;
    this.state.connected = false;
  }

  private async run(): Promise<void> {
    while (this.running) {
      try {
        const consumer = this.consumer ?? (await this.open());
        const messages: JsMsg[] = [];
        const batch = await consumer.fetch({
          max_messages: this.config.changeStreamBatchSize,
          expires: FETCH_EXPIRES_MS,
        });
        for await (const msg of batch) messages.push(msg);
        if (messages.length) await this.apply(messages);
        this.state.consecutiveFailures = 0;
        this.state.disconnectedSince = undefined;
      } catch (err) {
        this.consumer = undefined;
        this.state.connected = false;
        this.state.consecutiveFailures++;
        this.state.disconnectedSince ??= new Date();
        this.state.lastError = redactMessage((err as Error)?.message ?? String(err));
        if (err instanceof FleetPositionExpiredError)
          this.logger.warn(`${this.state.lastError}: re-baselining when the consumer reopens`);
        else if (this.state.consecutiveFailures === 1)
          this.logger.warn(`Reading the changes stream failed: ${this.state.lastError}`);
        await new Promise((r) =>
          setTimeout(
            r,
            backoffDelay(this.state.consecutiveFailures, {
              initialMs: this.config.reconnectInterval,
              maxMs: this.config.maxReconnectInterval,
            }),
          ),
        );
      }
    }
  }

  /**
   * Messages on the device's consumer not yet applied: the pending count of the last fetch,
   * or of the last `refreshPending()`.
   */
  get pending(): number | undefined {
    return this.lag.last;
  }

  /**
   * The consumer's lag as JetStream counts it, also while the listener is off (asked at most
   * once a second, only while NATS is connected; else the last value). Undefined until the
   * consumer exists.
   */
  refreshPending(): Promise<number | undefined> {
    return this.lag.read(this.nats.status().state === 'connected');
  }

  /** Puts the device's consumer at the persisted position, re-baselining first when there is none or it expired. */
  private async open(): Promise<Consumer> {
    await this.nats.connect();
    const deviceId = this.fleet.deviceId as string;
    const stream = this.fleet.changesStream;
    const jsm = await this.nats.jetstreamManager();
    let position = await this.positions.load(this.origin.instanceId, stream);
    if (position === undefined)
      position = await this.rebaselineFrom('no stored changes stream position (first start)');
    try {
      await ensureDeviceConsumer(jsm, stream, deviceId, position);
    } catch (err) {
      if (!(err instanceof FleetPositionExpiredError)) throw err;
      this.logger.warn(`${err.message}: re-baselining through the relays`);
      position = await this.rebaselineFrom(
        `the changes stream's retention passed position ${err.position} (first is ${err.firstSequence})`,
      );
      // Expired again (a re-baseline slower than the retention): thrown, retried.
      await ensureDeviceConsumer(jsm, stream, deviceId, position);
    }
    this.lastSequence = position;
    this.consumer = await this.nats.jetstream().consumers.get(stream, deviceId);
    this.state.connected = true;
    return this.consumer;
  }

  /** Re-baselines through the relays; returns the sequence it recorded to consume after. */
  private async rebaselineFrom(reason: string): Promise<number> {
    await this.rebaseline.rebaseline(reason);
    const position = await this.positions.load(this.origin.instanceId, this.fleet.changesStream);
    if (position === undefined) throw new Error('the re-baseline recorded no stream position');
    return position;
  }

  private async apply(messages: JsMsg[]): Promise<void> {
    // The consumer reads every subject, so sequences are contiguous: a jump means retention
    // dropped messages this device never read (it fell behind while connected).
    let expected = this.lastSequence + 1;
    for (const msg of messages) {
      if (msg.seq > expected)
        throw new FleetPositionExpiredError(this.fleet.changesStream, this.lastSequence, msg.seq);
      expected = Math.max(expected, msg.seq + 1);
    }
    const states: IncomingChange[] = [];
    for (const msg of messages) {
      try {
        const m = decodeFleetMessage(msg.data);
        // Own writes are not applied back (the direct listener filters them on the server).
        if (m.stamp.o === this.origin.instanceId || !this.config.pullsCollection(m.collection))
          continue;
        states.push({
          collection: m.collection,
          id: m.id,
          operation: m.op === 'delete' ? 'delete' : 'replace',
          doc: m.document,
          stamp: m.stamp,
          writtenAt: msg.info.timestampNanos
            ? new Date(msg.info.timestampNanos / 1_000_000)
            : undefined,
        });
      } catch (err) {
        this.logger.warn(
          `Skipping an undecodable change (seq ${msg.seq}): ${(err as Error).message}`,
        );
      }
    }
    await this.processor.applyChanges(states);
    const last = messages[messages.length - 1];
    await this.positions.save(this.origin.instanceId, this.fleet.changesStream, last.seq);
    this.lastSequence = last.seq;
    this.lag.set(last.info.pending);
    this.state.lastChange = new Date();
    this.state.lastTokenSavedAt = this.state.lastChange;
    for (const msg of messages) msg.ack();
  }
}
