import { Injectable, Logger, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import { Db, Document, MongoClient } from 'mongodb';
import type { Connection, Model } from 'mongoose';
import { SYNC_COLLECTIONS } from '../bidirectional-sync.constants';
import { ResolvedSyncConfig } from '../config/sync-config';
import { InjectSyncConfig, InjectSyncLocalConnection } from '../bidirectional-sync.decorators';
import { redactUri, SyncConfigurationError } from '../errors/sync.errors';

/** How long an Atlas operation waits for a reachable server before it fails (ms; the driver's default is 30 s). */
const ATLAS_SERVER_SELECTION_TIMEOUT_MS = 10_000;
const MS_PER_SECOND = 1000;

/**
 * Handles to both databases: the host's local Mongoose connection and the
 * module's own Atlas client. Creates the module's local indexes at start.
 * The Atlas client connects lazily, so a device starts (and keeps queueing
 * local changes) while Atlas is unreachable. A device in fleet mode has no
 * Atlas URI: it never creates the client, and `atlas` throws.
 */
@Injectable()
export class SyncStoresService implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger(SyncStoresService.name);
  private client?: MongoClient;
  private atlasIndexesReady?: Promise<void>;

  constructor(
    @InjectSyncConfig() private readonly config: ResolvedSyncConfig,
    @InjectSyncLocalConnection() readonly connection: Connection,
  ) {}

  /** False on a device in fleet mode (no Atlas URI): it reaches Atlas through the relays. */
  get hasAtlas(): boolean {
    return !!this.config.atlasUri;
  }

  /** The module's Atlas client, created on first use (no connection until an operation). */
  get atlasClient(): MongoClient {
    if (!this.config.atlasUri)
      throw new SyncConfigurationError([
        'no Atlas connection: atlasUri (ATLAS_MONGODB_URI) is not set (a device in fleet mode reaches Atlas through the relays)',
      ]);
    this.client ??= new MongoClient(this.config.atlasUri, {
      serverSelectionTimeoutMS: ATLAS_SERVER_SELECTION_TIMEOUT_MS,
      retryWrites: true,
      ...this.config.atlasClientOptions,
    });
    return this.client;
  }

  async onModuleInit(): Promise<void> {
    await this.connection.asPromise();
    this.logger.log(
      this.config.atlasUri
        ? `Local database "${this.local.databaseName}", Atlas ${redactUri(this.config.atlasUri)} database "${this.atlas.databaseName}"`
        : `Local database "${this.local.databaseName}", no Atlas connection (fleet mode)`,
    );
    const outbox = this.local.collection(SYNC_COLLECTIONS.outbox);
    await outbox.createIndex({ retryAt: 1, seq: 1 }); // the drainer: due entries, oldest first
    await outbox.createIndex({ seq: 1 }); // health: the oldest pending entry
    const tombstones = this.local.collection(SYNC_COLLECTIONS.tombstones);
    await tombstones.createIndex(
      { deletedAt: 1 },
      { expireAfterSeconds: Math.round(this.config.tombstoneRetention / MS_PER_SECOND) },
    );
    await this.local.collection(SYNC_COLLECTIONS.conflicts).createIndex({ resolvedAt: -1 });
    await this.local
      .collection(SYNC_COLLECTIONS.conflicts)
      .createIndex({ collection: 1, resolvedAt: -1 });
    const deadLetters = this.local.collection(SYNC_COLLECTIONS.deadLetters);
    await deadLetters.createIndex({ at: -1 });
    await deadLetters.createIndex({ collection: 1, documentId: 1, version: 1 }); // one per change
  }

  async onApplicationShutdown(): Promise<void> {
    await this.client?.close().catch(() => undefined);
  }

  /** The local database (the host's connection). */
  get local(): Db {
    const db = this.connection.db;
    if (!db) throw new Error('local Mongoose connection is not open');
    return db as unknown as Db;
  }

  /** The Atlas database. */
  get atlas(): Db {
    return this.atlasClient.db(this.config.atlasDbName ?? this.connection.db?.databaseName);
  }

  /** Creates the module's Atlas indexes once Atlas answers (retried by callers on failure). */
  ensureAtlasIndexes(): Promise<void> {
    const tombstones = this.atlas.collection(SYNC_COLLECTIONS.tombstones);
    this.atlasIndexesReady ??= Promise.all([
      tombstones.createIndex(
        { deletedAt: 1 },
        { expireAfterSeconds: Math.round(this.config.tombstoneRetention / MS_PER_SECOND) },
      ),
      tombstones.createIndex({ c: 1 }), // a re-baseline reads one collection's tombstones
    ])
      .then(() => undefined)
      .catch((err) => {
        this.atlasIndexesReady = undefined;
        throw err;
      });
    return this.atlasIndexesReady;
  }

  /** The host's Mongoose model for a collection, if it registered one on the local connection. */
  modelFor(collection: string): Model<Document> | undefined {
    for (const name of this.connection.modelNames()) {
      const model = this.connection.model<Document>(name);
      if (model.collection.collectionName === collection) return model;
    }
    return undefined;
  }
}
