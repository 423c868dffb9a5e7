import {
  BeforeApplicationShutdown,
  Injectable,
  Logger,
  OnApplicationBootstrap,
  Optional,
} from '@nestjs/common';
import { EventEmitter2 } from '@nestjs/event-emitter';
import { CaptureModeService } from './capture/capture-mode.service';
import { FleetChangeConsumer } from './fleet/device/fleet-change-consumer.service';
import { NatsConnectionService } from './fleet/nats-connection.service';
import { DirtyMarkerCaptureService } from './capture/dirty-marker-capture.service';
import { LocalChangeCaptureService } from './capture/local-change-capture.service';
import type { LocalCapture } from './capture/local-capture.interface';
import { ResolvedSyncConfig } from './config/sync-config';
import type { HealthThresholds } from './health/sync-health.options';
import type { LocalCaptureMode } from './config/sync-options.interface';
import { SyncEvents, SyncStateChangedEvent } from './events/sync-events';
import { RebaselineProgress, RebaselineService } from './initial-sync/rebaseline.service';
import { GapDeletesProgress, GapDeletesService } from './initial-sync/gap-deletes.service';
import { LocalRescanProgress, LocalRescanService } from './initial-sync/local-rescan.service';
import { ListenerService } from './listener/listener.service';
import { SyncMetadataRepository } from './metadata/sync-metadata.repository';
import { MonitorService } from './monitor/monitor.service';
import { OriginTrackerService } from './origin/origin-tracker.service';
import { OutboxDrainerService } from './outbox/outbox-drainer.service';
import { OutboxRepository } from './outbox/outbox.repository';
import { LeaseService } from './lease/lease.service';
import { InjectSyncConfig } from './bidirectional-sync.decorators';

/** How long start() waits for the local capture to catch up before returning anyway (ms). */
const START_WAIT_FOR_CAPTURE_MS = 5000;

export type HealthState = 'healthy' | 'degraded' | 'unhealthy';

/** The specification's health shape, plus lag and ages. */
export interface BidirectionalHealth {
  enabled: boolean;
  instanceId: string;
  /** `active` runs the sync; `standby` waits for the lease of the local database. */
  role: 'active' | 'standby';
  lease: { holderId: string; currentHolder: string | null; term: number | null };
  atlasListener: {
    running: boolean;
    connected: boolean;
    lastChange: string | null;
    reconnectAttempts: number;
    disconnectedSince: string | null;
    lastError: string | null;
    resumeTokenAgeMs: number | null;
  };
  localCapture: {
    /** `change-stream` (replica sets) or `mongoose-plugin` (standalone servers); null before start. */
    mode: LocalCaptureMode | null;
    running: boolean;
    connected: boolean;
    lastError: string | null;
  };
  syncWorker: {
    running: boolean;
    queueSize: number;
    oldestPendingAgeMs: number | null;
    lastError: string | null;
  };
  rebaseline: RebaselineProgress;
  /** The re-scan for local writes the capture missed (after the local oplog rolled past it). */
  localRescan: LocalRescanProgress & {
    /** After the re-scan: the check for deletes made in the gap (GapDeletesService). */
    gapDeletes: GapDeletesProgress;
  };
  lagMs: { localToAtlas: number | null; atlasToLocal: number | null };
  conflictsLastHour: number;
  /**
   * How this device reaches Atlas: `direct`, or `nats` (fleet mode) with the NATS connection
   * (no secret), the last applied changes-stream sequence and the messages still pending on
   * the device's consumer (as of its last fetch).
   */
  transport: SyncTransportStatus;
  health: HealthState;
  reasons: string[];
}

/** How a device reaches Atlas (`BidirectionalHealth.transport`, `/metrics`, Prometheus). */
export interface SyncTransportStatus {
  mode: 'direct' | 'nats';
  /** The NATS connection (no secret); null in direct mode. */
  nats: {
    state: string;
    server: string | null;
    reconnects: number;
    lastError: string | null;
  } | null;
  /** The last changes-stream sequence applied and saved; null in direct mode. */
  changesSequence: number | null;
  /**
   * Messages on the device's consumer not yet applied (delivered or not): its consumer lag,
   * read from JetStream at most once a second while connected, else the last reading.
   */
  changesPending: number | null;
}

export type { HealthThresholds } from './health/sync-health.options';

/**
 * Starts and stops both directions, owns the on/off switch of Atlas → Local
 * (persisted per instance) and composes health.
 *
 * @publicApi
 */
@Injectable()
export class BidirectionalSyncService implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger(BidirectionalSyncService.name);
  private enabled = false;
  private started = false;
  /** True while this process holds the lease and runs the workers. */
  private working = false;
  private starting?: Promise<void>;
  private startup?: Promise<void>;
  private captureCaughtUp: Promise<void> = Promise.resolve();
  private listenerWaitsForCapture = false;
  private readonly unsubscribe: (() => void)[] = [];

  constructor(
    @InjectSyncConfig() private readonly config: ResolvedSyncConfig,
    private readonly origin: OriginTrackerService,
    private readonly metadata: SyncMetadataRepository,
    private readonly streamCapture: LocalChangeCaptureService,
    private readonly drainer: OutboxDrainerService,
    private readonly listener: ListenerService,
    private readonly outbox: OutboxRepository,
    private readonly rebaseline: RebaselineService,
    private readonly monitor: MonitorService,
    private readonly events: EventEmitter2,
    private readonly lease: LeaseService,
    private readonly markerCapture: DirtyMarkerCaptureService,
    private readonly captureMode: CaptureModeService,
    private readonly rescan: LocalRescanService,
    private readonly gapDeletes: GapDeletesService,
    @Optional() private readonly nats?: NatsConnectionService,
    @Optional() private readonly fleetChanges?: FleetChangeConsumer,
  ) {}

  /** The health check's alert thresholds (option `healthThresholds`; read-only). */
  get thresholds(): Readonly<HealthThresholds> {
    return this.config.healthThresholds;
  }

  /** The change stream, or the plugin's dirty markers on a standalone server (chosen at start). */
  private get capture(): LocalCapture {
    return this.captureMode.active;
  }

  async onApplicationBootstrap(): Promise<void> {
    if (this.config.autoStart) await this.start();
  }

  async beforeApplicationShutdown(): Promise<void> {
    await this.stop();
  }

  /**
   * Competes for the lease of the local database; the holder runs capture and
   * drainer (always) and the Atlas listener (when enabled), the others stand by.
   */
  async start(): Promise<void> {
    this.startup ??= this.startOnce();
    return this.startup;
  }

  private async startOnce(): Promise<void> {
    this.started = true;
    await this.origin.initialize();
    // Every process, standbys too: the plugin records writes only in plugin mode.
    await this.captureMode.resolve();
    if (!this.started) return; // stopped meanwhile
    this.unsubscribe.push(
      this.lease.onAcquired(() => this.startWorkers()),
      this.lease.onLost(({ reason }) => this.stopWorkers(`lease lost: ${reason}`)),
    );
    const role = await this.lease.start();
    if (role === 'active')
      await this.startWorkers(); // at once, not when the handler gets its turn
    else {
      this.logger.log('Standing by: another process holds the lease of this local database');
    }
  }

  /** Stops everything: running batches finish, tokens and clock are saved, the lease is released. */
  async stop(): Promise<void> {
    if (!this.startup) return;
    this.started = false; // from here on, nothing starts workers again
    await this.startup.catch(() => undefined);
    this.startup = undefined;
    for (const off of this.unsubscribe.splice(0)) off();
    await this.stopWorkers('stopping');
    await this.lease.stop();
    await this.origin.persistClock().catch(() => undefined);
  }

  /** Starts the workers once; concurrent callers (start() and the lease handler) share the start. */
  private startWorkers(): Promise<void> {
    if (!this.started) return Promise.resolve();
    this.starting ??= this.runWorkers();
    return this.starting;
  }

  private async runWorkers(): Promise<void> {
    this.working = true;
    const stored = await this.metadata.getEnabled(this.origin.instanceId);
    this.enabled = stored ?? this.config.enabled;
    // Writes the plugin recorded before the change stream took over are captured first, never beside it.
    this.outbox.resetSequence(); // another process may have queued entries since this one last did
    if (this.capture === this.streamCapture) await this.markerCapture.captureLeftovers();
    this.capture.start();
    this.drainer.start();
    // Pull only once the capture has recorded every local write made before
    // this start (offline edits): otherwise an older remote state could be
    // applied over an edit the engine has not seen yet.
    this.listenerWaitsForCapture = true;
    this.captureCaughtUp = this.capture.caughtUp().finally(() => {
      this.listenerWaitsForCapture = false;
    });
    void this.captureCaughtUp.then(() => this.startListenerIfWanted());
    // Usually one poll; a long offline backlog is captured in the background
    // (start() does not wait for it, the listener follows once it is done).
    await Promise.race([
      this.captureCaughtUp,
      new Promise((resolve) => setTimeout(resolve, START_WAIT_FOR_CAPTURE_MS).unref()),
    ]);
    this.logger.log(
      `Sync started: Local → Atlas on, Atlas → Local ${this.enabled ? (this.listenerWaitsForCapture ? 'on once local capture has caught up' : 'on') : 'off'}`,
    );
  }

  private startListenerIfWanted(): void {
    if (this.working && this.enabled) this.listener.start();
  }

  private async stopWorkers(reason: string): Promise<void> {
    await this.starting?.catch(() => undefined);
    this.starting = undefined;
    if (!this.working) return;
    this.working = false;
    await Promise.all([this.listener.stop(), this.capture.stop()]);
    await this.drainer.stop();
    await this.drainer.drain().catch(() => undefined);
    this.logger.log(`Sync stopped (${reason})`);
  }

  /** Pushes every pending local change now (also done on shutdown). */
  flush(): Promise<number> {
    return this.drainer.drain();
  }

  isEnabled(): boolean {
    return this.enabled;
  }

  /** Turns Atlas → Local on or off at once; the choice survives restarts. */
  async setEnabled(enabled: boolean): Promise<void> {
    await this.origin.initialize();
    await this.metadata.setEnabled(this.origin.instanceId, enabled);
    if (enabled === this.enabled) return;
    this.enabled = enabled;
    if (this.working) {
      if (enabled) void this.captureCaughtUp.then(() => this.startListenerIfWanted());
      else await this.listener.stop();
    }
    this.logger.log(`Bidirectional sync ${enabled ? 'enabled' : 'disabled'}`);
    this.events.emit(
      SyncEvents.stateChanged,
      new SyncStateChangedEvent('sync', enabled ? 'enabled' : 'disabled'),
    );
  }

  /** The specification's `checkBidirectionalHealth()`. */
  async checkBidirectionalHealth(): Promise<BidirectionalHealth> {
    const listener = this.listener.status;
    const capture = this.capture.status;
    const drainer = this.drainer.status;
    const outbox = await this.outbox.summary().catch(() => undefined);
    const queueSize = outbox?.depth ?? -1;
    const oldest = outbox?.oldestEnqueuedAt;
    const now = Date.now();
    const lag = {
      localToAtlas: oldest
        ? now - oldest.getTime()
        : (this.monitor.lastLag('localToAtlas') ?? null),
      atlasToLocal: this.monitor.lastLag('atlasToLocal') ?? null,
    };
    const reasons: string[] = [];
    let health: HealthState = 'healthy';
    const lease = this.lease.status();
    const worsen = (to: HealthState, reason: string): void => {
      reasons.push(reason);
      if (to === 'unhealthy' || health === 'healthy') health = to;
    };
    if (lease.role === 'standby') {
      // Another process does the work; this one only has to be able to take over.
      if (lease.lastError) worsen('degraded', `lease: ${lease.lastError}`);
    } else if (this.enabled) {
      if (!listener.running && !this.listenerWaitsForCapture)
        worsen('unhealthy', 'Atlas listener is not running');
      else if (!listener.running)
        worsen('degraded', 'Atlas listener waits for the local capture to catch up');
      else if (listener.consecutiveFailures >= this.config.maxReconnectAttempts)
        worsen(
          'unhealthy',
          `Atlas change stream failed ${listener.consecutiveFailures} times in a row: ${listener.lastError}`,
        );
      if (
        listener.disconnectedSince &&
        now - listener.disconnectedSince.getTime() > this.thresholds.maxDisconnectedMs
      )
        worsen(
          'unhealthy',
          `Atlas change stream disconnected for more than ${this.thresholds.maxDisconnectedMs} ms`,
        );
      else if (listener.running && !listener.connected)
        worsen(
          'degraded',
          `Atlas change stream not connected${listener.lastError ? `: ${listener.lastError}` : ''}`,
        );
    }
    if (lease.role === 'active' && !capture.running) {
      worsen('unhealthy', 'local capture is not running');
    } else if (lease.role === 'active' && !capture.connected && capture.consecutiveFailures > 0) {
      worsen('degraded', `local capture not connected: ${capture.lastError}`);
    }
    if (drainer.consecutiveFailures >= this.config.maxReconnectAttempts)
      worsen(
        'unhealthy',
        `pushing to Atlas failed ${drainer.consecutiveFailures} times: ${drainer.lastError}`,
      );
    else if (drainer.consecutiveFailures > 0)
      worsen('degraded', `pushing to Atlas failing: ${drainer.lastError}`);
    for (const [direction, ms] of Object.entries(lag)) {
      if (ms !== null && ms > this.thresholds.maxLagMs)
        worsen('degraded', `${direction} lag ${ms} ms exceeds ${this.thresholds.maxLagMs} ms`);
    }
    const conflictsLastHour = this.monitor.conflictsInLastHour();
    if (conflictsLastHour > this.thresholds.maxConflictsPerHour)
      worsen(
        'degraded',
        `${conflictsLastHour} conflicts in the last hour (threshold ${this.thresholds.maxConflictsPerHour})`,
      );
    const transport = await this.transportStatus();
    const nats = transport.nats;
    if (nats && nats.state !== 'connected' && nats.state !== 'idle')
      worsen('degraded', `NATS ${nats.state}${nats.lastError ? `: ${nats.lastError}` : ''}`);
    const rebaseline = this.rebaseline.progress;
    if (rebaseline.state === 'running')
      worsen('degraded', `re-baseline in progress (${rebaseline.compared} documents compared)`);
    const localRescan = { ...this.rescan.progress, gapDeletes: this.gapDeletes.progress };
    if (localRescan.state === 'running')
      worsen('degraded', `local re-scan in progress (${localRescan.scanned} documents scanned)`);
    if (localRescan.gapDeletes.state === 'watching')
      worsen('degraded', 'checking for deletes made during the local history gap');
    return {
      enabled: this.enabled,
      instanceId: this.origin.instanceId,
      role: lease.role,
      lease: {
        holderId: lease.holderId,
        currentHolder: lease.currentHolder ?? null,
        term: lease.term ?? null,
      },
      atlasListener: {
        running: listener.running,
        connected: listener.connected,
        lastChange: listener.lastChange?.toISOString() ?? null,
        reconnectAttempts: listener.consecutiveFailures,
        disconnectedSince: listener.disconnectedSince?.toISOString() ?? null,
        lastError: listener.lastError ?? null,
        resumeTokenAgeMs: listener.lastTokenSavedAt
          ? now - listener.lastTokenSavedAt.getTime()
          : null,
      },
      localCapture: {
        mode: this.captureMode.mode ?? null,
        running: capture.running,
        connected: capture.connected,
        lastError: capture.lastError ?? null,
      },
      syncWorker: {
        running: drainer.running,
        queueSize,
        oldestPendingAgeMs: oldest ? now - oldest.getTime() : null,
        lastError: drainer.lastError ?? null,
      },
      rebaseline,
      localRescan,
      lagMs: lag,
      conflictsLastHour,
      transport,
      health,
      reasons,
    };
  }

  /** The transport: `direct`, or `nats` with the connection and the consumer's position and lag. */
  async transportStatus(): Promise<SyncTransportStatus> {
    const nats = this.nats?.status();
    if (!nats) return { mode: 'direct', nats: null, changesSequence: null, changesPending: null };
    const pending = await this.fleetChanges?.refreshPending();
    return {
      mode: 'nats',
      nats: {
        state: nats.state,
        server: nats.server ?? null,
        reconnects: nats.reconnects,
        lastError: nats.lastError ?? null,
      },
      changesSequence: this.fleetChanges?.lastSequence ?? null,
      changesPending: pending ?? null,
    };
  }
}
