import {
  compareVersions,
  formatVersion,
  HybridLogicalClock,
  parseVersion,
  versionTime,
} from './hybrid-logical-clock';

describe('HybridLogicalClock', () => {
  it('follows the wall clock and counts within one millisecond', () => {
    let now = 1000;
    const clock = new HybridLogicalClock('dev-a', () => now);
    expect(clock.tick()).toBe(formatVersion(1000, 0, 'dev-a'));
    expect(clock.tick()).toBe(formatVersion(1000, 1, 'dev-a'));
    now = 1005;
    expect(clock.tick()).toBe(formatVersion(1005, 0, 'dev-a'));
  });

  it('never goes backwards when the wall clock does', () => {
    let now = 5000;
    const clock = new HybridLogicalClock('dev-a', () => now);
    const before = clock.tick();
    now = 1000;
    expect(compareVersions(clock.tick(), before)).toBe(1);
  });

  it('issues versions after any version it received, even from a clock far ahead', () => {
    const clock = new HybridLogicalClock('dev-slow', () => 1000);
    const ahead = formatVersion(1000 + 5 * 60_000, 7, 'dev-fast');
    expect(compareVersions(clock.tickAfter(ahead), ahead)).toBe(1);
    expect(clock.driftMs).toBe(5 * 60_000);
  });

  it('orders versions as strings sort, breaking ties by instance id', () => {
    const a = formatVersion(42, 3, 'dev-a');
    const b = formatVersion(42, 3, 'dev-b');
    expect(compareVersions(a, b)).toBe(-1);
    expect(compareVersions(undefined, a)).toBe(-1);
    expect(compareVersions(a, a)).toBe(0);
    expect(parseVersion(b)).toEqual({ ms: 42, counter: 3, node: 'dev-b' });
    expect(parseVersion('nonsense')).toBeUndefined();
    expect(versionTime(a)?.getTime()).toBe(42);
  });
});
