import { OutboxRepository } from './outbox.repository';

/** A collection whose two summary queries are counted and can be made slow or failing. */
function fakeOutbox(options: { costMs?: number; fail?: boolean } = {}) {
  const calls = { count: 0, oldest: 0 };
  // The two queries run side by side; the count "takes" costMs of clock time.
  const later = <T>(value: T, costMs = 0): Promise<T> =>
    new Promise((resolve, reject) => {
      jest.advanceTimersByTime(costMs);
      if (options.fail) reject(new Error('server unreachable'));
      else resolve(value);
    });
  const collection = {
    estimatedDocumentCount: () => {
      calls.count++;
      return later(7, options.costMs);
    },
    find: () => ({
      sort: () => ({
        limit: () => ({
          next: () => {
            calls.oldest++;
            return later({ enqueuedAt: new Date('2026-01-01T00:00:00Z') });
          },
        }),
      }),
    }),
  };
  const repository = new OutboxRepository({
    local: { collection: () => collection },
  } as never);
  return { repository, calls, options };
}

describe('OutboxRepository.summary', () => {
  beforeEach(() => jest.useFakeTimers({ now: new Date('2026-11-27T00:00:00Z') }));
  afterEach(() => jest.useRealTimers());

  it('answers depth and oldest entry, shared by concurrent callers', async () => {
    const { repository, calls } = fakeOutbox();
    const [a, b] = await Promise.all([repository.summary(), repository.summary()]);
    expect(a).toBe(b);
    expect(a).toMatchObject({ depth: 7, oldestEnqueuedAt: new Date('2026-01-01T00:00:00Z') });
    expect(calls).toEqual({ count: 1, oldest: 1 });
  });

  it('re-measures after 1 s when measuring is cheap', async () => {
    const { repository, calls } = fakeOutbox();
    await repository.summary();
    jest.advanceTimersByTime(900);
    await repository.summary();
    expect(calls.count).toBe(1);
    jest.advanceTimersByTime(200);
    await repository.summary();
    expect(calls.count).toBe(2);
  });

  it('waits ten times the cost of an expensive measurement before the next one', async () => {
    const { repository, calls } = fakeOutbox({ costMs: 400 }); // 4 s between measurements
    await repository.summary();
    jest.advanceTimersByTime(3500);
    await repository.summary();
    expect(calls.count).toBe(1);
    jest.advanceTimersByTime(600);
    await repository.summary();
    expect(calls.count).toBe(2);
  });

  it('does not keep a failed measurement: the next call tries again', async () => {
    const { repository, calls, options } = fakeOutbox({ fail: true });
    await expect(repository.summary()).rejects.toThrow('server unreachable');
    options.fail = false;
    await expect(repository.summary()).resolves.toMatchObject({ depth: 7 });
    expect(calls.count).toBe(2);
  });
});
