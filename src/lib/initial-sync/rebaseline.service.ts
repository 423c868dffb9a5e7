import { Injectable, Logger } from '@nestjs/common';
import type { Document } from 'mongodb';
import { ATLAS_ORIGIN, SYNC_COLLECTIONS, SYNC_STAMP_FIELD } from '../bidirectional-sync.constants';
import { compareVersions, successor, SyncVersion } from '../common/hybrid-logical-clock';
import { issuedStamp } from '../common/engine-writes';
import { LocalChangeCaptureService } from '../capture/local-change-capture.service';
import { ForgottenDeletesService } from './forgotten-deletes.service';
import { pagesById } from './pages-by-id';
import { idKey, readStamp, SyncStamp } from '../common/sync-stamp';
import { ResolvedSyncConfig } from '../config/sync-config';
import { SyncStoresService } from '../metadata/sync-stores.service';
import { OriginTrackerService } from '../origin/origin-tracker.service';
import { NewOutboxEntry, OutboxRepository } from '../outbox/outbox.repository';
import { Tombstone, TombstoneRepository } from '../outbox/tombstone.repository';
import { ChangeProcessorService, IncomingChange } from '../processor/change-processor.service';
import { ResumeTokenRepository } from '../resume-token/resume-token.repository';
import { SyncMetadataRepository } from '../metadata/sync-metadata.repository';
import { idTypeBrackets } from '../common/id-brackets';
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

/** Reading the current position needs only the first (empty) batch: wait briefly (ms). */
const POSITION_READ_MAX_AWAIT_MS = 50;

/** The stamp given to Atlas documents written without the module: older than any stamped version. */
export const UNSTAMPED_ATLAS_STAMP: SyncStamp = {
  v: successor(`000000000000000-000000-${ATLAS_ORIGIN}`, ATLAS_ORIGIN)!,
  o: ATLAS_ORIGIN,
};

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

  constructor(
    @InjectSyncConfig() private readonly config: ResolvedSyncConfig,
    private readonly stores: SyncStoresService,
    private readonly origin: OriginTrackerService,
    private readonly processor: ChangeProcessorService,
    private readonly outbox: OutboxRepository,
    private readonly tombstones: TombstoneRepository,
    private readonly tokens: ResumeTokenRepository,
    private readonly metadata: SyncMetadataRepository,
    private readonly capture: LocalChangeCaptureService,
    private readonly forgottenDeletes: ForgottenDeletesService,
  ) {}

  get progress(): RebaselineProgress {
    return { ...this.state };
  }

  /** Runs (or continues) a full compare-and-copy and stores the position to resume the Atlas stream from. */
  async rebaseline(reason: string): Promise<void> {
    const id = this.origin.instanceId;
    const saved = await this.metadata.getRebaselineCheckpoint<RebaselineCheckpoint>(id);
    const checkpoint: RebaselineCheckpoint = saved ?? {
      position: await this.currentAtlasPosition(),
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
          if (await this.forgottenDeletes.atlasCollectionEmpty(collection))
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
      await this.tokens.save(id, 'atlas', checkpoint.position);
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
    const db = phase === 'pull' ? this.stores.atlas : this.stores.local;
    const brackets = await idTypeBrackets([this.stores.atlas, this.stores.local], collection);
    let skipping = resume?.bracket !== undefined;
    for (const bracket of brackets) {
      const key = JSON.stringify(bracket ?? null);
      if (skipping && key !== resume!.bracket) continue;
      const after = skipping && 'afterId' in resume! ? { id: resume!.afterId } : undefined;
      skipping = false;
      for await (const page of pagesById(db, collection, bracket, after)) {
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
      for (const db of [this.stores.atlas, this.stores.local])
        total += await db.collection(collection).estimatedDocumentCount();
    return total;
  }

  private updateRemaining(): void {
    this.state.remaining = Math.max(0, (this.state.total ?? 0) - this.state.compared);
  }

  /** A resume token for "now" on Atlas, taken before comparing so nothing after it is missed. */
  private async currentAtlasPosition(): Promise<Document> {
    const stream = this.stores.atlas.watch([], { maxAwaitTimeMS: POSITION_READ_MAX_AWAIT_MS });
    try {
      await stream.tryNext();
      return stream.resumeToken as Document;
    } finally {
      await stream.close();
    }
  }

  private async collectionsToCompare(): Promise<string[]> {
    const names = new Set<string>();
    for (const db of [this.stores.atlas, this.stores.local]) {
      for (const c of await db.listCollections({}, { nameOnly: true }).toArray()) {
        if (this.config.pushesCollection(c.name)) names.add(c.name);
      }
    }
    return [...names].sort();
  }

  /** Atlas → Local: every Atlas document goes through the normal (versioned) apply. */
  private async pullPage(collection: string, page: Document[]): Promise<void> {
    await this.adoptUnstamped(collection, page);
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
    const tombs = await this.stores.atlas
      .collection<Tombstone>(SYNC_COLLECTIONS.tombstones)
      .find({ c: collection })
      .toArray();
    if (tombs.length) {
      await this.processor.applyChanges(
        tombs.map((t) => ({ collection, id: t.i, operation: 'delete', stamp: t._sync })),
      );
    }
  }

  /**
   * Atlas documents written without the module (before any device ran, or
   * while history was lost) get the oldest possible version, on Atlas itself
   * and with a compare-and-set, so that every device holds the same stamp as
   * Atlas and any stamped copy of the document wins over it. Every device
   * writes the same value, so concurrent re-baselines agree.
   */
  private async adoptUnstamped(collection: string, page: Document[]): Promise<void> {
    const unstamped = page.filter((doc) => !readStamp(doc));
    if (!unstamped.length) return;
    await this.stores.atlas.collection(collection).updateMany(
      {
        _id: { $in: unstamped.map((doc) => doc._id) },
        [SYNC_STAMP_FIELD]: { $exists: false },
      } as Document,
      { $set: { [SYNC_STAMP_FIELD]: UNSTAMPED_ATLAS_STAMP } },
    );
    // Re-read: a device or a direct write may have changed them meanwhile.
    const current = new Map(
      (
        await this.stores.atlas
          .collection(collection)
          .find({ _id: { $in: unstamped.map((doc) => doc._id) } } as Document)
          .toArray()
      ).map((doc) => [idKey(doc._id), doc]),
    );
    for (const [i, doc] of page.entries()) {
      if (readStamp(doc)) continue;
      const now = current.get(idKey(doc._id));
      // Deleted meanwhile: its tombstone (or the stream) carries the delete.
      page[i] = now && readStamp(now) ? now : { ...doc, [SYNC_STAMP_FIELD]: UNSTAMPED_ATLAS_STAMP };
    }
  }

  /**
   * Local → Atlas: local documents missing on Atlas or newer than Atlas's
   * copy go to the outbox, except stamped documents that Atlas no longer
   * holds and holds no tombstone of (deleted after the tombstone expired, or
   * on Atlas without the module while no device streamed): see `ForgottenDeletesService`.
   */
  private async pushPage(collection: string, page: Document[], atlasEmpty = false): Promise<void> {
    const ids = page.map((d) => d._id);
    const remote = await this.stores.atlas
      .collection(collection)
      .find({ _id: { $in: ids } } as Document, { projection: { [SYNC_STAMP_FIELD]: 1 } })
      .toArray();
    const remoteVersions = new Map(remote.map((d) => [idKey(d._id), readStamp(d)?.v]));
    const remoteTombs = await this.tombstones.find(this.stores.atlas, collection, ids);
    const entries: NewOutboxEntry[] = [];
    const absent: Document[] = [];
    for (const doc of page) {
      const key = idKey(doc._id);
      let stamp = readStamp(doc);
      const atlasVersion = remoteVersions.has(key)
        ? remoteVersions.get(key)
        : remoteTombs.get(key)?._sync.v;
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
