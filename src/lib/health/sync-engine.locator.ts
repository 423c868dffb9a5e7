import { Injectable, Type } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { BidirectionalSyncService } from '../bidirectional-sync.service';
import { ConflictResolverService } from '../conflict/conflict-resolver.service';
import { SyncStoresService } from '../metadata/sync-stores.service';
import { MonitorService } from '../monitor/monitor.service';
import { OutboxRepository } from '../outbox/outbox.repository';

/**
 * Finds the services of `BidirectionalSyncModule` wherever the host imported
 * it, so the health and API modules work without `isGlobal` and without a
 * second engine instance.
 */
@Injectable()
export class SyncEngineLocator {
  private readonly cache = new Map<Type<unknown>, unknown>();

  constructor(private readonly moduleRef: ModuleRef) {}

  get sync(): BidirectionalSyncService {
    return this.find(BidirectionalSyncService);
  }

  get monitor(): MonitorService {
    return this.find(MonitorService);
  }

  get conflicts(): ConflictResolverService {
    return this.find(ConflictResolverService);
  }

  get outbox(): OutboxRepository {
    return this.find(OutboxRepository);
  }

  get stores(): SyncStoresService {
    return this.find(SyncStoresService);
  }

  private find<T>(type: Type<T>): T {
    const cached = this.cache.get(type) as T | undefined;
    if (cached) return cached;
    let found: T;
    try {
      found = this.moduleRef.get(type, { strict: false });
    } catch {
      throw new Error(
        `${type.name} not found: import BidirectionalSyncModule.forRoot() in the application`,
      );
    }
    this.cache.set(type, found);
    return found;
  }
}
