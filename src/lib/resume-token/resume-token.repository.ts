import { Injectable, Logger } from '@nestjs/common';
import type { ResumeToken } from 'mongodb';
import { SyncMetadataRepository } from '../metadata/sync-metadata.repository';

/** The two streams whose positions are persisted. */
export type SyncStreamName = 'atlas' | 'local';

export interface StoredResumeToken {
  token: ResumeToken;
  savedAt: Date;
}

/**
 * Persists change stream positions in `_sync_metadata`, one per instance and
 * stream, so restarts and outages resume where they stopped. A token is
 * only replaced by one that is further along: MongoDB's token `_data` sorts
 * in stream order (hex KeyString), which guards against a driver handing
 * back an older token.
 *
 * @publicApi
 */
@Injectable()
export class ResumeTokenRepository {
  private readonly logger = new Logger(ResumeTokenRepository.name);

  constructor(private readonly metadata: SyncMetadataRepository) {}

  private id(instanceId: string, stream: SyncStreamName): string {
    return `resume:${instanceId}:${stream}`;
  }

  async load(instanceId: string, stream: SyncStreamName): Promise<StoredResumeToken | undefined> {
    const doc = await this.metadata.getResumeTokenDocument(this.id(instanceId, stream));
    return doc?.token
      ? { token: doc.token as ResumeToken, savedAt: doc.savedAt as Date }
      : undefined;
  }

  async save(instanceId: string, stream: SyncStreamName, token: ResumeToken): Promise<void> {
    const saved = await this.metadata.saveResumeToken(
      this.id(instanceId, stream),
      token,
      tokenPosition(token),
    );
    if (!saved) this.logger.warn(`Refused to move the ${stream} resume token backwards`);
  }

  async clear(instanceId: string, stream: SyncStreamName): Promise<void> {
    await this.metadata.clearResumeToken(this.id(instanceId, stream));
  }
}

/**
 * The sortable part of a MongoDB token: its `_data` hex KeyString, which
 * starts with the cluster time (type byte 0x82) and so sorts in stream order.
 * Tokens of other formats (SecantusDB's own, see docs/test-server.md) are
 * not ordered this way and get no position, hence no backwards guard.
 */
export function tokenPosition(token: ResumeToken): string | undefined {
  const data = (token as { _data?: unknown })?._data;
  return typeof data === 'string' && /^82[0-9a-fA-F]+$/i.test(data)
    ? data.toUpperCase()
    : undefined;
}
