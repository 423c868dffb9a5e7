import { EventEmitter2 } from '@nestjs/event-emitter';
import { SyncErrorEvent, SyncEvents } from '../../src/lib/events/sync-events';
import { RebaselineService } from '../../src/lib/initial-sync/rebaseline.service';
import { waitFor } from '../support/mongo-harness';
import { SyncCluster } from '../support/sync-cluster';

/**
 * Dropping or renaming a synced collection is not replayed on the other side
 * (README "Dropped and renamed collections"): the engine warns, keeps
 * running, and the next re-baseline copies the documents back.
 */
describe('dropped and renamed collections', () => {
  const cluster = new SyncCluster();
  const warnings: SyncErrorEvent[] = [];
  beforeAll(async () => {
    await cluster.start(1);
    cluster.devices[0]
      .get(EventEmitter2)
      .on(SyncEvents.error, (e: SyncErrorEvent) => warnings.push(e));
  }, 120_000);
  afterAll(() => cluster.stop());

  const count = (db: import('mongodb').Db, name: string) => db.collection(name).countDocuments();

  it('warns about a drop on Atlas, keeps the local copies, and a re-baseline restores Atlas', async () => {
    const [device] = cluster.devices;
    await device.db.collection('menus').insertMany([{ _id: 1 as never }, { _id: 2 as never }]);
    await waitFor(async () => (await count(cluster.atlas, 'menus')) === 2, { message: 'pushed' });
    await cluster.atlas.collection('menus').drop();
    await waitFor(
      () => warnings.some((w) => /Atlas collection "menus" was dropped/.test(w.message)),
      {
        message: 'drop warning',
      },
    );
    expect(await count(device.db, 'menus')).toBe(2);
    await device.sync.flush();
    await device.get(RebaselineService).rebaseline('test: after a drop');
    await device.sync.flush();
    await waitFor(async () => (await count(cluster.atlas, 'menus')) === 2, { message: 'restored' });
  });

  it('warns about a local drop, and a re-baseline brings the documents back from Atlas', async () => {
    const [device] = cluster.devices;
    await device.db.collection('drinks').insertMany([{ _id: 1 as never }, { _id: 2 as never }]);
    await waitFor(async () => (await count(cluster.atlas, 'drinks')) === 2, { message: 'pushed' });
    await device.db.collection('drinks').drop();
    await waitFor(
      () => warnings.some((w) => /Local collection "drinks" was dropped/.test(w.message)),
      {
        message: 'local drop warning',
      },
    );
    expect(await count(cluster.atlas, 'drinks')).toBe(2); // not propagated
    await device.get(RebaselineService).rebaseline('test: after a local drop');
    expect(await count(device.db, 'drinks')).toBe(2);
  });

  it('names the new collection when Atlas renames one', async () => {
    const [device] = cluster.devices;
    await device.db.collection('sides').insertOne({ _id: 1 as never });
    await waitFor(async () => (await count(cluster.atlas, 'sides')) === 1, { message: 'pushed' });
    await cluster.atlas.collection('sides').rename('sides_old');
    await waitFor(
      () => warnings.some((w) => /"sides" was renamed to "sides_old"/.test(w.message)),
      { message: 'rename warning' },
    );
    expect(await count(device.db, 'sides')).toBe(1);
  });
});
