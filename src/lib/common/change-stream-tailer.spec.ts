import { isHistoryLostError } from './change-stream-tailer';
import { backoffDelay } from './worker-loop';

describe('reconnect backoff', () => {
  const policy = { initialMs: 100, maxMs: 1000, maxAttempts: 5 };
  it('doubles per attempt with jitter and stays under the cap', () => {
    expect(backoffDelay(1, policy, () => 1)).toBe(100);
    expect(backoffDelay(3, policy, () => 1)).toBe(400);
    expect(backoffDelay(3, policy, () => 0)).toBe(200);
    expect(backoffDelay(20, policy, () => 1)).toBe(1000);
  });
  it('recognises a lost resume point by code, not by label', () => {
    expect(isHistoryLostError({ code: 286 })).toBe(true);
    expect(isHistoryLostError({ code: 260 })).toBe(true);
    expect(isHistoryLostError({ code: 6 })).toBe(false);
  });
});
