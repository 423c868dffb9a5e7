import { Logger } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import type { Db, MongoClient } from 'mongodb';
import { SyncConfigurationError } from '../../src/lib/errors/sync.errors';
import { LeaseRepository } from '../../src/lib/lease/lease.repository';
import { LeaseOptions, LeaseService, SYNC_LEASE_OPTIONS } from '../../src/lib/lease/lease.service';
import { SyncStoresService } from '../../src/lib/metadata/sync-stores.service';
import { uniqueDbName, useMongoServers, waitFor } from '../support/mongo-harness';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('LeaseService (one active worker per local database)', () => {
  const harness = useMongoServers(1, { name: 'lease' });
  let client: MongoClient;
  let db: Db;
  const started: LeaseService[] = [];

  beforeAll(async () => {
    client = await harness.client(harness.servers[0]);
    if (!process.env.SYNC_TEST_LOGS) Logger.overrideLogger(['error']);
  });

  beforeEach(() => {
    db = client.db(uniqueDbName('lease'));
  });

  afterEach(async () => {
    await Promise.all(started.splice(0).map((l) => l.stop({ release: false })));
    await db.dropDatabase();
  });

  /** A lease contender on the shared test database, with its event log. */
  function contender(name: string, options: LeaseOptions = {}) {
    const lease = new LeaseService(LeaseRepository.forDb(db), {
      holderId: name,
      leaseTtl: 1500,
      renewInterval: 300,
      ...options,
    });
    const events: string[] = [];
    lease.onAcquired((e) => void events.push(`acquired:${e.term}`));
    lease.onLost((e) => void events.push(`lost:${e.reason}`));
    started.push(lease);
    return { lease, events };
  }

  const leaseDoc = () => db.collection('_sync_metadata').findOne({ _id: 'lease' as never });
  const actives = (leases: LeaseService[]) => leases.filter((l) => l.role === 'active');

  it('lets exactly one of two processes be active, and keeps it active while it renews', async () => {
    const a = contender('proc-a');
    const b = contender('proc-b');
    expect(a.lease.role).toBe('standby');
    const roles = await Promise.all([a.lease.start(), b.lease.start()]);
    expect(roles.sort()).toEqual(['active', 'standby']);
    const [winner] = actives([a.lease, b.lease]);
    const loser = winner === a.lease ? b : a;

    // Several renewal periods, well past the TTL: the same holder stays active.
    const deadline = Date.now() + 2500;
    while (Date.now() < deadline) {
      expect(actives([a.lease, b.lease])).toEqual([winner]);
      await sleep(20);
    }
    expect(await leaseDoc()).toMatchObject({ holder: winner.holderId, term: 1 });
    expect(loser.events).toEqual([]);
    expect(winner.status()).toMatchObject({ role: 'active', currentHolder: winner.holderId });
    expect(loser.lease.status()).toMatchObject({
      role: 'standby',
      currentHolder: winner.holderId,
    });
  });

  it('hands over within leaseTtl when the active process stops renewing (killed)', async () => {
    const a = contender('proc-a');
    const b = contender('proc-b');
    expect(await a.lease.start()).toBe('active');
    expect(await b.lease.start()).toBe('standby');
    await sleep(400); // a renews at least once

    // A kill: no more renewals, no release.
    await a.lease.stop({ release: false });
    const stoppedAt = Date.now();
    await waitFor(() => b.lease.role === 'active', {
      timeoutMs: 5000,
      intervalMs: 5,
      message: 'b active',
    });
    const takeoverMs = Date.now() - stoppedAt;
    console.log(`lease takeover after a kill: ${takeoverMs} ms (leaseTtl 1500, renew 300)`);
    // Not before the lease expired (last renewal <= 300 ms before the stop) ...
    expect(takeoverMs).toBeGreaterThanOrEqual(1500 - 300 - 100);
    // ... and within leaseTtl of it (plus scheduling slack).
    expect(takeoverMs).toBeLessThan(1500 + 400);
    expect(await leaseDoc()).toMatchObject({ holder: 'proc-b', term: 2 });
    await b.lease.settled();
    expect(b.events).toEqual(['acquired:2']);
    expect(a.events).toEqual(['acquired:1', 'lost:stopped']);
  });

  it('hands over at once on a graceful stop (release), after the onLost handlers ran', async () => {
    const a = contender('proc-a', { leaseTtl: 10_000, renewInterval: 2000 });
    const b = contender('proc-b', { leaseTtl: 10_000, renewInterval: 2000 });
    expect(await a.lease.start()).toBe('active');
    expect(await b.lease.start()).toBe('standby');
    await sleep(200); // b's watch is open

    let handlerDone = false;
    a.lease.onLost(async () => {
      await sleep(100); // e.g. stopping the listener and drainer
      handlerDone = true;
    });
    const stopping = Date.now();
    await a.lease.stop();
    expect(handlerDone).toBe(true);
    const releasedAt = Date.now();
    await waitFor(() => b.lease.role === 'active', {
      timeoutMs: 5000,
      intervalMs: 5,
      message: 'b active',
    });
    const takeoverMs = Date.now() - releasedAt;
    console.log(
      `lease takeover after a release: ${takeoverMs} ms (stop took ${releasedAt - stopping} ms; leaseTtl 10000)`,
    );
    expect(takeoverMs).toBeLessThan(1000);
    expect(await leaseDoc()).toMatchObject({ holder: 'proc-b', term: 2 });
  });

  it('never has two active processes among 5 contenders racing through kills and releases', async () => {
    const all = ['p1', 'p2', 'p3', 'p4', 'p5'].map((n) =>
      contender(n, { leaseTtl: 600, renewInterval: 100 }),
    );
    const leases = all.map((c) => c.lease);
    await Promise.all(leases.map((l) => l.start()));

    let samples = 0;
    let maxActive = 0;
    let withoutActive = 0;
    const holders = new Set<string>();
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const active = actives(leases);
        samples++;
        maxActive = Math.max(maxActive, active.length);
        if (!active.length) withoutActive++;
        for (const l of active) holders.add(l.holderId);
        await sleep(2);
      }
    })();

    const stopActive = async (release: boolean) => {
      const active = await waitFor(() => actives(leases)[0], {
        timeoutMs: 5000,
        intervalMs: 5,
        message: 'an active contender',
      });
      await active.stop({ release });
    };
    await sleep(800);
    await stopActive(false); // killed
    await sleep(1500);
    await stopActive(true); // graceful
    await sleep(1500);
    await waitFor(() => actives(leases).length === 1, { timeoutMs: 5000, message: 'one active' });
    sampling = false;
    await sampler;

    console.log(
      `lease race: ${samples} samples, max active ${maxActive}, ${withoutActive} without an active (handover gaps), holders ${[...holders].join(', ')}`,
    );
    expect(maxActive).toBe(1);
    expect(holders.size).toBe(3);
    const doc = await leaseDoc();
    expect(doc?.term).toBe(3);
    expect(actives(leases)[0].holderId).toBe(doc?.holder);
    // Every contender's events alternate acquired / lost.
    for (const { events } of all) {
      events.forEach((e, i) => expect(e.startsWith(i % 2 ? 'lost' : 'acquired')).toBe(true));
    }
  });

  it('works as a Nest provider and releases the lease on application shutdown', async () => {
    const moduleRef = await Test.createTestingModule({
      providers: [
        LeaseRepository,
        LeaseService,
        { provide: SyncStoresService, useValue: { local: db } },
        {
          provide: SYNC_LEASE_OPTIONS,
          useValue: { leaseTtl: 5000, renewInterval: 1000, holderId: 'nest' },
        },
      ],
    }).compile();
    const lease = moduleRef.get(LeaseService);
    expect(lease.leaseTtl).toBe(5000);
    expect(await lease.start()).toBe('active');
    expect(await leaseDoc()).toMatchObject({ holder: 'nest' });
    await moduleRef.close();
    expect(lease.role).toBe('standby');
    expect(await leaseDoc()).toMatchObject({ holder: null });

    // Defaults and a generated holder id.
    const standalone = new LeaseService(LeaseRepository.forDb(db));
    expect(standalone).toMatchObject({ leaseTtl: 15_000, renewInterval: 5000, safetyMargin: 1000 });
    expect(standalone.holderId).toMatch(new RegExp(`-${process.pid}-[0-9a-f]{8}$`));
    expect(() => new LeaseService(LeaseRepository.forDb(db), { renewInterval: 20_000 })).toThrow(
      SyncConfigurationError,
    );
  });
});
