import {
  ConflictException,
  Injectable,
  Logger,
  NotFoundException,
  ServiceUnavailableException,
  UnprocessableEntityException,
} from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { BSON, Collection, Document, ObjectId } from 'mongodb';
import { SYNC_COLLECTIONS } from '../bidirectional-sync.constants';
import { readStamp } from '../common/sync-stamp';
import { redactMessage } from '../errors/sync.errors';
import type { SyncOperation } from '../events/sync-events';
import { SyncEngine } from '../sync-engine';
import { ChangeProcessorService, IncomingChange } from '../processor/change-processor.service';
import { RETRYING_FIELD } from '../processor/dead-letter.service';
import type { DeadLettersQueryDto } from './dto/dead-letters.dto';
import type {
  DeadLetterDiscardResponseDto,
  DeadLetterEntryDto,
  DeadLetterRetryResponseDto,
  DeadLettersResponseDto,
} from './dto/dead-letters.dto';

/** A record of `_sync_dead_letters`, as the change processor writes it. */
interface DeadLetterRecord {
  _id: ObjectId;
  collection?: string;
  documentId?: unknown;
  version?: string;
  origin?: string;
  operation?: string;
  document?: Document;
  error?: string;
  errorName?: string;
  at?: Date;
}

const OPERATIONS: readonly SyncOperation[] = ['insert', 'update', 'replace', 'delete'];

/**
 * Lists, retries and discards the remote changes the host rejected
 * (`_sync_dead_letters`). A retry re-applies the stored change through the
 * normal apply path (`ChangeProcessorService.applyChanges`), so it is
 * version-checked like any other: after the host fixed its validation (or
 * Atlas's data), it lands; when the local side meanwhile holds a newer
 * version it is `superseded`; rejected again, a new dead letter replaces it.
 */
@Injectable()
export class SyncDeadLettersService {
  private readonly logger = new Logger('SyncApi');

  constructor(
    private readonly engine: SyncEngine,
    private readonly moduleRef: ModuleRef,
  ) {}

  async list(query: DeadLettersQueryDto): Promise<DeadLettersResponseDto> {
    const filter: Document = query.collection ? { collection: query.collection } : {};
    const [total, records] = await Promise.all([
      this.store.countDocuments(filter),
      this.store
        .find(filter, { sort: { _id: -1 }, skip: query.offset, limit: query.limit })
        .toArray(),
    ]);
    return { totalDeadLetters: total, deadLetters: records.map(entry) };
  }

  async retry(id: string): Promise<DeadLetterRetryResponseDto> {
    const _id = new ObjectId(id);
    const record = await this.store.findOne({ _id });
    if (!record) throw new NotFoundException(`No dead letter ${id}`);
    const change = incomingChangeOf(record);
    if (!change)
      throw new ConflictException(
        `Dead letter ${id} cannot be retried: it holds no versioned change (${record.error ?? 'malformed event'}); discard it`,
      );
    const started = new Date();
    // Marked, not deleted, while the retry runs: a crash mid-retry leaves it
    // listed, and a rejection during the retry is recorded as a new one.
    await this.store.updateOne({ _id }, { $set: { [RETRYING_FIELD]: true } });
    try {
      await this.processor.applyChanges([change]);
    } catch (err) {
      await this.store.updateOne({ _id }, { $unset: { [RETRYING_FIELD]: '' } });
      const reason = redactMessage(err instanceof Error ? err.message : String(err));
      throw new ServiceUnavailableException(`Retry of dead letter ${id} failed: ${reason}`);
    }
    const again = await this.store.findOne(
      {
        _id: { $ne: _id },
        collection: change.collection,
        documentId: change.id,
        version: change.stamp.v,
        at: { $gte: started },
      } as Document,
      { sort: { _id: -1 } },
    );
    await this.store.deleteOne({ _id });
    const what = `${change.collection} ${describeId(change.id)}`;
    if (again) {
      this.logger.warn(`Dead letter ${id} (${what}) retried: rejected again (${again.error})`);
      throw new UnprocessableEntityException({
        success: false,
        outcome: 'rejected',
        message: `Rejected again: ${again.error ?? 'unknown error'}`,
        deadLetterId: again._id.toHexString(),
      });
    }
    const local = await this.engine.stores.local
      .collection(change.collection)
      .findOne({ _id: change.id } as Document);
    const holds = change.operation === 'delete' ? !local : readStamp(local)?.v === change.stamp.v;
    const outcome = holds ? 'applied' : 'superseded';
    this.logger.log(`Dead letter ${id} (${what}) retried: ${outcome}`);
    return {
      success: true,
      outcome,
      message: holds
        ? `Applied: ${what} now holds version ${change.stamp.v}`
        : `Superseded: ${what} holds a newer version than the dead letter's; nothing to apply`,
    };
  }

  async discard(id: string): Promise<DeadLetterDiscardResponseDto> {
    const record = await this.store.findOneAndDelete({ _id: new ObjectId(id) });
    if (!record) throw new NotFoundException(`No dead letter ${id}`);
    this.logger.log(
      `Dead letter ${id} (${record.collection ?? '?'} ${describeId(record.documentId)}) discarded`,
    );
    return { success: true, message: `Dead letter ${id} discarded` };
  }

  private get store(): Collection<DeadLetterRecord> {
    return this.engine.stores.local.collection<DeadLetterRecord>(SYNC_COLLECTIONS.deadLetters);
  }

  private get processor(): ChangeProcessorService {
    return this.moduleRef.get(ChangeProcessorService, { strict: false });
  }
}

/** The change a dead letter holds, or undefined when it holds none that can be applied. */
function incomingChangeOf(record: DeadLetterRecord): IncomingChange | undefined {
  const operation = record.operation as SyncOperation;
  if (!record.collection || !('documentId' in record) || !record.version || !record.origin)
    return undefined;
  if (!OPERATIONS.includes(operation)) return undefined;
  if (operation !== 'delete' && !record.document) return undefined;
  return {
    collection: record.collection,
    id: record.documentId,
    operation,
    doc: operation === 'delete' ? undefined : record.document,
    // The document's own stamp carries the field versions of the field-level strategy.
    stamp:
      readStamp(record.document)?.v === record.version
        ? readStamp(record.document)!
        : { v: record.version, o: record.origin },
  };
}

function entry(record: DeadLetterRecord): DeadLetterEntryDto {
  return {
    id: record._id.toHexString(),
    collection: record.collection ?? null,
    documentId: describeId(record.documentId),
    operation: record.operation ?? null,
    version: record.version ?? null,
    origin: record.origin ?? null,
    error: redactMessage(record.error ?? ''),
    errorName: record.errorName ?? null,
    at: record.at instanceof Date ? record.at.toISOString() : null,
    retryable: !!incomingChangeOf(record),
  };
}

/** Document ids as strings: ObjectId as hex, strings as they are, anything else as relaxed EJSON. */
function describeId(id: unknown): string {
  if (typeof id === 'string') return id;
  if (id instanceof ObjectId) return id.toHexString();
  if (id === undefined) return '?';
  if (typeof id === 'number' || typeof id === 'bigint' || typeof id === 'boolean')
    return String(id);
  return BSON.EJSON.stringify(id as never, { relaxed: true });
}
