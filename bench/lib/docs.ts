import { BSON } from 'mongodb';
import { HybridLogicalClock } from '../../src/lib/common/hybrid-logical-clock';

/** Target BSON size of a benchmark document (before the engine adds its ~80-byte `_sync` stamp). */
export const DOC_BYTES = 1024;

export interface BenchDoc {
  _id: string;
  /** Sequence number of the operation that produced this state (how visibility is matched). */
  seq: number;
  n: number;
  t: Date;
  pad: string;
  _sync?: { v: string; o: string };
}

const padLength = (() => {
  const probe = { _id: 'd0000000', seq: 1.5, n: 1.5, t: new Date(), pad: '' };
  return DOC_BYTES - BSON.calculateObjectSize(probe);
})();
const PAD = 'x'.repeat(padLength);

/** A 1 KiB document (ids of 8 characters or fewer keep it at exactly DOC_BYTES). */
export function makeDoc(id: string, seq: number): BenchDoc {
  return { _id: id, seq, n: seq, t: new Date(), pad: PAD };
}

/**
 * Documents as another device's sync engine leaves them on Atlas: stamped
 * with a version and an origin, so a device applies them as it would a
 * peer's push (Atlas → Local without the "direct write" adoption step).
 */
export class PeerStamper {
  private readonly clock: HybridLogicalClock;
  constructor(readonly origin = 'bench-peer') {
    this.clock = new HybridLogicalClock(origin);
  }
  stamp<T extends object>(doc: T): T & { _sync: { v: string; o: string } } {
    return { ...doc, _sync: { v: this.clock.tick(), o: this.origin } };
  }
}

/** Small deterministic PRNG (mulberry32) so load mixes repeat across runs. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
