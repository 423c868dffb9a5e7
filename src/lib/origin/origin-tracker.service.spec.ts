import { OriginTrackerService } from './origin-tracker.service';

describe('OriginTrackerService recent changes', () => {
  const tracker = (): OriginTrackerService =>
    new OriginTrackerService(
      { originTrackingCleanupInterval: 60_000 } as never,
      {} as never,
      {} as never,
      {} as never,
      () => Date.now(),
    );

  it('keeps at most the newest 10,000 changes, however many arrive within the cleanup interval', () => {
    const origin = tracker();
    for (let i = 0; i < 10_005; i++) origin.markLocalChange('menuitems', i);
    expect(origin.trackedChanges).toBe(10_000);
    expect(origin.isLocalChange('menuitems', 4)).toBe(false);
    expect(origin.isLocalChange('menuitems', 5)).toBe(true);
    expect(origin.isLocalChange('menuitems', 10_004)).toBe(true);
  });

  it('counts a document changed again as its newest change, not its first', () => {
    const origin = tracker();
    origin.markLocalChange('menuitems', 0);
    for (let i = 1; i < 10_000; i++) origin.markLocalChange('menuitems', i);
    origin.markAtlasChange('menuitems', 0); // moves document 0 to the newest end
    origin.markLocalChange('menuitems', 10_000); // evicts document 1, the oldest now
    expect(origin.trackedChanges).toBe(10_000);
    expect(origin.isLocalChange('menuitems', 1)).toBe(false);
    expect(origin.isLocalChange('menuitems', 2)).toBe(true);
    expect(origin.isLocalChange('menuitems', 0)).toBe(false); // tracked, as an Atlas change
  });
});
