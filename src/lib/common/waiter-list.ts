/**
 * Callers waiting until a loop reaches some point: each waiter carries what
 * it waits for, and the loop releases those it has satisfied as it goes
 * (or all of them when it stops, so nobody waits on a stopped loop).
 */
export class WaiterList<W extends object> {
  private waiting: { waiter: W; resolve: () => void }[] = [];

  wait(waiter: W): Promise<void> {
    return new Promise((resolve) => this.waiting.push({ waiter, resolve }));
  }

  /** Resolves every waiter for which `done` is true. */
  release(done: (waiter: W) => boolean): void {
    if (!this.waiting.length) return;
    this.waiting = this.waiting.filter((w) => {
      if (!done(w.waiter)) return true;
      w.resolve();
      return false;
    });
  }

  releaseAll(): void {
    this.release(() => true);
  }
}
