/** Matches operations written at a source to their appearance at a destination. */

export type OpKind = 'insert' | 'update' | 'delete';

interface Pending {
  seq: number;
  issuedAt: number;
  op: OpKind;
}

export interface Resolved {
  /** performance.now() when the operation was scheduled (open loop) or sent (bulk). */
  issuedAt: number;
  /** performance.now() when the destination showed it (Infinity: never, within the cap). */
  seenAt: number;
  op: OpKind;
}

/**
 * State-based matching: a destination state carrying sequence number `s`
 * for a document makes every earlier pending operation on that document
 * visible (the engine coalesces intermediate states, as it may); a delete
 * makes all of them visible.
 */
export class VisibilityTracker {
  private readonly pending = new Map<string, Pending[]>();
  private readonly done: Resolved[] = [];
  private readonly everSeen = new Set<string>();
  private issuedCount = 0;
  /** Resolution instants in order (for delivery-rate time series). */
  readonly arrivals: number[] = [];

  issue(id: string, seq: number, op: OpKind, issuedAt: number): void {
    const list = this.pending.get(id);
    if (list) list.push({ seq, issuedAt, op });
    else this.pending.set(id, [{ seq, issuedAt, op }]);
    this.issuedCount++;
  }

  /** The write failed or matched nothing: it will never show up. */
  cancel(id: string, seq: number): void {
    const list = this.pending.get(id);
    if (!list) return;
    const i = list.findIndex((p) => p.seq === seq);
    if (i >= 0) {
      list.splice(i, 1);
      this.issuedCount--;
    }
    if (!list.length) this.pending.delete(id);
  }

  /** The destination shows the state of operation `seq` (or the document's deletion). */
  seen(id: string, seq: number | 'deleted', at: number): void {
    if (seq !== 'deleted') this.everSeen.add(id);
    const list = this.pending.get(id);
    if (!list) return;
    let keep = 0;
    for (const p of list) {
      if (seq === 'deleted' || p.seq <= seq) {
        this.done.push({ issuedAt: p.issuedAt, seenAt: at, op: p.op });
        this.arrivals.push(at);
      } else list[keep++] = p;
    }
    list.length = keep;
    if (!keep) this.pending.delete(id);
  }

  /** True once the destination showed any state of the document. */
  wasSeen(id: string): boolean {
    return this.everSeen.has(id);
  }

  get issued(): number {
    return this.issuedCount;
  }

  get delivered(): number {
    return this.done.length;
  }

  get outstanding(): number {
    return this.issuedCount - this.done.length;
  }

  /** Everything issued, unresolved operations with seenAt = Infinity. */
  results(): Resolved[] {
    const open: Resolved[] = [];
    for (const list of this.pending.values())
      for (const p of list) open.push({ issuedAt: p.issuedAt, seenAt: Infinity, op: p.op });
    return [...this.done, ...open].sort((a, b) => a.issuedAt - b.issuedAt);
  }

  /** Waits until nothing is outstanding or the cap passes; true when all arrived. */
  async drained(capMs: number, pollMs = 20): Promise<boolean> {
    const deadline = performance.now() + capMs;
    while (this.outstanding > 0 && performance.now() < deadline)
      await new Promise((r) => setTimeout(r, pollMs));
    return this.outstanding === 0;
  }
}
