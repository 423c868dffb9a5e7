import { Injectable } from '@nestjs/common';
import { BidirectionalSyncService } from './bidirectional-sync.service';
import { ConflictResolverService } from './conflict/conflict-resolver.service';
import { SyncStoresService } from './metadata/sync-stores.service';
import { MonitorService } from './monitor/monitor.service';
import { OutboxRepository } from './outbox/outbox.repository';

/**
 * The engine services that the health, API and metrics modules read.
 * `BidirectionalSyncModule.forRoot()` provides it application-wide, alone:
 * those modules then inject it wherever the host imported the engine, while
 * the services themselves stay exactly as visible as `isGlobal` says.
 *
 * @internal
 */
@Injectable()
export class SyncEngine {
  constructor(
    readonly sync: BidirectionalSyncService,
    readonly monitor: MonitorService,
    readonly conflicts: ConflictResolverService,
    readonly outbox: OutboxRepository,
    readonly stores: SyncStoresService,
  ) {}
}
