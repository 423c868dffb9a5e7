import { Injectable, Logger } from '@nestjs/common';
import { EventEmitter2 } from '@nestjs/event-emitter';
import type { ChangeStreamDocument, Document } from 'mongodb';
import { SYNC_COLLECTIONS } from '../bidirectional-sync.constants';
import { idKey } from '../common/sync-stamp';
import { redactMessage } from '../errors/sync.errors';
import { SyncErrorEvent, SyncEvents } from '../events/sync-events';
import { SyncStoresService } from '../metadata/sync-stores.service';
import { MonitorService } from '../monitor/monitor.service';
import type { IncomingChange } from './atlas-change-classifier';

/** Marks a dead letter whose retry is under way (see DeadLetterService.record). */
export const RETRYING_FIELD = 'retrying';

/**
 * Keeps a change the engine could not apply (a malformed event, a document
 * the host's validation rejects) in `_sync_dead_letters`, with the reason;
 * counts it and announces it. The stream goes on.
 */
@Injectable()
export class DeadLetterService {
  private readonly logger = new Logger(DeadLetterService.name);

  constructor(
    private readonly stores: SyncStoresService,
    private readonly monitor: MonitorService,
    private readonly events: EventEmitter2,
  ) {}

  async record(change: IncomingChange | ChangeStreamDocument, err: unknown): Promise<void> {
    const message = redactMessage((err as Error)?.message ?? String(err));
    const c = change as Partial<IncomingChange> & {
      ns?: { coll?: string };
      documentKey?: { _id?: unknown };
      fullDocument?: Document;
    };
    const collection = c.collection ?? c.ns?.coll;
    const documentId = 'id' in c ? c.id : c.documentKey?._id;
    this.logger.warn(
      `Dead-lettered change to ${collection ?? '?'} ${JSON.stringify(documentId)}: ${message}`,
    );
    this.monitor.recordDeadLetter();
    this.events.emit(
      SyncEvents.error,
      new SyncErrorEvent('processor', message, collection, documentId),
    );
    const version = c.stamp?.v;
    const details = {
      origin: c.stamp?.o,
      operation: c.operation ?? (change as ChangeStreamDocument).operationType,
      document: c.doc ?? c.fullDocument,
      error: message,
      errorName: (err as Error)?.name,
      at: new Date(),
    };
    const store = this.stores.local.collection(SYNC_COLLECTIONS.deadLetters);
    if (collection === undefined || documentId === undefined || version === undefined) {
      await store.insertOne({ collection, documentId, version, ...details });
      return;
    }
    // Delivery is at least once (a resumed stream, a re-baseline page racing
    // the stream): the same change rejected twice is one dead letter, not two.
    // A dead letter being retried is left out, so that a retry rejected again
    // leaves a new one behind.
    await store.updateOne(
      { collection, documentId, version, [RETRYING_FIELD]: { $exists: false } },
      { $set: details },
      { upsert: true },
    );
  }

  /** Which of these documents have a dead letter (key: `idKey` of the id). */
  async heldFor(collection: string, ids: unknown[]): Promise<Set<string>> {
    if (!ids.length) return new Set();
    const found = await this.stores.local
      .collection<{ documentId: unknown }>(SYNC_COLLECTIONS.deadLetters)
      .find({ collection, documentId: { $in: ids } }, { projection: { documentId: 1 } })
      .toArray();
    return new Set(found.map((d) => idKey(d.documentId)));
  }
}
