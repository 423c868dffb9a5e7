import { Injectable } from '@nestjs/common';
import { NoRespondersError, RequestError, TimeoutError } from '@nats-io/nats-core';
import type { Document } from 'mongodb';
import type { IdTypeSide } from '../../common/id-brackets';
import type { RemoteStates, RemoteTombstone } from '../../initial-sync/atlas-rebaseline-reader';
import { PAGE_SIZE } from '../../initial-sync/pages-by-id';
import { pagesAfter, type RebaselineSource } from '../../initial-sync/rebaseline-source';
import { OriginTrackerService } from '../../origin/origin-tracker.service';
import { REBASELINE_PUSH_WAIT_MS } from '../fleet.constants';
import { InjectFleetConfig } from '../fleet.decorators';
import type { ResolvedFleetConfig } from '../fleet-config';
import { FleetRebaselineError } from '../fleet.errors';
import {
  decodeRebaselinePayload,
  encodeRebaselinePayload,
  RebaselineReply,
  RebaselineRequest,
  WireStates,
} from '../fleet-rebaseline.protocol';
import { rebaselineSubject } from '../fleet-subjects';
import { NatsConnectionService, toNatsPermissionError } from '../nats-connection.service';
import { FleetPositionRepository } from './fleet-position.repository';

/** How long a device waits for a relay's answer (a settled states request may wait for pushes). */
const REQUEST_TIMEOUT_MS = REBASELINE_PUSH_WAIT_MS + 10_000;

/** The position a fleet re-baseline records: the changes stream's sequence to consume after. */
export interface FleetRebaselinePosition {
  stream: string;
  seq: number;
}

/**
 * Fleet mode's re-baseline source: every read of Atlas's side is a request to the relays on
 * `sync.rebaseline.<deviceId>` (answered from Atlas by `RelayRebaselineResponder` with the
 * reader direct mode uses), and the position is a changes stream sequence, saved as the
 * device's fleet position, so the listener consumes from there. The device needs no Atlas
 * URI and no Atlas credentials.
 */
@Injectable()
export class NatsRebaselineSource implements RebaselineSource {
  constructor(
    @InjectFleetConfig() private readonly fleet: ResolvedFleetConfig,
    private readonly nats: NatsConnectionService,
    private readonly origin: OriginTrackerService,
    private readonly positions: FleetPositionRepository,
  ) {}

  async position(): Promise<Document> {
    const reply = await this.request({ op: 'position' });
    if (typeof reply.seq !== 'number')
      throw new FleetRebaselineError('the relay sent no changes stream sequence');
    const position: FleetRebaselinePosition = { stream: this.fleet.changesStream, seq: reply.seq };
    return position as unknown as Document;
  }

  async savePosition(position: Document): Promise<void> {
    const { stream, seq } = position as Partial<FleetRebaselinePosition>;
    // A checkpoint of a direct-mode re-baseline holds a resume token: no use here.
    if (stream !== this.fleet.changesStream || typeof seq !== 'number')
      throw new FleetRebaselineError(
        `the re-baseline recorded a position that is not a ${this.fleet.changesStream} sequence`,
      );
    await this.positions.save(this.origin.instanceId, stream, seq);
  }

  async collections(): Promise<string[]> {
    return (await this.request({ op: 'collections' })).result as string[];
  }

  async estimatedCount(collection: string): Promise<number> {
    return (await this.request({ op: 'count', collection })).result as number;
  }

  get ids(): IdTypeSide {
    return {
      endBrackets: async (collection) =>
        (await this.request({ op: 'id-ends', collection })).result as string[],
      idTypes: async (collection) =>
        (await this.request({ op: 'id-types', collection })).result as string[],
    };
  }

  pages(
    collection: string,
    bracket: Document | undefined,
    after?: { id: unknown },
  ): AsyncGenerator<Document[]> {
    const request = (last: { id: unknown } | undefined) =>
      this.request({
        op: 'page',
        collection,
        bracket: bracket ? JSON.stringify(bracket) : null,
        ...(last ? { after: last } : {}),
      });
    return pagesAfter(async (last) => (await request(last)).result as Document[], after);
  }

  tombstones(collection: string): AsyncGenerator<RemoteTombstone[]> {
    const request = (last: { id: string } | undefined) =>
      this.request({ op: 'tombstones', collection, ...(last ? { after: last.id } : {}) });
    return pagesAfter<RemoteTombstone, string>(
      async (last) => (await request(last)).result as RemoteTombstone[],
    );
  }

  states(collection: string, ids: unknown[]): Promise<RemoteStates> {
    return this.statesOf(collection, ids, false);
  }

  async isEmpty(collection: string): Promise<boolean> {
    return (await this.request({ op: 'empty', collection })).result as boolean;
  }

  settledStates(collection: string, ids: unknown[]): Promise<RemoteStates> {
    return this.statesOf(collection, ids, true);
  }

  private async statesOf(
    collection: string,
    ids: unknown[],
    settled: boolean,
  ): Promise<RemoteStates> {
    const states: RemoteStates = { docs: new Map(), tombstones: new Map() };
    for (let i = 0; i < ids.length; i += PAGE_SIZE) {
      const wire = (
        await this.request({
          op: 'states',
          collection,
          ids: ids.slice(i, i + PAGE_SIZE),
          settled,
        })
      ).result as WireStates;
      for (const d of wire.docs) states.docs.set(d.k, d.v ?? undefined);
      for (const t of wire.tombstones) states.tombstones.set(t.k, t.v);
    }
    return states;
  }

  private async request(request: RebaselineRequest): Promise<RebaselineReply> {
    const nc = await this.nats.connect();
    const subject = rebaselineSubject(this.fleet.deviceId as string);
    let reply: RebaselineReply;
    try {
      const msg = await nc.request(subject, encodeRebaselinePayload(request), {
        timeout: REQUEST_TIMEOUT_MS,
      });
      reply = decodeRebaselinePayload<RebaselineReply>(msg.data);
    } catch (err) {
      const cause = (err as { cause?: unknown })?.cause ?? err;
      if (err instanceof NoRespondersError || cause instanceof NoRespondersError)
        throw new FleetRebaselineError(
          `no relay answers re-baseline requests on ${subject} (is a relay running?)`,
          { cause: err },
        );
      if (err instanceof TimeoutError || cause instanceof TimeoutError)
        throw new FleetRebaselineError(
          `no relay answered the re-baseline request "${request.op}" within ${REQUEST_TIMEOUT_MS} ms`,
          { cause: err },
        );
      const translated = toNatsPermissionError(err);
      if (translated !== err || !(err instanceof RequestError)) throw translated;
      throw new FleetRebaselineError(`re-baseline request failed: ${err.message}`, { cause: err });
    }
    if (reply.error != null)
      throw new FleetRebaselineError(`the relay could not serve "${request.op}": ${reply.error}`);
    return reply;
  }
}
