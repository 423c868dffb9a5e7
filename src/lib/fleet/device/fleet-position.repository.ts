import { Injectable } from '@nestjs/common';
import { SyncMetadataRepository } from '../../metadata/sync-metadata.repository';

/** Digits of the sortable position string: JetStream sequences are uint64, below 10^20. */
const POSITION_DIGITS = 20;

/**
 * A device's position in the changes stream (the last applied stream sequence), persisted
 * in `_sync_metadata` beside the resume tokens (`fleet:<instanceId>:<stream>`). It never
 * moves backwards (the metadata's position guard, on the zero-padded sequence).
 */
@Injectable()
export class FleetPositionRepository {
  constructor(private readonly metadata: SyncMetadataRepository) {}

  private id(instanceId: string, stream: string): string {
    return `fleet:${instanceId}:${stream}`;
  }

  /** The last applied sequence; undefined when none is stored (first start: re-baseline). */
  async load(instanceId: string, stream: string): Promise<number | undefined> {
    const doc = await this.metadata.getResumeTokenDocument(this.id(instanceId, stream));
    const seq = (doc?.token as { seq?: unknown } | undefined)?.seq;
    return typeof seq === 'number' ? seq : undefined;
  }

  async save(instanceId: string, stream: string, seq: number): Promise<void> {
    await this.metadata.saveResumeToken(
      this.id(instanceId, stream),
      { stream, seq },
      String(seq).padStart(POSITION_DIGITS, '0'),
    );
  }
}
