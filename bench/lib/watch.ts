import type { ChangeStream, ChangeStreamDocument, Db, Document } from 'mongodb';
import type { VisibilityTracker } from './tracker';

const TOMBSTONES = '_sync_tombstones';

/**
 * A change stream on a destination database that reports what becomes
 * visible there to a tracker: inserts/replaces by `fullDocument.seq`,
 * updates by `updatedFields.seq`, deletes by id. With `tombstones`, a
 * document the destination never held counts as deleted once its
 * tombstone lands (the engine coalesced insert+delete into a tombstone).
 */
export class DestinationWatcher {
  private closed = false;
  private loop?: Promise<void>;
  events = 0;

  private constructor(
    private readonly stream: ChangeStream,
    private readonly collection: string,
    private readonly tracker: VisibilityTracker,
  ) {}

  static async open(
    db: Db,
    collection: string,
    tracker: VisibilityTracker,
    { tombstones = false }: { tombstones?: boolean } = {},
  ): Promise<DestinationWatcher> {
    const stream = db.watch(
      [{ $match: { 'ns.coll': { $in: tombstones ? [collection, TOMBSTONES] : [collection] } } }],
      { maxAwaitTimeMS: 100, batchSize: 1000 },
    );
    const watcher = new DestinationWatcher(stream, collection, tracker);
    // The first round trip opens the cursor: from here on nothing is missed.
    const first = await stream.tryNext();
    if (first) watcher.handle(first);
    watcher.loop = watcher.run();
    return watcher;
  }

  private async run(): Promise<void> {
    while (!this.closed) {
      try {
        const event = await this.stream.tryNext();
        if (event) this.handle(event);
      } catch (err) {
        if (!this.closed) throw err;
      }
    }
  }

  private handle(event: ChangeStreamDocument): void {
    const at = performance.now();
    this.events++;
    const e = event as ChangeStreamDocument & {
      ns?: { coll?: string };
      documentKey?: { _id?: unknown };
      fullDocument?: Document | null;
      updateDescription?: { updatedFields?: Document };
    };
    const key = e.documentKey?._id;
    if (e.ns?.coll === TOMBSTONES) {
      // Tombstone keys are `<collection>\0<JSON of the id>` (see documentKeyOf).
      const prefix = `${this.collection}\u0000`;
      if (typeof key !== 'string' || !key.startsWith(prefix)) return;
      const id: unknown = JSON.parse(key.slice(prefix.length));
      if (typeof id === 'string' && !this.tracker.wasSeen(id)) this.tracker.seen(id, 'deleted', at);
      return;
    }
    if (typeof key !== 'string') return;
    switch (event.operationType) {
      case 'insert':
      case 'replace': {
        const seq = e.fullDocument?.seq;
        if (typeof seq === 'number') this.tracker.seen(key, seq, at);
        break;
      }
      case 'update': {
        const seq = e.updateDescription?.updatedFields?.seq;
        if (typeof seq === 'number') this.tracker.seen(key, seq, at);
        break;
      }
      case 'delete':
        this.tracker.seen(key, 'deleted', at);
        break;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.stream.close().catch(() => undefined);
    await this.loop?.catch(() => undefined);
  }
}
