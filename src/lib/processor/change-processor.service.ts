import { Injectable, Logger } from '@nestjs/common';
import { EventEmitter2 } from '@nestjs/event-emitter';
import type { ChangeStreamDocument } from 'mongodb';
import { InjectSyncConfig } from '../bidirectional-sync.decorators';
import { maxVersion, SyncVersion } from '../common/hybrid-logical-clock';
import { documentKeyOf } from '../common/sync-stamp';
import type { ResolvedSyncConfig } from '../config/sync-config';
import { SyncErrorEvent, SyncEvents } from '../events/sync-events';
import { OriginTrackerService } from '../origin/origin-tracker.service';
import { AtlasDataEvent, classifyAtlasEvent, IncomingChange } from './atlas-change-classifier';
import { AtlasDirectWriteAdopter, DirectWrite } from './atlas-direct-write-adopter.service';
import { DeadLetterService } from './dead-letter.service';
import { LocalApplierService } from './local-applier.service';

export type { IncomingChange } from './atlas-change-classifier';

/**
 * The specification's Change Processor: takes Atlas change events and
 * applies them locally. Each batch walks three steps: the classifier says
 * what each event means, the adopter stamps writes made on Atlas without the
 * module, and the local applier applies the stamped states (idempotent: a
 * state is written only when it is newer than the local one).
 *
 * @publicApi
 */
@Injectable()
export class ChangeProcessorService {
  private readonly logger = new Logger(ChangeProcessorService.name);

  constructor(
    @InjectSyncConfig() private readonly config: ResolvedSyncConfig,
    private readonly origin: OriginTrackerService,
    private readonly adopter: AtlasDirectWriteAdopter,
    private readonly applier: LocalApplierService,
    private readonly deadLetters: DeadLetterService,
    private readonly events: EventEmitter2,
  ) {}

  /** Main entry point for one Atlas change event. */
  async processChange(change: ChangeStreamDocument): Promise<void> {
    await this.processBatch([change]);
  }

  /** Applies a batch of Atlas change events (one local round trip per collection for the reads). */
  async processBatch(changes: ChangeStreamDocument[]): Promise<void> {
    const states: IncomingChange[] = [];
    const directWrites: DirectWrite[] = [];
    const plainDeletes: AtlasDataEvent[] = [];
    // Versions this batch delivers before each direct write: the write came after them.
    const newestSeen = new Map<string, SyncVersion>();
    const context = {
      instanceId: this.origin.instanceId,
      pullsCollection: (name: string) => this.config.pullsCollection(name),
      shouldSkipSync: (doc: Parameters<OriginTrackerService['shouldSkipSync']>[0]) =>
        this.origin.shouldSkipSync(doc),
    };
    for (const change of changes) {
      try {
        const meaning = classifyAtlasEvent(change, context);
        switch (meaning.kind) {
          case 'skip':
            if (meaning.warning) this.warn(meaning.warning, change, meaning.announce);
            break;
          case 'direct':
            directWrites.push({
              event: meaning.event,
              seenBefore: newestSeen.get(eventKey(meaning.event)),
            });
            break;
          case 'plain-delete':
            plainDeletes.push(meaning.event);
            break;
          case 'state': {
            states.push(meaning.change);
            const key = documentKeyOf(meaning.change.collection, meaning.change.id);
            newestSeen.set(key, maxVersion(newestSeen.get(key), meaning.change.stamp.v)!);
          }
        }
      } catch (err) {
        await this.deadLetters.record(change, err);
      }
    }
    await this.adopter.adoptWrites(directWrites);
    await this.adopter.recordDeletes(plainDeletes);
    await this.applier.apply(states);
  }

  /** Applies incoming states (used by the re-baseline and the per-operation entry points). */
  applyChanges(changes: IncomingChange[]): Promise<void> {
    return this.applier.apply(changes);
  }

  /** The specification's per-operation entry points. */
  applyInsert(change: IncomingChange): Promise<void> {
    return this.applyChanges([{ ...change, operation: 'insert' }]);
  }

  applyUpdate(change: IncomingChange): Promise<void> {
    return this.applyChanges([{ ...change, operation: 'update' }]);
  }

  applyReplace(change: IncomingChange): Promise<void> {
    return this.applyChanges([{ ...change, operation: 'replace' }]);
  }

  applyDelete(change: IncomingChange): Promise<void> {
    return this.applyChanges([{ ...change, operation: 'delete', doc: undefined }]);
  }

  private warn(warning: string, change: ChangeStreamDocument, announce?: boolean): void {
    this.logger.warn(warning);
    if (announce)
      this.events.emit(
        SyncEvents.error,
        new SyncErrorEvent('processor', warning, (change as { ns?: { coll?: string } }).ns?.coll),
      );
  }
}

function eventKey(event: AtlasDataEvent): string {
  return documentKeyOf(event.ns.coll, event.documentKey._id);
}
