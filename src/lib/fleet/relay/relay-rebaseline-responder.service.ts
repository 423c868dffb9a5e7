import { Injectable, Logger } from '@nestjs/common';
import type { MsgRequest } from '@nats-io/jetstream';
import type { Msg, Subscription } from '@nats-io/nats-core';
import type { Document } from 'mongodb';
import { redactMessage } from '../../errors/sync.errors';
import { AtlasRebaselineReader, RemoteStates } from '../../initial-sync/atlas-rebaseline-reader';
import { PAGE_SIZE } from '../../initial-sync/pages-by-id';
import { InjectFleetConfig } from '../fleet.decorators';
import { REBASELINE_PUSH_WAIT_MS, RELAY_QUEUE_GROUP } from '../fleet.constants';
import type { ResolvedFleetConfig } from '../fleet-config';
import {
  decodeRebaselinePayload,
  encodeRebaselinePayload,
  RebaselineReply,
  RebaselineRequest,
  WireStates,
} from '../fleet-rebaseline.protocol';
import { devicePushFilter, REBASELINE_SUBJECTS } from '../fleet-subjects';
import { NatsConnectionService } from '../nats-connection.service';

const PUSH_POLL_MS = 100;
/** A reply must fit the server's max_payload; this much is left for the envelope. */
const REPLY_HEADROOM_BYTES = 4096;

export interface RelayRebaselineStatus {
  running: boolean;
  /** Requests answered, and those answered with an error. */
  served: number;
  failed: number;
  lastError?: string;
}

/**
 * Serves re-baselines to devices in fleet mode (every relay, queue group `sync-relays`, so
 * one relay answers each request): `sync.rebaseline.<deviceId>` requests are answered from
 * Atlas with `AtlasRebaselineReader`, the reads a direct-mode re-baseline makes, adoption of
 * unstamped documents included. `position` and `page` replies carry the changes stream's
 * last sequence, read before Atlas: a device consuming after it misses nothing the page did
 * not show (a few states twice at most, which versions make harmless). The device id is the
 * subject's (the server authorized it), used only to find that device's queued pushes.
 */
@Injectable()
export class RelayRebaselineResponder {
  private readonly logger = new Logger(RelayRebaselineResponder.name);
  private subscription?: Subscription;
  private loop?: Promise<void>;
  private readonly state: Omit<RelayRebaselineStatus, 'running'> = { served: 0, failed: 0 };

  constructor(
    @InjectFleetConfig() private readonly fleet: ResolvedFleetConfig,
    private readonly nats: NatsConnectionService,
    private readonly reader: AtlasRebaselineReader,
  ) {}

  get status(): RelayRebaselineStatus {
    return { running: !!this.subscription, ...this.state };
  }

  async start(): Promise<void> {
    if (this.subscription) return;
    const nc = await this.nats.connect();
    const sub = nc.subscribe(REBASELINE_SUBJECTS, { queue: RELAY_QUEUE_GROUP });
    this.subscription = sub;
    this.loop = (async () => {
      // One request at a time per relay; more relays answer more devices at once.
      for await (const msg of sub) await this.answer(msg);
    })();
  }

  /** Stops taking requests; the one being answered is finished. */
  async stop(): Promise<void> {
    const sub = this.subscription;
    this.subscription = undefined;
    if (!sub) return;
    await sub.drain().catch(() => sub.unsubscribe());
    await this.loop;
  }

  private async answer(msg: Msg): Promise<void> {
    let reply: RebaselineReply;
    try {
      const deviceId = msg.subject.split('.')[2];
      reply = await this.handle(deviceId, decodeRebaselinePayload<RebaselineRequest>(msg.data));
      this.state.served++;
    } catch (err) {
      const message = redactMessage((err as Error)?.message ?? String(err));
      this.state.failed++;
      this.state.lastError = message;
      this.logger.warn(`Re-baseline request on ${msg.subject} failed: ${message}`);
      reply = { error: message };
    }
    if (!msg.reply) return;
    try {
      msg.respond(this.encodeWithinPayload(reply));
    } catch (err) {
      this.logger.warn(`Could not reply on ${msg.subject}: ${(err as Error).message}`);
    }
  }

  async handle(deviceId: string, request: RebaselineRequest): Promise<RebaselineReply> {
    switch (request.op) {
      case 'position':
        return { seq: await this.changesLastSequence(), result: null };
      case 'collections':
        return { result: await this.reader.collections() };
      case 'count':
        return { result: await this.reader.estimatedCount(request.collection) };
      case 'id-ends':
        return { result: await this.reader.ids.endBrackets(request.collection) };
      case 'id-types':
        return { result: await this.reader.ids.idTypes(request.collection) };
      case 'page': {
        const seq = await this.changesLastSequence();
        const bracket =
          request.bracket == null ? undefined : (JSON.parse(request.bracket) as Document);
        const after = request.after ?? undefined;
        return { seq, result: await this.reader.page(request.collection, bracket, after) };
      }
      case 'tombstones':
        return {
          result: await this.reader.tombstones(request.collection, request.after ?? undefined),
        };
      case 'states':
        if (request.ids.length > PAGE_SIZE)
          throw new Error(`at most ${PAGE_SIZE} ids per states request`);
        if (request.settled) await this.pushesApplied(deviceId);
        return { result: toWire(await this.reader.states(request.collection, request.ids)) };
      case 'empty':
        return { result: await this.reader.isEmpty(request.collection) };
      default:
        throw new Error(
          `unknown re-baseline request ${JSON.stringify((request as { op?: unknown }).op)}`,
        );
    }
  }

  private async changesLastSequence(): Promise<number> {
    const jsm = await this.nats.jetstreamManager();
    return (await jsm.streams.info(this.fleet.changesStream)).state.last_seq;
  }

  /**
   * Waits until no push the device queued before this call is left in the push stream (a
   * relay acknowledges, hence removes, a push only after Atlas acknowledged its write).
   */
  private async pushesApplied(deviceId: string): Promise<void> {
    const jsm = await this.nats.jetstreamManager();
    const stream = this.fleet.pushStream;
    const upTo = (await jsm.streams.info(stream)).state.last_seq;
    const subject = devicePushFilter(deviceId);
    const deadline = Date.now() + REBASELINE_PUSH_WAIT_MS;
    for (;;) {
      // STREAM.MSG.GET takes next_by_subj (nats-server 2.9+); the client types list it only
      // for direct gets, which the push stream does not enable.
      const query = { seq: 0, next_by_subj: subject } as unknown as MsgRequest;
      const next = await jsm.streams.getMessage(stream, query);
      if (!next || next.seq > upTo) return;
      if (Date.now() > deadline)
        throw new Error(
          `pushes of ${deviceId} up to sequence ${upTo} of ${stream} were not applied within ${REBASELINE_PUSH_WAIT_MS} ms (are the relays' push consumers running?)`,
        );
      await new Promise((r) => setTimeout(r, PUSH_POLL_MS));
    }
  }

  /** Trims a page or tombstone list to the server's max_payload (the device asks for the rest). */
  private encodeWithinPayload(reply: RebaselineReply): Uint8Array {
    let data = encodeRebaselinePayload(reply);
    const limit = this.nats.connection.info?.max_payload ?? 1024 * 1024;
    while (data.length > limit - REPLY_HEADROOM_BYTES) {
      const list = reply.result;
      if (!Array.isArray(list) || list.length <= 1)
        return encodeRebaselinePayload({
          error: `a reply of ${data.length} bytes exceeds the server's max_payload (${limit}): raise max_payload for documents this large`,
        });
      reply = { ...reply, result: list.slice(0, Math.ceil(list.length / 2)) };
      data = encodeRebaselinePayload(reply);
    }
    return data;
  }
}

function toWire(states: RemoteStates): WireStates {
  return {
    docs: [...states.docs].map(([k, v]) => ({ k, v: v ?? null })),
    tombstones: [...states.tombstones].map(([k, v]) => ({ k, v })),
  };
}
