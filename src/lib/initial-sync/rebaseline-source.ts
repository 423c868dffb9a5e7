import { Injectable } from '@nestjs/common';
import type { Document } from 'mongodb';
import type { IdTypeSide } from '../common/id-brackets';
import { OriginTrackerService } from '../origin/origin-tracker.service';
import { ResumeTokenRepository } from '../resume-token/resume-token.repository';
import { AtlasRebaselineReader, RemoteStates, RemoteTombstone } from './atlas-rebaseline-reader';

/** Injection token of the re-baseline's `RebaselineSource` (optional: without one, Atlas itself). */
export const SYNC_REBASELINE_SOURCE = Symbol('SYNC_REBASELINE_SOURCE');

/**
 * Where a re-baseline reads Atlas's side from, and where the listener resumes afterwards.
 * Direct mode reads Atlas (`AtlasRebaselineSource`); fleet mode asks a relay over NATS
 * request/reply, which answers with the same `AtlasRebaselineReader`.
 */
export interface RebaselineSource {
  /** The pull position to resume from afterwards, taken before the first page is read. */
  position(): Promise<Document>;
  /** Makes `position` the listener's starting point (a resume token, a stream sequence). */
  savePosition(position: Document): Promise<void>;
  /** Atlas's collection names (unfiltered). */
  collections(): Promise<string[]>;
  estimatedCount(collection: string): Promise<number>;
  readonly ids: IdTypeSide;
  /** Atlas documents of one `_id` bracket in `_id` order after `after.id`, unstamped ones adopted. */
  pages(
    collection: string,
    bracket: Document | undefined,
    after?: { id: unknown },
  ): AsyncGenerator<Document[]>;
  tombstones(collection: string): AsyncGenerator<RemoteTombstone[]>;
  states(collection: string, ids: unknown[]): Promise<RemoteStates>;
  isEmpty(collection: string): Promise<boolean>;
  /**
   * `states()` once every push this device handed over before the call has reached Atlas.
   * Direct mode: an outbox entry is deleted only after Atlas acknowledged it, so this is
   * `states()`. Fleet mode: an entry is deleted on the push stream's acknowledgement, so
   * the relay first waits until the device's pushes queued up to now have been applied.
   */
  settledStates(collection: string, ids: unknown[]): Promise<RemoteStates>;
}

/** Direct mode's source: Atlas itself, and the Atlas resume token. */
@Injectable()
export class AtlasRebaselineSource implements RebaselineSource {
  constructor(
    private readonly reader: AtlasRebaselineReader,
    private readonly tokens: ResumeTokenRepository,
    private readonly origin: OriginTrackerService,
  ) {}

  position(): Promise<Document> {
    return this.reader.changeStreamPosition();
  }

  savePosition(position: Document): Promise<void> {
    return this.tokens.save(this.origin.instanceId, 'atlas', position);
  }

  collections(): Promise<string[]> {
    return this.reader.collections();
  }

  estimatedCount(collection: string): Promise<number> {
    return this.reader.estimatedCount(collection);
  }

  get ids(): IdTypeSide {
    return this.reader.ids;
  }

  pages(
    collection: string,
    bracket: Document | undefined,
    after?: { id: unknown },
  ): AsyncGenerator<Document[]> {
    return pagesAfter((last) => this.reader.page(collection, bracket, last), after);
  }

  tombstones(collection: string): AsyncGenerator<RemoteTombstone[]> {
    return pagesAfter<RemoteTombstone, string>((last) =>
      this.reader.tombstones(collection, last?.id),
    );
  }

  states(collection: string, ids: unknown[]): Promise<RemoteStates> {
    return this.reader.states(collection, ids);
  }

  isEmpty(collection: string): Promise<boolean> {
    return this.reader.isEmpty(collection);
  }

  settledStates(collection: string, ids: unknown[]): Promise<RemoteStates> {
    return this.reader.states(collection, ids);
  }
}

/** Pages read one after another, each after the last `_id` of the one before, until one is empty. */
export async function* pagesAfter<T extends Document, K = unknown>(
  read: (after: { id: K } | undefined) => Promise<T[]>,
  after?: { id: K },
): AsyncGenerator<T[]> {
  let last = after;
  for (;;) {
    const page = await read(last);
    if (!page.length) return;
    last = { id: (page[page.length - 1] as Document)._id as K };
    yield page;
  }
}
