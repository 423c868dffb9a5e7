import { Inject, Injectable, Logger, Optional } from '@nestjs/common';
import type { Document } from 'mongodb';
import { SYNC_STAMP_FIELD } from '../bidirectional-sync.constants';
import { compareVersions, SyncVersion } from '../common/hybrid-logical-clock';
import { issuedStamp } from '../common/engine-writes';
import { ForgottenDeletesService } from './forgotten-deletes.service';
import { pagesById } from './pages-by-id';
import {
  AtlasRebaselineSource,
  RebaselineSource,
  SYNC_REBASELINE_SOURCE,
} from './rebaseline-source';
import { idKey, readStamp, SyncStamp } from '../common/sync-stamp';
import { ResolvedSyncConfig } from '../config/sync-config';
import { SyncStoresService } from '../metadata/sync-stores.service';
import { OriginTrackerService } from '../origin/origin-tracker.service';
import { NewOutboxEntry, OutboxRepository } from '../outbox/outbox.repository';
import { ChangeProcessorService, IncomingChange } from '../processor/change-processor.service';
import { SyncMetadataRepository } from '../metadata/sync-metadata.repository';
import { dbIdTypes, idTypeBrackets } from '../common/id-brackets';
import { InjectSyncConfig } from '../bidirectional-sync.decorators';

export interface RebaselineProgress {
  state: 'idle' | 'running' | 'done' | 'failed';
  reason?: string;
  startedAt?: Date;
  finishedAt?: Date;
  collection?: string;
  compared: number;
  copiedToLocal: number;
  queuedToAtlas: number;
  /** Local documents deleted because Atlas deleted them and no tombstone was left (see the README). */
  deletedLocally: number;
  /** Documents on both sides when the re-baseline started (an estimate; a document on both counts twice). */
  total?: number;
  /** `total - compared`, never below 0. */
  remaining?: number;
  /** True when this run continues one cut short (crash, stop). */
  resumed?: boolean;
  error?: string;
}

type Phase = 'pull' | 'push';

/**
 * Where a re-baseline got to, saved after every page in `_sync_metadata`, so
 * one cut short by a crash or a stop continues where it was (with the
 * stream position it recorded first) instead of starting over.
 */
export interface RebaselineCheckpoint {
  position: Document;
  reason: string;
  startedAt: Date;
  collection?: string;
  phase?: Phase;
  /** JSON of the `_id` type bracket being walked (`null`: the only one). */
  bracket?: string;
  /** Last `_id` done in that bracket; absent: the bracket starts from its beginning. */
  afterId?: unknown;
  compared: number;
  copiedToLocal: number;
  queuedToAtlas: number;
  /** Collections Atlas held no document of when this re-baseline reached them (nothing is deleted locally there). */
  atlasEmpty?: string[];
}

export { UNSTAMPED_ATLAS_STAMP } from './atlas-rebaseline-reader';

/**
 * Brings both sides together without a usable change stream position: on a
 * device's first start, and when the stored token is lost (history lost,
 * invalidated, rejected). It first records a new stream position, then
 * compares the two databases collection by collection in `_id` order and
 * copies whichever side is newer (Atlas → Local through the normal apply
 * path, Local → Atlas through the outbox), then the listener resumes from
 * the recorded position, so nothing written meanwhile is missed. Progress
 * is saved after every page: a re-baseline cut short by a crash continues
 * from there (comparing is idempotent, so a page done twice is harmless).
 * Atlas's side comes from a `RebaselineSource`: Atlas itself in direct mode,
 * a relay over NATS in fleet mode (which then resumes from a stream sequence).
 */
@Injectable()
export class RebaselineService {
  private readonly logger = new Logger(RebaselineService.name);
  private readonly state: RebaselineProgress = {
    state: 'idle',
    compared: 0,
    copiedToLocal: 0,
    queuedToAtlas: 0,
    deletedLocally: 0,
  };

  /** Atlas's side: the bound `SYNC_REBASELINE_SOURCE` (fleet mode), else Atlas itself. */
  private readonly source: RebaselineSource;

  constructor(
    @InjectSyncConfig() private readonly config: ResolvedSyncConfig,
    private readonly stores: SyncStoresService,
    private readonly origin: OriginTrackerService,
    private readonly processor: ChangeProcessorService,
    private readonly outbox: OutboxRepository,
    private readonly metadata: SyncMetadataRepository,
    private readonly forgottenDeletes: ForgottenDeletesService,
    direct: AtlasRebaselineSource,
    @Optional() @Inject(SYNC_REBASELINE_SOURCE) source?: RebaselineSource,
  ) {
    this.source = source ?? direct;
  }

  get progress(): RebaselineProgress {
    return { ...this.state };
  }

  /** Runs (or continues) a full compare-and-copy and stores the position to resume the Atlas stream from. */
  async rebaseline(reason: string): Promise<void> {
    const id = this.origin.instanceId;
    const saved = await this.metadata.getRebaselineCheckpoint<RebaselineCheckpoint>(id);
    const checkpoint: RebaselineCheckpoint = saved ?? {
      position: await this.source.position(),
      reason,
      startedAt: new Date(),
      compared: 0,
      copiedToLocal: 0,
      queuedToAtlas: 0,
    };
    if (!saved) await this.metadata.saveRebaselineCheckpoint(id, checkpoint);
    const collections = await this.collectionsToCompare();
    Object.assign(this.state, {
      state: 'running',
      reason: saved ? `${saved.reason}; resumed (${reason})` : reason,
      resumed: !!saved,
      startedAt: checkpoint.startedAt,
      finishedAt: undefined,
      compared: checkpoint.compared,
      copiedToLocal: checkpoint.copiedToLocal,
      queuedToAtlas: checkpoint.queuedToAtlas,
      deletedLocally: 0,
      total: await this.estimateTotal(collections),
      error: undefined,
    });
    this.updateRemaining();
    this.logger.log(
      saved
        ? `Re-baseline resumed at ${saved.collection ?? 'the start'} (${saved.reason}; now ${reason})`
        : `Re-baseline started (${reason})`,
    );
    try {
      for (const collection of collections) {
        // Collections are walked in name order: those before the checkpoint's are done.
        if (saved?.collection && collection < saved.collection) continue;
        const resumeHere = saved?.collection === collection ? saved : undefined;
        this.state.collection = collection;
        if (!resumeHere && this.config.pushesCollection(collection)) {
          // Judged once, before this device pushes anything of it (see ForgottenDeletesService).
          if (await this.source.isEmpty(collection))
            checkpoint.atlasEmpty = [...(checkpoint.atlasEmpty ?? []), collection];
          await this.metadata.saveRebaselineCheckpoint(id, checkpoint);
        }
        if (this.config.pullsCollection(collection) && resumeHere?.phase !== 'push') {
          await this.walk(collection, 'pull', checkpoint, resumeHere);
          await this.pullTombstones(collection);
        }
        if (this.config.pushesCollection(collection))
          await this.walk(
            collection,
            'push',
            checkpoint,
            resumeHere?.phase === 'push' ? resumeHere : undefined,
          );
        this.logger.log(
          `Re-baseline ${collection}: compared ${this.state.compared}, copied to local ${this.state.copiedToLocal}, queued to Atlas ${this.state.queuedToAtlas}, remaining ${this.state.remaining}`,
        );
      }
      await this.source.savePosition(checkpoint.position);
      await this.metadata.clearRebaselineCheckpoint(id);
      Object.assign(this.state, { state: 'done', finishedAt: new Date(), collection: undefined });
      this.logger.log(
        `Re-baseline done: ${JSON.stringify({ compared: this.state.compared, copiedToLocal: this.state.copiedToLocal, queuedToAtlas: this.state.queuedToAtlas })}`,
      );
    } catch (err) {
      Object.assign(this.state, { state: 'failed', error: String((err as Error)?.message ?? err) });
      throw err;
    }
  }

  /** One side of one collection, bracket by bracket and page by page, saving the checkpoint after each page. */
  private async walk(
    collection: string,
    phase: Phase,
    checkpoint: RebaselineCheckpoint,
    resume: RebaselineCheckpoint | undefined,
  ): Promise<void> {
    const brackets = await idTypeBrackets(
      [this.source.ids, dbIdTypes(this.stores.local)],
      collection,
    );
    let skipping = resume?.bracket !== undefined;
    for (const bracket of brackets) {
      const key = JSON.stringify(bracket ?? null);
      if (skipping && key !== resume!.bracket) continue;
      const after = skipping && 'afterId' in resume! ? { id: resume!.afterId } : undefined;
      skipping = false;
      const pages =
        phase === 'pull'
          ? this.source.pages(collection, bracket, after)
          : pagesById(this.stores.local, collection, bracket, after);
      for await (const page of pages) {
        if (phase === 'pull') await this.pullPage(collection, page);
        else await this.pushPage(collection, page, checkpoint.atlasEmpty?.includes(collection));
        Object.assign(checkpoint, {
          collection,
          phase,
          bracket: key,
          afterId: page[page.length - 1]._id,
          compared: this.state.compared,
          copiedToLocal: this.state.copiedToLocal,
          queuedToAtlas: this.state.queuedToAtlas,
        });
        await this.metadata.saveRebaselineCheckpoint(this.origin.instanceId, checkpoint);
        this.updateRemaining();
      }
    }
  }

  private async estimateTotal(collections: string[]): Promise<number> {
    let total = 0;
    for (const collection of collections)
      total +=
        (await this.source.estimatedCount(collection)) +
        (await this.stores.local.collection(collection).estimatedDocumentCount());
    return total;
  }

  private updateRemaining(): void {
    this.state.remaining = Math.max(0, (this.state.total ?? 0) - this.state.compared);
  }

  private async collectionsToCompare(): Promise<string[]> {
    const local = await this.stores.local.listCollections({}, { nameOnly: true }).toArray();
    const names = new Set([...(await this.source.collections()), ...local.map((c) => c.name)]);
    return [...names].filter((name) => this.config.pushesCollection(name)).sort();
  }

  /** Atlas → Local: every Atlas document (unstamped ones adopted by the source) goes through the normal (versioned) apply. */
  private async pullPage(collection: string, page: Document[]): Promise<void> {
    const changes: IncomingChange[] = page.map((doc) => {
      const stamp = readStamp(doc) as SyncStamp;
      return { collection, id: doc._id, operation: 'replace', doc, stamp };
    });
    await this.processor.applyChanges(changes);
    this.state.compared += page.length;
    this.state.copiedToLocal += page.length;
  }

  /** Atlas's tombstones of a collection, applied like deletes (older local states go). */
  private async pullTombstones(collection: string): Promise<void> {
    for await (const tombs of this.source.tombstones(collection))
      await this.processor.applyChanges(
        tombs.map((t) => ({ collection, id: t.i, operation: 'delete', stamp: t._sync })),
      );
  }

  /**
   * Local → Atlas: local documents missing on Atlas or newer than Atlas's
   * copy go to the outbox, except stamped documents that Atlas no longer
   * holds and holds no tombstone of (deleted after the tombstone expired, or
   * on Atlas without the module while no device streamed): see `ForgottenDeletesService`.
   */
  private async pushPage(collection: string, page: Document[], atlasEmpty = false): Promise<void> {
    const { docs: remoteVersions, tombstones: remoteTombs } = await this.source.states(
      collection,
      page.map((d) => d._id),
    );
    const entries: NewOutboxEntry[] = [];
    const absent: Document[] = [];
    for (const doc of page) {
      const key = idKey(doc._id);
      let stamp = readStamp(doc);
      const atlasVersion = remoteVersions.has(key) ? remoteVersions.get(key) : remoteTombs.get(key);
      const onAtlas = remoteVersions.has(key) || remoteTombs.has(key);
      // Only where Atlas's deletes are applied here at all (not in push-only collections).
      if (stamp && !onAtlas && this.config.pullsCollection(collection)) {
        absent.push(doc);
        continue;
      }
      if (!stamp) {
        // Data written before the module ran: stamp it now (newer than whatever Atlas holds).
        stamp = issuedStamp(doc, doc._id, {
          v: this.origin.clock.tickAfter(atlasVersion),
          o: this.origin.instanceId,
        });
        await this.stores.local
          .collection(collection)
          .updateOne({ _id: doc._id, [SYNC_STAMP_FIELD]: { $exists: false } } as Document, {
            $set: { [SYNC_STAMP_FIELD]: stamp },
          });
      }
      if (!onAtlas || compareVersions(stamp.v, atlasVersion) > 0) {
        entries.push(this.rebaseEntry(collection, doc, stamp, atlasVersion));
      }
    }
    if (absent.length) {
      const { deletedLocally, queuedToAtlas } = await this.forgottenDeletes.settle(
        collection,
        absent,
        atlasEmpty,
        this.source,
      );
      this.state.deletedLocally += deletedLocally;
      this.state.queuedToAtlas += queuedToAtlas;
    }
    await this.outbox.enqueue(entries);
    this.state.compared += page.length;
    this.state.queuedToAtlas += entries.length;
  }

  private rebaseEntry(
    collection: string,
    doc: Document,
    stamp: SyncStamp,
    atlasVersion: SyncVersion | undefined,
  ): NewOutboxEntry {
    return {
      collection,
      id: doc._id,
      op: 'upsert',
      v: stamp.v,
      base: atlasVersion,
      rebase: true,
      doc: { ...doc, [SYNC_STAMP_FIELD]: stamp },
    };
  }
}
