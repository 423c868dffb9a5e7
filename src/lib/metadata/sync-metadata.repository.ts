import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { Injectable, Logger } from '@nestjs/common';
import type { Collection, Document, ResumeToken } from 'mongodb';
import { SYNC_COLLECTIONS } from '../bidirectional-sync.constants';
import { hasMongoErrorCode, MONGO_ERROR_CODES } from '../common/mongo-error-codes';
import { SyncStoresService } from './sync-stores.service';

interface MetadataDocument extends Document {
  _id: string;
}

/**
 * Per-instance state in the local `_sync_metadata` collection: the instance
 * id, the enabled flag set over REST and the clock's high-water mark.
 */
@Injectable()
export class SyncMetadataRepository {
  private readonly logger = new Logger(SyncMetadataRepository.name);

  constructor(private readonly stores: SyncStoresService) {}

  private get collection(): Collection<MetadataDocument> {
    return this.stores.local.collection<MetadataDocument>(SYNC_COLLECTIONS.metadata);
  }

  /**
   * The configured id, or the one stored on first start, or a new random one.
   * Random ids keep cloned machines from sharing one silently; a configured id
   * that differs from the stored one is logged.
   */
  async resolveInstanceId(configured?: string): Promise<string> {
    const stored = await this.collection.findOne({ _id: 'instance' });
    if (configured) {
      if (stored && stored.instanceId !== configured) {
        this.logger.warn(
          `Configured instance id "${configured}" replaces stored id "${stored.instanceId}"`,
        );
      }
      await this.collection.updateOne(
        { _id: 'instance' },
        { $set: { instanceId: configured, host: hostname(), updatedAt: new Date() } },
        { upsert: true },
      );
      return configured;
    }
    if (stored?.instanceId) return stored.instanceId as string;
    const generated = `dev-${randomBytes(6).toString('hex')}`;
    // Two processes starting at once agree on the first id written.
    await this.collection.updateOne(
      { _id: 'instance' },
      { $setOnInsert: { instanceId: generated, host: hostname(), createdAt: new Date() } },
      { upsert: true },
    );
    const winner = await this.collection.findOne({ _id: 'instance' });
    return winner!.instanceId as string;
  }

  async getEnabled(instanceId: string): Promise<boolean | undefined> {
    const doc = await this.collection.findOne({ _id: `state:${instanceId}` });
    return typeof doc?.enabled === 'boolean' ? doc.enabled : undefined;
  }

  async setEnabled(instanceId: string, enabled: boolean): Promise<void> {
    await this.collection.updateOne(
      { _id: `state:${instanceId}` },
      { $set: { enabled, updatedAt: new Date() } },
      { upsert: true },
    );
  }

  async getClockHighWater(instanceId: string): Promise<string | undefined> {
    const doc = await this.collection.findOne({ _id: `clock:${instanceId}` });
    return doc?.highWater as string | undefined;
  }

  async saveClockHighWater(instanceId: string, highWater: string): Promise<void> {
    await this.collection.updateOne(
      { _id: `clock:${instanceId}` },
      { $max: { highWater }, $set: { updatedAt: new Date() } },
      { upsert: true },
    );
  }

  async getClockOffset(instanceId: string): Promise<number | undefined> {
    const doc = await this.collection.findOne({ _id: `clock:${instanceId}` });
    return typeof doc?.atlasOffsetMs === 'number' ? doc.atlasOffsetMs : undefined;
  }

  async saveClockOffset(instanceId: string, atlasOffsetMs: number): Promise<void> {
    await this.collection.updateOne(
      { _id: `clock:${instanceId}` },
      { $set: { atlasOffsetMs, calibratedAt: new Date() } },
      { upsert: true },
    );
  }

  /** The checkpoint of a re-baseline in progress (see RebaselineService), if any. */
  async getRebaselineCheckpoint<T extends Document>(instanceId: string): Promise<T | undefined> {
    const doc = await this.collection.findOne({ _id: `rebaseline:${instanceId}` });
    return (doc?.checkpoint as T | undefined) ?? undefined;
  }

  async saveRebaselineCheckpoint(instanceId: string, checkpoint: Document): Promise<void> {
    await this.collection.updateOne(
      { _id: `rebaseline:${instanceId}` },
      { $set: { checkpoint, updatedAt: new Date() } },
      { upsert: true },
    );
  }

  async clearRebaselineCheckpoint(instanceId: string): Promise<void> {
    await this.collection.deleteOne({ _id: `rebaseline:${instanceId}` });
  }

  async getResumeTokenDocument(id: string): Promise<MetadataDocument | null> {
    return this.collection.findOne({ _id: id });
  }

  /** Stores a token unless the stored one is further along (tokens never move backwards). */
  async saveResumeToken(
    id: string,
    token: ResumeToken,
    position: string | undefined,
  ): Promise<boolean> {
    const filter: Document = { _id: id };
    if (position !== undefined)
      filter.$or = [{ position: { $lte: position } }, { position: { $exists: false } }];
    try {
      await this.collection.updateOne(
        filter,
        { $set: { token, position, savedAt: new Date() } },
        { upsert: true },
      );
      return true;
    } catch (err) {
      if (hasMongoErrorCode(err, MONGO_ERROR_CODES.DuplicateKey)) return false;
      throw err;
    }
  }

  async clearResumeToken(id: string): Promise<void> {
    await this.collection.deleteOne({ _id: id });
  }
}
