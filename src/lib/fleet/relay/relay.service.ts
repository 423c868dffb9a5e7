import {
  Injectable,
  Logger,
  OnApplicationBootstrap,
  BeforeApplicationShutdown,
} from '@nestjs/common';
import { LeaseService, LeaseStatus } from '../../lease/lease.service';
import { OriginTrackerService } from '../../origin/origin-tracker.service';
import { NatsConnectionService, NatsConnectionStatus } from '../nats-connection.service';
import { RelayChangePublisher, RelayPublisherStatus } from './relay-change-publisher.service';
import { RelayPushConsumer, RelayPushStatus } from './relay-push-consumer.service';
import {
  RelayRebaselineResponder,
  RelayRebaselineStatus,
} from './relay-rebaseline-responder.service';

export interface RelayStatus {
  /** `active`: this relay tails Atlas and publishes changes; `standby`: pushes only. */
  role: LeaseStatus['role'];
  instanceId: string;
  lease: LeaseStatus;
  nats: NatsConnectionStatus;
  changes: RelayPublisherStatus;
  pushes: RelayPushStatus;
  rebaselines: RelayRebaselineStatus;
}

/**
 * The relay's life cycle: connects to NATS, provisions the fleet streams, works the push
 * partitions (every relay), and competes for the lease of the relay database (one per
 * Atlas database): its holder alone tails the Atlas change stream and publishes changes;
 * a standby takes over when the holder stops or dies (within the lease TTL). Every relay
 * answers devices' re-baseline requests.
 */
@Injectable()
export class RelayService implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger(RelayService.name);
  private readonly unsubscribe: (() => void)[] = [];
  private started = false;

  constructor(
    private readonly nats: NatsConnectionService,
    private readonly lease: LeaseService,
    private readonly origin: OriginTrackerService,
    private readonly publisher: RelayChangePublisher,
    private readonly pushes: RelayPushConsumer,
    private readonly rebaselines: RelayRebaselineResponder,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    await this.start();
  }

  async beforeApplicationShutdown(): Promise<void> {
    await this.stop();
  }

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    await this.origin.initialize();
    await this.nats.connect();
    await this.nats.provisionStreams();
    await this.pushes.start();
    await this.rebaselines.start();
    this.unsubscribe.push(
      this.lease.onAcquired(() => {
        this.logger.log('Active relay: publishing Atlas changes');
        this.publisher.start();
      }),
      this.lease.onLost(async ({ reason }) => {
        this.logger.log(`Standing by (${reason}): no longer publishing Atlas changes`);
        await this.publisher.stop();
      }),
    );
    const role = await this.lease.start();
    if (role === 'standby') this.logger.log('Standby relay: another relay publishes Atlas changes');
  }

  /** Stops publishing and consuming (work in progress finishes), releases the lease. */
  async stop(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    await this.lease.stop();
    for (const off of this.unsubscribe.splice(0)) off();
    await this.rebaselines.stop();
    await this.publisher.stop();
    await this.pushes.stop();
    await this.origin.persistClock().catch(() => undefined);
  }

  status(): RelayStatus {
    return {
      role: this.lease.role,
      instanceId: this.origin.instanceId,
      lease: this.lease.status(),
      nats: this.nats.status(),
      changes: this.publisher.status,
      pushes: this.pushes.status,
      rebaselines: this.rebaselines.status,
    };
  }
}
