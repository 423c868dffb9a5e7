import { CachedReading } from './cached-reading';

describe('CachedReading', () => {
  it('reuses a reading within reuseMs and shares one query between concurrent callers', async () => {
    let queries = 0;
    const reading = new CachedReading(async () => ++queries, { reuseMs: 60_000 });
    const [a, b] = await Promise.all([reading.read(), reading.read()]);
    expect([a, b, queries]).toEqual([1, 1, 1]);
    expect(await reading.read()).toBe(1);
    expect(queries).toBe(1);
  });

  it('keeps the last value when the query fails or is not asked for', async () => {
    let fail = false;
    let value = 0;
    const reading = new CachedReading(
      async () => {
        if (fail) throw new Error('no consumer');
        return ++value;
      },
      { reuseMs: 0 },
    );
    expect(await reading.read()).toBe(1);
    fail = true;
    expect(await reading.read()).toBe(1);
    fail = false;
    expect(await reading.read(false)).toBe(1);
    expect(await reading.read()).toBe(2);
    reading.set(7);
    expect(reading.last).toBe(7);
  });

  it('answers with the last value after timeoutMs while a query hangs', async () => {
    const reading = new CachedReading<number>(() => new Promise(() => undefined), {
      timeoutMs: 20,
    });
    reading.set(3);
    const started = Date.now();
    expect(await reading.read()).toBe(3);
    expect(Date.now() - started).toBeLessThan(1000);
  });
});
