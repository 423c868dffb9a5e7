import { SyncDashboardHistory } from './sync-dashboard-history';

const counts = (localToAtlas: number, atlasToLocal: number) => ({ localToAtlas, atlasToLocal });

describe('SyncDashboardHistory', () => {
  it('turns running counts into changes per second and lags into per-interval percentiles', () => {
    const history = new SyncDashboardHistory();
    expect(history.sample(1000, counts(0, 0))).toBeUndefined(); // the baseline
    for (let i = 1; i <= 100; i++) history.add('localToAtlas', i);
    const point = history.sample(3000, counts(10, 4))!;
    expect(point.t).toBe(3000);
    expect(point.throughput).toEqual({ localToAtlas: 5, atlasToLocal: 2 });
    expect(point.lag.localToAtlas).toEqual({ p50: 50, p99: 99 });
    expect(point.lag.atlasToLocal).toEqual({ p50: null, p99: null });
    // The next interval starts empty.
    expect(history.sample(4000, counts(10, 4))!.lag.localToAtlas).toEqual({ p50: null, p99: null });
  });

  it('keeps at most `capacity` samples, the newest', () => {
    const history = new SyncDashboardHistory(5);
    for (let t = 0; t <= 20; t++) history.sample(t * 1000, counts(t, 0));
    expect(history.size).toBe(5);
    expect(history.since().map((s) => s.t)).toEqual([16000, 17000, 18000, 19000, 20000]);
    expect(history.since(18000).map((s) => s.t)).toEqual([19000, 20000]);
    expect(history.since(20000)).toEqual([]);
  });

  it('holds a bounded number of lags per interval however many changes arrive', () => {
    const history = new SyncDashboardHistory(10, () => 0.999999);
    history.sample(0, counts(0, 0));
    for (let i = 0; i < 100_000; i++) history.add('atlasToLocal', i < 1024 ? 5 : 1000);
    // The reservoir kept its first 1024 (a random draw near 1 replaces none of them).
    expect(history.sample(1000, counts(0, 100_000))!.lag.atlasToLocal).toEqual({ p50: 5, p99: 5 });
  });

  it('never reports negative throughput when counts restart', () => {
    const history = new SyncDashboardHistory();
    history.sample(0, counts(50, 50));
    expect(history.sample(1000, counts(0, 0))!.throughput).toEqual(counts(0, 0));
  });
});
