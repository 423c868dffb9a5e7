import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { performance } from 'node:perf_hooks';
import { Inject, Injectable, Logger, OnApplicationShutdown, Optional } from '@nestjs/common';
import type { ChangeStream } from 'mongodb';
import { SyncConfigurationError } from '../errors/sync.errors';
import { LeaseDocument, LeaseRepository } from './lease.repository';

/** Injection token of `LeaseOptions` (optional). */
export const SYNC_LEASE_OPTIONS = Symbol('SYNC_LEASE_OPTIONS');

/** Defaults of the options (the module passes `SYNC_LEASE_TTL` and `SYNC_LEASE_RENEW_INTERVAL`). */
const DEFAULT_LEASE_TTL_MS = 15_000;
const DEFAULT_RENEW_INTERVAL_MS = 5_000;
/** The safety margin is a tenth of the TTL, at most this (ms): enough for a slow renewal reply. */
const MAX_DEFAULT_SAFETY_MARGIN_MS = 1000;
const DEFAULT_SAFETY_MARGIN_TTL_FRACTION = 10;
/** Smallest accepted TTL and renew interval (ms): below them the lease only measures timer noise. */
const MIN_LEASE_TTL_MS = 100;
const MIN_RENEW_INTERVAL_MS = 10;
/** A standby retries this long (ms) after the holder's lease should expire, never sooner than that. */
const EXPIRY_RETRY_SLACK_MS = 10;
/** After a failed attempt or renewal, retry within this (ms); a holder still steps down at its deadline. */
const FAILED_ATTEMPT_RETRY_MS = 1000;

export interface LeaseOptions {
  /** How long a lease runs without renewal (ms, default 15000): a dead holder's successor takes over after it. */
  leaseTtl?: number;
  /** How often the holder renews (ms, default 5000; less than leaseTtl minus the safety margin). */
  renewInterval?: number;
  /**
   * How long before the lease's expiry the holder considers it lost when it
   * could not renew (ms, default leaseTtl / 10, at most 1000): time for the
   * `onLost` handlers to stop work before another process may start.
   */
  safetyMargin?: number;
  /** This process's holder id (default `<hostname>-<pid>-<random>`); unique per process. */
  holderId?: string;
  /** `_id` of the lease document in `_sync_metadata` (default `lease`). */
  leaseId?: string;
  /** Watch the lease document so a standby takes over at once after a release (default true). */
  watch?: boolean;
}

export type LeaseRole = 'active' | 'standby';

export interface LeaseAcquiredEvent {
  holderId: string;
  /** Incremented on every change of holder (a fencing token). */
  term: number;
  acquiredAt?: Date;
}

export interface LeaseLostEvent {
  holderId: string;
  term: number;
  reason: string;
}

export interface LeaseStatus {
  role: LeaseRole;
  holderId: string;
  leaseId: string;
  running: boolean;
  term?: number;
  /** Active: since when (this process's clock). */
  activeSince?: Date;
  /** The holder last seen in the lease document (this process when active). */
  currentHolder?: string | null;
  leaseTtl: number;
  renewInterval: number;
  lastError?: string;
}

type Listener<E> = (event: E) => void | Promise<void>;

/** A unique id for this process: host, pid and a random suffix. */
export function defaultHolderId(): string {
  return `${hostname()}-${process.pid}-${randomBytes(4).toString('hex')}`;
}

/**
 * One active worker per local database. The processes that share a local
 * database compete for a lease document in its `_sync_metadata`
 * (`{_id: 'lease', holder, expiresAt, acquiredAt, term}`); the one holding
 * it is `active` (runs the listener and the drainer), the others are
 * `standby`.
 *
 * - Acquire and renew are one atomic `findOneAndUpdate` that matches only a
 *   free, expired or own lease; expiry is set and compared with the server's
 *   clock (`$$NOW`), so a process with a skewed clock cannot steal it.
 * - The holder renews every `renewInterval`. It steps down (`onLost`) when a
 *   renewal finds the lease taken, or when `leaseTtl - safetyMargin` has
 *   passed since its last successful renewal was sent (measured on this
 *   process's monotonic clock, which never runs past the server's expiry),
 *   so two processes are never active at once.
 * - A standby retries when the lease should expire, and at once when the
 *   lease document changes holder (a change stream), so a graceful `stop()`
 *   (which releases) hands over immediately and a killed holder is replaced
 *   within `leaseTtl` of its last renewal.
 *
 * `onAcquired` / `onLost` handlers run in order, one at a time, never
 * blocking renewals. `stop()` runs the `onLost` handlers before it releases.
 *
 * Usable in Nest (inject; options under `SYNC_LEASE_OPTIONS`) or standalone:
 * `new LeaseService(LeaseRepository.forDb(db), { leaseTtl: 15000 })`.
 *
 * @internal (not exported from the package root: import its path)
 */
@Injectable()
export class LeaseService implements OnApplicationShutdown {
  private readonly logger = new Logger(LeaseService.name);
  readonly holderId: string;
  readonly leaseId: string;
  readonly leaseTtl: number;
  readonly renewInterval: number;
  readonly safetyMargin: number;
  private readonly useWatch: boolean;

  private running = false;
  private held = false;
  /** performance.now() after which a held lease counts as lost unless renewed. */
  private validUntil = 0;
  private term?: number;
  private activeSince?: Date;
  private currentHolder?: string | null;
  private lastError?: string;
  private timer?: NodeJS.Timeout;
  private deadlineTimer?: NodeJS.Timeout;
  private inFlight?: Promise<void>;
  private stream?: ChangeStream;
  private notifications: Promise<void> = Promise.resolve();
  private readonly acquiredListeners = new Set<Listener<LeaseAcquiredEvent>>();
  private readonly lostListeners = new Set<Listener<LeaseLostEvent>>();

  constructor(
    private readonly repository: LeaseRepository,
    @Optional() @Inject(SYNC_LEASE_OPTIONS) options: LeaseOptions = {},
  ) {
    this.leaseTtl = options.leaseTtl ?? DEFAULT_LEASE_TTL_MS;
    this.renewInterval = options.renewInterval ?? DEFAULT_RENEW_INTERVAL_MS;
    this.safetyMargin =
      options.safetyMargin ??
      Math.min(
        MAX_DEFAULT_SAFETY_MARGIN_MS,
        Math.floor(this.leaseTtl / DEFAULT_SAFETY_MARGIN_TTL_FRACTION),
      );
    this.holderId = options.holderId ?? defaultHolderId();
    this.leaseId = options.leaseId ?? 'lease';
    this.useWatch = options.watch ?? true;
    const problems: string[] = [];
    if (!Number.isInteger(this.leaseTtl) || this.leaseTtl < MIN_LEASE_TTL_MS)
      problems.push(`leaseTtl = ${this.leaseTtl}: must be an integer >= ${MIN_LEASE_TTL_MS} (ms)`);
    if (!(this.safetyMargin >= 0 && this.safetyMargin < this.leaseTtl))
      problems.push(`safetyMargin = ${this.safetyMargin}: must be >= 0 and < leaseTtl`);
    if (
      !Number.isInteger(this.renewInterval) ||
      this.renewInterval < MIN_RENEW_INTERVAL_MS ||
      this.renewInterval >= this.leaseTtl - this.safetyMargin
    )
      problems.push(
        `renewInterval = ${this.renewInterval}: must be an integer >= ${MIN_RENEW_INTERVAL_MS} and < leaseTtl - safetyMargin (${this.leaseTtl - this.safetyMargin})`,
      );
    if (problems.length) throw new SyncConfigurationError(problems);
  }

  /** `active` while this process holds a lease it may still rely on. */
  get role(): LeaseRole {
    return this.isActive ? 'active' : 'standby';
  }

  get isActive(): boolean {
    return this.held && performance.now() < this.validUntil;
  }

  status(): LeaseStatus {
    return {
      role: this.role,
      holderId: this.holderId,
      leaseId: this.leaseId,
      running: this.running,
      term: this.term,
      activeSince: this.isActive ? this.activeSince : undefined,
      currentHolder: this.isActive ? this.holderId : this.currentHolder,
      leaseTtl: this.leaseTtl,
      renewInterval: this.renewInterval,
      lastError: this.lastError,
    };
  }

  /** Calls `listener` whenever this process becomes active; returns an unsubscribe function. */
  onAcquired(listener: Listener<LeaseAcquiredEvent>): () => void {
    this.acquiredListeners.add(listener);
    return () => this.acquiredListeners.delete(listener);
  }

  /** Calls `listener` whenever this process stops being active; returns an unsubscribe function. */
  onLost(listener: Listener<LeaseLostEvent>): () => void {
    this.lostListeners.add(listener);
    return () => this.lostListeners.delete(listener);
  }

  /** Starts competing for the lease; resolves with the role after the first attempt. */
  async start(): Promise<LeaseRole> {
    if (!this.running) {
      this.running = true;
      await this.attempt();
    }
    return this.role;
  }

  /**
   * Stops competing. With `release` (the default) the `onLost` handlers run
   * first, then the lease is released so a standby takes over at once;
   * without it the lease is left to expire (as if the process had died).
   */
  async stop({ release = true }: { release?: boolean } = {}): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.clearTimers();
    this.closeWatch();
    await this.inFlight?.catch(() => undefined);
    if (this.held) this.stepDown('stopped');
    await this.notifications;
    if (release) {
      try {
        if (await this.repository.release(this.leaseId, this.holderId))
          this.logger.log(`Lease released by ${this.holderId}`);
      } catch (err) {
        this.logger.warn(`Could not release the lease: ${(err as Error)?.message ?? err}`);
      }
    }
  }

  async onApplicationShutdown(): Promise<void> {
    await this.stop();
  }

  /** Waits for the `onAcquired` / `onLost` handlers queued so far. */
  settled(): Promise<void> {
    return this.notifications;
  }

  private attempt(): Promise<void> {
    if (this.inFlight) return this.inFlight;
    this.clearTimer();
    this.inFlight = this.tryOnce().finally(() => {
      this.inFlight = undefined;
    });
    return this.inFlight;
  }

  private async tryOnce(): Promise<void> {
    const sentAt = performance.now();
    let next = this.renewInterval;
    try {
      const lease = await this.repository.tryAcquire(this.leaseId, this.holderId, this.leaseTtl);
      this.lastError = undefined;
      if (lease) {
        this.onHeld(lease, sentAt);
      } else {
        if (this.held) this.stepDown('the lease was taken over by another process');
        const { lease: current, remainingMs } = await this.repository.read(this.leaseId);
        this.currentHolder = current?.holder;
        // Retry just after the holder's lease would expire (and at least every renewInterval).
        next = Math.min(
          this.renewInterval,
          Math.max(EXPIRY_RETRY_SLACK_MS, remainingMs + EXPIRY_RETRY_SLACK_MS),
        );
        this.openWatch();
      }
    } catch (err) {
      this.lastError = (err as Error)?.message ?? String(err);
      this.logger.warn(`Lease ${this.held ? 'renewal' : 'attempt'} failed: ${this.lastError}`);
      // Retry soon; a holder that cannot renew in time steps down at its deadline.
      next = Math.min(this.renewInterval, FAILED_ATTEMPT_RETRY_MS);
    }
    if (this.running) this.schedule(next);
  }

  private onHeld(lease: LeaseDocument, sentAt: number): void {
    // The server set expiresAt = (its now, after we sent) + ttl: relying on
    // it until sentAt + ttl - margin never outlives it.
    this.validUntil = sentAt + this.leaseTtl - this.safetyMargin;
    this.term = lease.term;
    this.currentHolder = this.holderId;
    if (!this.running) return; // stopped meanwhile: stop() releases it
    if (!this.held) {
      this.held = true;
      this.activeSince = new Date();
      this.closeWatch();
      this.logger.log(`Lease acquired by ${this.holderId} (term ${lease.term}): active`);
      const event: LeaseAcquiredEvent = {
        holderId: this.holderId,
        term: lease.term,
        acquiredAt: lease.acquiredAt,
      };
      this.notify(this.acquiredListeners, event);
    }
    this.armDeadline();
  }

  private stepDown(reason: string): void {
    if (!this.held) return;
    this.held = false;
    this.activeSince = undefined;
    clearTimeout(this.deadlineTimer);
    this.logger.warn(`Lease lost by ${this.holderId}: ${reason}; standing by`);
    this.notify(this.lostListeners, {
      holderId: this.holderId,
      term: this.term ?? 0,
      reason,
    });
  }

  private armDeadline(): void {
    clearTimeout(this.deadlineTimer);
    this.deadlineTimer = setTimeout(
      () => {
        if (this.held && performance.now() >= this.validUntil) {
          this.stepDown(`not renewed within ${this.leaseTtl - this.safetyMargin} ms`);
          if (this.running) this.schedule(0);
        }
      },
      Math.max(0, this.validUntil - performance.now()),
    );
    this.deadlineTimer.unref();
  }

  private notify<E>(listeners: Set<Listener<E>>, event: E): void {
    const handlers = [...listeners];
    this.notifications = this.notifications.then(async () => {
      for (const handler of handlers) {
        try {
          await handler(event);
        } catch (err) {
          this.logger.error(`Lease handler failed: ${(err as Error)?.message ?? err}`);
        }
      }
    });
  }

  private schedule(ms: number): void {
    this.clearTimer();
    this.timer = setTimeout(() => void this.attempt(), ms);
    this.timer.unref();
  }

  private clearTimer(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private clearTimers(): void {
    this.clearTimer();
    clearTimeout(this.deadlineTimer);
  }

  /** Standby: wake up when the lease changes holder (released, taken). */
  private openWatch(): void {
    if (!this.useWatch || this.stream || !this.running || this.held) return;
    try {
      const stream = this.repository.watchHolderChanges(this.leaseId);
      this.stream = stream;
      stream.on('change', () => {
        if (this.running && !this.held) void this.attempt();
      });
      stream.on('error', (err) => {
        if (this.stream !== stream) return; // closed on purpose
        this.logger.debug(`Lease watch stopped (polling instead): ${err.message}`);
        this.closeWatch();
      });
    } catch (err) {
      this.logger.debug(`Lease watch unavailable: ${(err as Error)?.message ?? err}`);
    }
  }

  private closeWatch(): void {
    const stream = this.stream;
    this.stream = undefined;
    void stream?.close().catch(() => undefined);
  }
}
