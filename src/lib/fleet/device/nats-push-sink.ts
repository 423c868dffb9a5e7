import { Injectable } from '@nestjs/common';
import { redactMessage } from '../../errors/sync.errors';
import { OriginTrackerService } from '../../origin/origin-tracker.service';
import {
  hostWriteTime,
  type PushedEdit,
  type PushOutcome,
} from '../../outbox/atlas-push-applier.service';
import type { PushSink } from '../../outbox/push-sink';
import { InjectFleetConfig } from '../fleet.decorators';
import type { ResolvedFleetConfig } from '../fleet-config';
import { encodeFleetMessage } from '../fleet-message.codec';
import { pushPartition, pushSubject } from '../fleet-subjects';
import { NatsConnectionService, toNatsPermissionError } from '../nats-connection.service';

/** Retry hint after a refused or failed publish (the entry stays in the outbox). */
const PUBLISH_RETRY_MS = 1000;

/**
 * Fleet mode's drainer sink: publishes each edit to `sync.push.<device>.<partition>` and
 * reports it `applied` on the JetStream acknowledgement, so the outbox entry is deleted
 * only once the push stream holds it. A refused publish (stream full, permissions, no
 * connection) leaves the entry queued. The relay applies it to Atlas later.
 */
@Injectable()
export class NatsPushSink implements PushSink {
  constructor(
    @InjectFleetConfig() private readonly fleet: ResolvedFleetConfig,
    private readonly nats: NatsConnectionService,
    private readonly origin: OriginTrackerService,
  ) {}

  async ready(): Promise<void> {
    await this.nats.connect();
  }

  async push<E extends PushedEdit>(edits: E[]): Promise<Map<E, PushOutcome>> {
    const deviceId = this.fleet.deviceId as string;
    const js = this.nats.jetstream();
    // Published in order without waiting in between: one document's pushes share a subject,
    // whose order JetStream keeps.
    const results = await Promise.allSettled(
      edits.map((edit) => {
        // The stamp's origin is this instance (the relay checks it against the subject's device).
        const stamp = { v: edit.v, o: this.origin.instanceId };
        const common = {
          collection: edit.c,
          id: edit.i,
          stamp,
          base: edit.base ?? null,
          writtenAt: hostWriteTime(edit),
        };
        const encoded = encodeFleetMessage(
          edit.op === 'delete'
            ? { ...common, op: 'delete' }
            : { ...common, op: 'upsert', document: edit.doc },
        );
        return js.publish(
          pushSubject(deviceId, pushPartition(edit.c, edit.i, this.fleet.pushPartitions)),
          encoded.data,
          { msgID: encoded.msgId, headers: encoded.headers },
        );
      }),
    );
    const outcomes = new Map<E, PushOutcome>();
    edits.forEach((edit, i) => {
      const result = results[i];
      if (result.status === 'fulfilled') outcomes.set(edit, 'applied');
      else {
        const error = toNatsPermissionError(result.reason) as Error;
        outcomes.set(edit, {
          error: redactMessage(`publish to JetStream failed: ${error?.message ?? error}`),
          retryMs: PUBLISH_RETRY_MS,
        });
      }
    });
    return outcomes;
  }
}
