import { Inject, Injectable } from '@nestjs/common';
import type { ChangeStream, Collection, Db, Document } from 'mongodb';
import { SYNC_COLLECTIONS } from '../bidirectional-sync.constants';
import { hasMongoErrorCode, MONGO_ERROR_CODES } from '../common/mongo-error-codes';
import { SyncStoresService } from '../metadata/sync-stores.service';

/** How long one read of the lease's change stream waits on the server (ms); a change answers at once. */
const LEASE_WATCH_MAX_AWAIT_MS = 1000;

/** The lease document in the local `_sync_metadata` collection. */
export interface LeaseDocument {
  _id: string;
  /** Holder id of the process that holds (or last held) the lease; null once released. */
  holder: string | null;
  /** Server time after which the lease is free (Date(0) once released). */
  expiresAt: Date;
  /** Server time the current holder acquired it. */
  acquiredAt?: Date;
  /** Server time of the last renewal. */
  renewedAt?: Date;
  /** Incremented on every change of holder (a fencing token). */
  term: number;
  releasedAt?: Date;
}

/** The lease as read, with the server's clock. */
export interface LeaseSnapshot {
  lease: LeaseDocument | null;
  /** Milliseconds until the lease expires by the server's clock (<= 0: free). */
  remainingMs: number;
}

/**
 * Reads and writes the lease with atomic single-document operations. Every
 * time comparison and every expiry uses the server's clock (`$$NOW`), so
 * processes with skewed clocks agree on who holds it.
 *
 * Dates are compared as `$toLong` milliseconds: SecantusDB 0.7.0b3 compares a
 * stored date with `$$NOW` wrongly (`$cmp` gives 0, `$subtract` fails), while
 * `$toLong` of both is exact on every server.
 */
@Injectable()
export class LeaseRepository {
  constructor(@Inject(SyncStoresService) private readonly source: { readonly local: Db }) {}

  /** A repository on any database handle (outside Nest). */
  static forDb(db: Db): LeaseRepository {
    return new LeaseRepository({ local: db });
  }

  private get collection(): Collection<LeaseDocument> {
    return this.source.local.collection<LeaseDocument>(SYNC_COLLECTIONS.metadata);
  }

  /**
   * Takes or renews the lease for `holder` for `ttlMs` if it is free,
   * expired or already held by `holder`; returns the lease if so, else null.
   */
  async tryAcquire(leaseId: string, holder: string, ttlMs: number): Promise<LeaseDocument | null> {
    const attempt = () =>
      this.collection.findOneAndUpdate(
        {
          _id: leaseId,
          $or: [{ holder }, { $expr: { $lte: [{ $toLong: '$expiresAt' }, { $toLong: '$$NOW' }] } }],
        } as Document,
        [
          {
            $set: {
              term: {
                $cond: [
                  { $eq: ['$holder', holder] },
                  '$term',
                  { $add: [{ $ifNull: ['$term', 0] }, 1] },
                ],
              },
              acquiredAt: { $cond: [{ $eq: ['$holder', holder] }, '$acquiredAt', '$$NOW'] },
              holder,
              expiresAt: { $add: ['$$NOW', ttlMs] },
              renewedAt: '$$NOW',
            },
          },
        ],
        { returnDocument: 'after' },
      );
    const lease = await attempt();
    if (lease || (await this.collection.countDocuments({ _id: leaseId }, { limit: 1 })))
      return lease;
    await this.ensure(leaseId);
    return attempt();
  }

  /** Gives the lease up if `holder` holds it; true when it did. */
  async release(leaseId: string, holder: string): Promise<boolean> {
    const result = await this.collection.updateOne({ _id: leaseId, holder }, [
      { $set: { holder: null, expiresAt: new Date(0), releasedAt: '$$NOW' } },
    ]);
    return result.modifiedCount === 1;
  }

  /** The lease and how long it still runs, by the server's clock. */
  async read(leaseId: string): Promise<LeaseSnapshot> {
    const [doc] = await this.collection
      .aggregate<LeaseDocument & { remainingMs: number }>([
        { $match: { _id: leaseId } },
        {
          $set: {
            remainingMs: { $subtract: [{ $toLong: '$expiresAt' }, { $toLong: '$$NOW' }] },
          },
        },
      ])
      .toArray();
    if (!doc) return { lease: null, remainingMs: 0 };
    const { remainingMs, ...lease } = doc;
    return { lease, remainingMs: Number(remainingMs) };
  }

  /**
   * A change stream of the lease document's holder changes (releases and
   * takeovers, not renewals), so a standby can take over at once.
   */
  watchHolderChanges(leaseId: string): ChangeStream {
    return this.collection.watch(
      [
        {
          $match: {
            'documentKey._id': leaseId,
            $or: [
              { operationType: { $in: ['insert', 'replace', 'delete'] } },
              { 'updateDescription.updatedFields.holder': { $exists: true } },
            ],
          },
        },
      ],
      { maxAwaitTimeMS: LEASE_WATCH_MAX_AWAIT_MS },
    );
  }

  /** Creates the (free) lease document if there is none. */
  private async ensure(leaseId: string): Promise<void> {
    await this.collection
      .updateOne(
        { _id: leaseId },
        { $setOnInsert: { holder: null, expiresAt: new Date(0), term: 0 } },
        { upsert: true },
      )
      .catch((err: unknown) => {
        // Another process created it between our read and our upsert.
        if (!hasMongoErrorCode(err, MONGO_ERROR_CODES.DuplicateKey)) throw err;
      });
  }
}
