import { ChangeProcessorService } from '../../src/lib/processor/change-processor.service';
import { RebaselineService } from '../../src/lib/initial-sync/rebaseline.service';
import { SyncCluster } from '../support/sync-cluster';

/** Issue 5: a re-baseline cut short continues where it was, with the position it recorded first. */
describe('re-baseline checkpoints', () => {
  const cluster = new SyncCluster();
  beforeAll(() => cluster.start(1), 120_000);
  afterAll(() => cluster.stop());

  it('continues after a failure from the last page done, and reports progress', async () => {
    const [device] = cluster.devices;
    await device.sync.stop();
    const docs = Array.from({ length: 1200 }, (_, i) => ({
      _id: i < 1100 ? i : `s${i}`, // two _id type brackets
      n: i,
      _sync: { v: `001700000000000-${String(i).padStart(6, '0')}-other`, o: 'other' },
    }));
    await cluster.atlas.collection('parts').insertMany(docs as never[]);

    const processor = device.get(ChangeProcessorService);
    const apply = processor.applyChanges.bind(processor);
    let calls = 0;
    const spy = jest.spyOn(processor, 'applyChanges').mockImplementation(async (changes) => {
      if (++calls === 2) throw new Error('simulated crash on the second page');
      return apply(changes);
    });
    const rebaseline = device.get(RebaselineService);
    await expect(rebaseline.rebaseline('test: first attempt')).rejects.toThrow(/simulated crash/);
    expect(rebaseline.progress).toMatchObject({ state: 'failed', compared: 500 });
    expect(await device.db.collection('parts').countDocuments()).toBe(500);

    calls = 0;
    spy.mockImplementation(async (changes) => {
      calls++;
      return apply(changes);
    });
    await rebaseline.rebaseline('test: second attempt');
    spy.mockRestore();
    const progress = rebaseline.progress;
    expect(progress).toMatchObject({ state: 'done', resumed: true, remaining: 0 });
    expect(progress.reason).toMatch(/first attempt.*resumed.*second attempt/);
    // Atlas's 1200 documents compared once each, then the 1200 local copies (push side).
    expect(progress.compared).toBe(2400);
    // Resumed after the first page: numbers 500-999 and 1000-1099, then the string bracket
    // (a restart from scratch would apply 4 pages).
    expect(calls).toBe(3);
    expect(await device.db.collection('parts').countDocuments()).toBe(1200);
    expect(await device.db.collection('parts').countDocuments({ _id: { $type: 'string' } })).toBe(
      100,
    );
    await device.sync.start();
  });
});
