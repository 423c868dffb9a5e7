import { Injectable, Logger } from '@nestjs/common';
import { AckPolicy, Consumer, DeliverPolicy, JetStreamApiError, JsMsg } from '@nats-io/jetstream';
import { nanos } from '@nats-io/nats-core';
import { InjectSyncConfig } from '../../bidirectional-sync.decorators';
import { backoffDelay } from '../../common/worker-loop';
import { groupBy } from '../../common/group-by';
import { documentKeyOf } from '../../common/sync-stamp';
import type { ResolvedSyncConfig } from '../../config/sync-config';
import { LeaseRepository } from '../../lease/lease.repository';
import { LeaseService } from '../../lease/lease.service';
import { SyncStoresService } from '../../metadata/sync-stores.service';
import {
  AtlasPushApplier,
  PushedEdit,
  PushOutcome,
  ResolvedState,
} from '../../outbox/atlas-push-applier.service';
import { InjectFleetConfig } from '../fleet.decorators';
import type { ResolvedFleetConfig } from '../fleet-config';
import { decodeFleetMessage, FleetChangeMessage } from '../fleet-message.codec';
import { parsePushSubject, pushPartitionFilter } from '../fleet-subjects';
import { NatsConnectionService } from '../nats-connection.service';
import { RelayChangePublisher } from './relay-change-publisher.service';

/** Messages one partition's consumer hands out before they are acknowledged (one batch). */
export const RELAY_PUSH_BATCH = 128;
/** Time a relay has to apply a batch before JetStream redelivers it to another relay. */
const PUSH_ACK_WAIT_MS = 30_000;
/** How long one fetch waits for pushes (a long poll). */
const FETCH_EXPIRES_MS = 1000;
const RETRY = { initialMs: 500, maxMs: 30_000, maxAttempts: 0 };
const CONSUMER_NOT_FOUND = 10014;
/** At least this many renewals fit in one lease TTL (as for the engine's lease). */
const LEASE_RENEWALS_PER_TTL = 3;

export interface RelayPushStatus {
  running: boolean;
  partitions: number;
  /** The partitions this relay holds the lease of, hence works. */
  owned: number[];
  applied: number;
  stale: number;
  /** Pushes whose stamp names another device than their subject (terminated, never applied). */
  rejected: number;
  retried: number;
  lastError?: string;
  lastErrorAt?: Date;
}

/** One push with the message that carried it. */
interface PushItem {
  msg: JsMsg;
  edit: PushedEdit;
}

/** The durable consumer of one push partition (shared by every relay). */
export function pushConsumerName(partition: number): string {
  return `relay-push-${partition}`;
}

/** `_id` of a push partition's lease in the relay database's `_sync_metadata`. */
export function pushLeaseId(partition: number): string {
  return `lease:push-${partition}`;
}

/** One partition's lease and, while held, its work loop. */
interface PartitionWorker {
  lease: LeaseService;
  working: boolean;
  loop?: Promise<void>;
}

/**
 * Devices → Atlas: one durable pull consumer per push partition (`sync.push.*.<p>`) and one
 * lease per partition (in the relay database): the relay holding a partition's lease fetches a
 * batch, applies it, acknowledges it only after Atlas acknowledged its writes, then fetches
 * again, so each partition's (hence each document's) pushes are applied in stream order by one
 * relay at a time. Each push goes through `AtlasPushApplier.push`, the direct drainer's
 * compare-and-set and conflict logic. The device id is taken from the subject (the server
 * authorized it); a push whose `_sync.o` names another device is terminated, never applied.
 */
@Injectable()
export class RelayPushConsumer {
  private readonly logger = new Logger(RelayPushConsumer.name);
  private running = false;
  private readonly workers = new Map<number, PartitionWorker>();
  private readonly state: Omit<RelayPushStatus, 'running' | 'partitions' | 'owned'> = {
    applied: 0,
    stale: 0,
    rejected: 0,
    retried: 0,
  };

  constructor(
    @InjectSyncConfig() private readonly config: ResolvedSyncConfig,
    @InjectFleetConfig() private readonly fleet: ResolvedFleetConfig,
    private readonly stores: SyncStoresService,
    private readonly applier: AtlasPushApplier,
    private readonly publisher: RelayChangePublisher,
    private readonly nats: NatsConnectionService,
  ) {}

  get status(): RelayPushStatus {
    return {
      running: this.running,
      partitions: this.fleet.pushPartitions,
      owned: [...this.workers].filter(([, w]) => w.working).map(([p]) => p),
      ...this.state,
    };
  }

  /**
   * Makes sure every partition's consumer exists, then competes for each partition's lease;
   * a partition is worked only by the relay holding its lease, so its pushes (hence each
   * document's) are applied in stream order by one relay at a time.
   */
  async start(): Promise<void> {
    if (this.running) return;
    const jsm = await this.nats.jetstreamManager();
    for (let p = 0; p < this.fleet.pushPartitions; p++) {
      const config = {
        durable_name: pushConsumerName(p),
        filter_subject: pushPartitionFilter(p),
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        ack_wait: nanos(PUSH_ACK_WAIT_MS),
        max_ack_pending: RELAY_PUSH_BATCH,
      };
      try {
        await jsm.consumers.info(this.fleet.pushStream, config.durable_name);
        await jsm.consumers.update(this.fleet.pushStream, config.durable_name, config);
      } catch (err) {
        if (!(err instanceof JetStreamApiError && err.code === CONSUMER_NOT_FOUND)) throw err;
        await jsm.consumers.add(this.fleet.pushStream, config);
      }
    }
    this.running = true;
    const js = this.nats.jetstream();
    const repository = new LeaseRepository(this.stores);
    for (let p = 0; p < this.fleet.pushPartitions; p++) {
      const consumer = await js.consumers.get(this.fleet.pushStream, pushConsumerName(p));
      const worker: PartitionWorker = {
        working: false,
        lease: new LeaseService(repository, {
          leaseId: pushLeaseId(p),
          leaseTtl: this.config.leaseTtl,
          renewInterval: Math.min(
            this.config.leaseRenewInterval,
            Math.floor(this.config.leaseTtl / LEASE_RENEWALS_PER_TTL),
          ),
          // No change stream per partition: a standby takes over when the lease expires.
          watch: false,
        }),
      };
      worker.lease.onAcquired(() => {
        worker.working = true;
        worker.loop = this.work(consumer, worker);
      });
      worker.lease.onLost(async () => {
        worker.working = false;
        await worker.loop;
      });
      this.workers.set(p, worker);
    }
    await Promise.all([...this.workers.values()].map((w) => w.lease.start()));
  }

  /** Stops fetching; batches in progress finish (and are acknowledged), leases are released. */
  async stop(): Promise<void> {
    this.running = false;
    await Promise.all([...this.workers.values()].map((w) => w.lease.stop()));
    this.workers.clear();
  }

  private async work(consumer: Consumer, worker: PartitionWorker): Promise<void> {
    let failures = 0;
    while (this.running && worker.working) {
      try {
        const messages: JsMsg[] = [];
        const batch = await consumer.fetch({
          max_messages: RELAY_PUSH_BATCH,
          expires: FETCH_EXPIRES_MS,
        });
        for await (const msg of batch) messages.push(msg);
        if (messages.length) await this.applyBatch(messages);
        failures = 0;
      } catch (err) {
        failures++;
        this.recordError((err as Error)?.message ?? String(err));
        if (failures === 1) this.logger.warn(`Push consumer failed: ${this.state.lastError}`);
        await new Promise((r) => setTimeout(r, backoffDelay(failures, RETRY)));
      }
    }
  }

  /**
   * Applies one partition's batch in stream order: in rounds holding at most one push per
   * document, each round through the shared applier. A failed push holds back the later
   * pushes of its document (they are redelivered after it); everything else is acknowledged
   * once Atlas has it.
   */
  async applyBatch(messages: JsMsg[]): Promise<void> {
    const items: PushItem[] = [];
    for (const msg of messages) {
      const item = this.accept(msg);
      if (item) items.push(item);
    }
    const blocked = new Set<string>();
    const done: PushItem[] = [];
    const retry: { item: PushItem; delayMs: number }[] = [];
    try {
      await this.stores.ensureAtlasIndexes();
      for (const round of rounds(items)) {
        const ready = round.filter((item) => {
          if (!blocked.has(keyOf(item.edit))) return true;
          retry.push({ item, delayMs: RETRY.initialMs });
          return false;
        });
        for (const [collection, list] of groupBy(ready, (item) => item.edit.c)) {
          const outcomes = await this.applier.push(
            collection,
            list.map((item) => item.edit),
            (resolved) => this.publishResolutions(collection, resolved),
          );
          for (const item of list) {
            const outcome = outcomes.get(item.edit) as PushOutcome;
            if (typeof outcome === 'object') {
              blocked.add(keyOf(item.edit));
              retry.push({
                item,
                delayMs: outcome.retryMs ?? backoffDelay(item.msg.info.deliveryCount, RETRY),
              });
              this.recordError(outcome.error);
            } else {
              if (outcome === 'stale') this.state.stale++;
              else this.state.applied++;
              done.push(item);
            }
          }
        }
      }
    } catch (err) {
      // Atlas failed: what was not applied is redelivered (to this or another relay).
      const handled = new Set([...done, ...retry.map((r) => r.item)]);
      for (const item of items)
        if (!handled.has(item))
          retry.push({ item, delayMs: backoffDelay(item.msg.info.deliveryCount, RETRY) });
      this.recordError((err as Error)?.message ?? String(err));
    }
    await Promise.all(done.map((item) => item.msg.ackAck()));
    for (const { item, delayMs } of retry) {
      this.state.retried++;
      item.msg.nak(delayMs);
    }
  }

  private recordError(message: string | undefined): void {
    this.state.lastError = message;
    this.state.lastErrorAt = new Date();
  }

  /** Decodes a push and checks its origin against the subject's device; terminates the rest. */
  private accept(msg: JsMsg): PushItem | undefined {
    let deviceId: string;
    let message: FleetChangeMessage;
    try {
      deviceId = parsePushSubject(msg.subject).deviceId;
      message = decodeFleetMessage(msg.data);
    } catch (err) {
      this.logger.warn(`Dropping an undecodable push on ${msg.subject}: ${(err as Error).message}`);
      msg.term('undecodable');
      return undefined;
    }
    if (message.stamp.o !== deviceId) {
      this.state.rejected++;
      this.logger.warn(
        `Rejected a push on ${msg.subject}: its stamp names origin "${message.stamp.o}", not device "${deviceId}"`,
      );
      msg.term('origin does not match the subject');
      return undefined;
    }
    return {
      msg,
      edit: {
        c: message.collection,
        i: message.id,
        op: message.op,
        v: message.stamp.v,
        doc: message.document,
        base: message.base ?? null,
        writtenAt: message.writtenAt,
      },
    };
  }

  /**
   * A resolution's new state must reach the pushing device, whose own writes are not echoed:
   * it is published as a change before Atlas is written (as a device holds it locally first).
   */
  private publishResolutions(collection: string, resolved: ResolvedState[]): Promise<void> {
    return this.publisher.publish(
      resolved.map(({ edit, doc, stamp }) =>
        doc
          ? { collection, id: edit.i, op: 'upsert', stamp, document: doc }
          : { collection, id: edit.i, op: 'delete', stamp },
      ),
    );
  }
}

function keyOf(edit: PushedEdit): string {
  return documentKeyOf(edit.c, edit.i);
}

/** Splits items into rounds, in order, with at most one item per document in each round. */
function rounds(items: PushItem[]): PushItem[][] {
  const result: PushItem[][] = [];
  const roundOf = new Map<string, number>();
  for (const item of items) {
    const key = keyOf(item.edit);
    const index = (roundOf.get(key) ?? -1) + 1;
    roundOf.set(key, index);
    (result[index] ??= []).push(item);
  }
  return result;
}
