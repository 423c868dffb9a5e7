import { Injectable } from '@nestjs/common';
import type { Collection, Document } from 'mongodb';
import { SYNC_COLLECTIONS } from '../bidirectional-sync.constants';
import { SyncStoresService } from '../metadata/sync-stores.service';

/** A recorded conflict, in the specification's shape plus versions. */
export interface ConflictRecord {
  collection: string;
  documentId: unknown;
  localVersion?: string;
  atlasVersion?: string;
  localTimestamp?: Date;
  atlasTimestamp?: Date;
  winner: 'local' | 'atlas' | 'merged';
  strategy: string;
  resolvedAt: Date;
}

export interface ConflictQuery {
  limit?: number;
  /** Matching records to skip first (newest first), for paging. */
  offset?: number;
  collection?: string;
  since?: Date;
}

/** Conflicts in the local `_sync_conflicts` collection, trimmed to `maxConflictRecords`. */
@Injectable()
export class ConflictRepository {
  constructor(private readonly stores: SyncStoresService) {}

  private get collection(): Collection<ConflictRecord & Document> {
    return this.stores.local.collection(SYNC_COLLECTIONS.conflicts);
  }

  async insert(records: ConflictRecord[]): Promise<void> {
    if (records.length) await this.collection.insertMany(records.map((r) => ({ ...r })));
  }

  async find(query: ConflictQuery): Promise<{ total: number; records: ConflictRecord[] }> {
    const filter: Document = {};
    if (query.collection) filter.collection = query.collection;
    if (query.since) filter.resolvedAt = { $gte: query.since };
    const [total, records] = await Promise.all([
      this.collection.countDocuments(filter),
      this.collection
        .find(filter, { projection: { _id: 0 } })
        .sort({ resolvedAt: -1, _id: -1 })
        .skip(query.offset ?? 0)
        .limit(query.limit ?? 50)
        .toArray(),
    ]);
    return { total, records };
  }

  async countSince(since: Date): Promise<number> {
    return this.collection.countDocuments({ resolvedAt: { $gte: since } });
  }

  /** Keeps the newest `keep` records. */
  async trim(keep: number): Promise<void> {
    const boundary = await this.collection
      .find({}, { projection: { resolvedAt: 1 } })
      .sort({ resolvedAt: -1 })
      .skip(keep)
      .limit(1)
      .next();
    if (boundary) await this.collection.deleteMany({ resolvedAt: { $lte: boundary.resolvedAt } });
  }
}
