import { MongoHarness, uniqueDbName, waitFor } from '../support/mongo-harness';
import { SyncDevice } from '../support/sync-device';

describe('several processes on one local database', () => {
  const harness = new MongoHarness();
  const processes: SyncDevice[] = [];
  afterAll(async () => {
    await Promise.all(processes.map((p) => p.close().catch(() => undefined)));
    await harness.stopAll();
  });

  it('runs exactly one active worker, and a standby takes over when it stops', async () => {
    const [atlasServer, local] = await harness.start(2, { name: 'lease' });
    const atlas = (await harness.client(atlasServer)).db(uniqueDbName('atlas'));
    const shared = {
      localUri: local.uri,
      localDbName: uniqueDbName('shared'),
      atlasUri: atlasServer.uri,
      atlasDbName: atlas.databaseName,
      options: { leaseTtl: 1500, leaseRenewInterval: 300 },
    };
    processes.push(await SyncDevice.start(shared), await SyncDevice.start(shared));
    const roles = async () =>
      (await Promise.all(processes.map((p) => p.sync.checkBidirectionalHealth()))).map(
        (h) => h.role,
      );
    await waitFor(async () => (await roles()).sort().join() === 'active,standby', {
      message: 'one active, one standby',
    });
    // The active one finishes its first re-baseline, then both are healthy.
    const healths = await waitFor(
      async () => {
        const all = await Promise.all(processes.map((p) => p.sync.checkBidirectionalHealth()));
        return all.every((h) => h.health === 'healthy') ? all : undefined;
      },
      { message: 'both healthy' },
    );
    expect(new Set(healths!.map((h) => h.instanceId)).size).toBe(1); // one device, one instance id

    const activeIndex = (await roles()).indexOf('active');
    const active = processes[activeIndex];
    const standby = processes[1 - activeIndex];
    await standby.db.collection('orders').insertOne({ _id: 'before' as any });
    await waitFor(
      async () => (await atlas.collection('orders').countDocuments({ _id: 'before' as any })) === 1,
      { message: 'pushed by the active process' },
    );

    await active.close();
    await waitFor(async () => (await standby.sync.checkBidirectionalHealth()).role === 'active', {
      message: 'standby takes over',
      timeoutMs: 5000,
    });
    await standby.db.collection('orders').insertOne({ _id: 'after' as any });
    await waitFor(
      async () => (await atlas.collection('orders').countDocuments({ _id: 'after' as any })) === 1,
      { message: 'pushed after takeover' },
    );
  });
});
