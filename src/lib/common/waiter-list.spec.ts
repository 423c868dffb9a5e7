import { WaiterList } from './waiter-list';

describe('WaiterList', () => {
  it('resolves only the waiters whose condition holds, and all of them on releaseAll', async () => {
    const list = new WaiterList<{ afterPoll: number }>();
    const resolved: number[] = [];
    const waits = [1, 2, 3].map((afterPoll) =>
      list.wait({ afterPoll }).then(() => resolved.push(afterPoll)),
    );
    list.release((w) => w.afterPoll < 3); // poll 3 came back empty: waiters asking before it are done
    await Promise.resolve();
    await Promise.resolve();
    expect(resolved.sort()).toEqual([1, 2]);
    list.release((w) => w.afterPoll < 3); // a waiter is resolved once, not again
    list.releaseAll();
    await Promise.all(waits);
    expect(resolved.sort()).toEqual([1, 2, 3]);
  });
});
