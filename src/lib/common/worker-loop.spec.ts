import { UNTIL_WOKEN, WorkerLoop } from './worker-loop';

const tick = (ms = 5) => new Promise((r) => setTimeout(r, ms));

describe('WorkerLoop', () => {
  it('waits between turns until woken, and a wake during a turn runs one more turn', async () => {
    let turns = 0;
    let release: () => void = () => undefined;
    const loop = new WorkerLoop({
      turn: async () => {
        turns++;
        if (turns === 2) await new Promise<void>((r) => (release = r));
        return UNTIL_WOKEN;
      },
      retry: { initialMs: 10, maxMs: 10 },
    });
    loop.start();
    await tick();
    expect(turns).toBe(1); // asleep until woken
    loop.wake();
    await tick();
    expect(turns).toBe(2); // the second turn is in progress
    loop.wake(); // woken during it
    release();
    await tick();
    expect(turns).toBe(3);
    await loop.stop();
    expect(loop.running).toBe(false);
  });

  it('backs off after failures, counts them, and forgets them after a success', async () => {
    const outcomes = ['fail', 'fail', 'ok'];
    const attempts: number[] = [];
    const loop = new WorkerLoop({
      turn: async () => {
        if (outcomes.shift() === 'fail') throw new Error('down');
        return UNTIL_WOKEN;
      },
      retry: { initialMs: 5, maxMs: 5 },
      onFailure: (_err, attempt) => attempts.push(attempt),
    });
    loop.start();
    await tick(60);
    expect(attempts).toEqual([1, 2]);
    expect(loop.consecutiveFailures).toBe(0);
    await loop.stop();
  });

  it('a recovered failure starts the next turn at once and is not counted', async () => {
    let turns = 0;
    const loop = new WorkerLoop({
      turn: async () => {
        if (++turns === 1) throw new Error('history lost');
        return UNTIL_WOKEN;
      },
      retry: { initialMs: 60_000, maxMs: 60_000 },
      recover: async (err) => (err as Error).message === 'history lost',
    });
    loop.start();
    await tick(20);
    expect(turns).toBe(2);
    expect(loop.consecutiveFailures).toBe(0);
    await loop.stop();
  });

  it('nextTurn resolves after a turn that started after the call; stop ends a long wait', async () => {
    let turns = 0;
    const loop = new WorkerLoop({
      turn: async () => {
        turns++;
        return 60_000;
      },
      retry: { initialMs: 10, maxMs: 10 },
    });
    loop.start();
    await tick();
    await loop.nextTurn();
    expect(turns).toBe(2);
    const started = Date.now();
    await loop.stop();
    expect(Date.now() - started).toBeLessThan(1000);
    await expect(loop.nextTurn()).resolves.toBeUndefined(); // stopped: nothing to wait for
  });
});
