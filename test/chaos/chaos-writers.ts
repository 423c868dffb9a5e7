import type { Collection, Db, Document } from 'mongodb';
import { prng } from '../support/prng';

/** One write a writer attempted, in the writer's own order. */
export interface LoggedWrite {
  writer: string;
  key: string;
  seq: number;
  op: 'set' | 'delete';
  /** false: the server did not acknowledge it (it may or may not have happened). */
  acknowledged: boolean;
  /** When the write was sent and when its reply (or error) came back (ms). */
  startedAt: number;
  endedAt?: number;
}

/** What a document's final state may be: a writer's `seq`, or `absent`. */
type Outcome = number | 'absent';

/**
 * A random writer on one database (a device's local MongoDB, or Atlas
 * written without the module). Each document it writes names the writer and
 * the write's sequence number, so the oracle can tell which write a final
 * state comes from. Keys are either owned (only this writer touches them)
 * or shared by every writer.
 */
export class ChaosWriter {
  readonly log: LoggedWrite[] = [];
  private seq = 0;
  private running = false;
  private loop?: Promise<void>;
  paused = false;
  /** Sets only while true (see the chaos suite's local-history-loss fault). */
  deletesPaused = false;

  constructor(
    readonly name: string,
    private readonly collection: () => Collection<Document>,
    private readonly random: () => number,
    private readonly keys: { owned: number; shared: number },
    private readonly intervalMs: number,
    private readonly deleteShare = 0.15,
  ) {}

  start(): void {
    this.running = true;
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }

  private async run(): Promise<void> {
    while (this.running) {
      if (!this.paused) await this.writeOnce();
      await new Promise((r) => setTimeout(r, this.intervalMs * (0.5 + this.random())));
    }
  }

  private async writeOnce(): Promise<void> {
    const shared = this.random() < 0.3;
    const key = shared
      ? `shared-${Math.floor(this.random() * this.keys.shared)}`
      : `${this.name}-${Math.floor(this.random() * this.keys.owned)}`;
    const deletes = this.random() < this.deleteShare;
    await this.write(key, deletes && !this.deletesPaused ? 'delete' : 'set');
  }

  /**
   * Writes `keys` back to back for `durationMs` (sets only, replace or update
   * at random), alongside the writer's usual loop: aimed at documents another
   * writer bursts on at the same time, host writes race the applies of remote ones.
   */
  async burst(keys: string[], durationMs: number, intervalMs: number): Promise<void> {
    const until = Date.now() + durationMs;
    while (Date.now() < until) {
      await this.write(keys[Math.floor(this.random() * keys.length)], 'set');
      await new Promise((r) => setTimeout(r, intervalMs * (0.5 + this.random())));
    }
  }

  private async write(key: string, op: LoggedWrite['op']): Promise<void> {
    const seq = ++this.seq;
    const entry: LoggedWrite = {
      writer: this.name,
      key,
      seq,
      op,
      acknowledged: false,
      startedAt: Date.now(),
    };
    this.log.push(entry);
    const content = {
      writer: this.name,
      seq,
      payload: 'x'.repeat(Math.floor(this.random() * 200)),
    };
    try {
      if (op === 'delete') await this.collection().deleteOne({ _id: key as never });
      else if (this.random() < 0.5)
        await this.collection().replaceOne({ _id: key as never }, content, { upsert: true });
      else
        await this.collection().updateOne(
          { _id: key as never },
          { $set: content },
          { upsert: true },
        );
      entry.acknowledged = true;
    } catch {
      // Not acknowledged (server down, connection cut): the oracle treats it as maybe-applied.
    } finally {
      entry.endedAt = Date.now();
    }
  }
}

/**
 * The chaos suites' writers: one per device database (`w<first>`, `w<first+1>`, ...; every
 * 60 ms on average) and one on Atlas without the module (`atlas`, every 120 ms, fewer
 * deletes), each with its own generator derived from `seed`, all started.
 */
export function startChaosWriters(
  seed: number,
  devices: (() => Collection<Document>)[],
  atlas: () => Collection<Document>,
  keys: { owned: number; shared: number },
  first = 0,
): ChaosWriter[] {
  const writers = devices.map(
    (collection, i) => new ChaosWriter(`w${first + i}`, collection, prng(seed + i + 1), keys, 60),
  );
  writers.push(new ChaosWriter('atlas', atlas, prng(seed + 99), keys, 120, 0.1));
  writers.forEach((w) => w.start());
  return writers;
}

/**
 * Checks final states against the writers' logs. For each key and writer,
 * the possible contributions are its last acknowledged write and any
 * unacknowledged write after it. A key only one writer touched must end in
 * one of that writer's possible contributions (nothing it acknowledged last
 * may be lost); a shared key must end in one of any writer's (last write
 * wins picks one of them, never an overwritten older state).
 */
export function checkOracle(
  writers: ChaosWriter[],
  finalDocs: Map<string, Document>,
): { checked: number; violations: string[] } {
  const possible = new Map<string, Map<string, Outcome[]>>();
  for (const writer of writers) {
    const byKey = new Map<string, LoggedWrite[]>();
    for (const w of writer.log) byKey.set(w.key, [...(byKey.get(w.key) ?? []), w]);
    for (const [key, writes] of byKey) {
      let lastAck = -1;
      writes.forEach((w, i) => w.acknowledged && (lastAck = i));
      const outcomes = writes
        .slice(Math.max(0, lastAck))
        .filter((w, i) => i === 0 || !w.acknowledged)
        .map((w): Outcome => (w.op === 'delete' ? 'absent' : w.seq));
      // Nothing acknowledged: the key may also never have been written by this writer.
      if (lastAck < 0) outcomes.push('absent');
      const perWriter = possible.get(key) ?? new Map<string, Outcome[]>();
      perWriter.set(writer.name, outcomes);
      possible.set(key, perWriter);
    }
  }
  const violations: string[] = [];
  for (const [key, perWriter] of possible) {
    const doc = finalDocs.get(key);
    const actual = doc ? `${doc.writer}:${doc.seq}` : 'absent';
    const allowed = [...perWriter].flatMap(([writer, outcomes]) =>
      outcomes.map((o) => (o === 'absent' ? 'absent' : `${writer}:${o}`)),
    );
    if (!allowed.includes(actual))
      violations.push(
        `${key}: final ${actual}, expected one of ${[...new Set(allowed)].join(', ')}`,
      );
  }
  for (const key of finalDocs.keys())
    if (!possible.has(key)) violations.push(`${key}: present but never written`);
  return { checked: possible.size, violations };
}

/** How each acknowledged write ended (see `checkEveryWrite`). */
export interface WriteAccounting {
  checked: number;
  survived: number;
  supersededByOwn: number;
  overwrittenLater: number;
  lostToConflict: number;
  violations: string[];
}

/**
 * Accounts for every acknowledged write, one by one. A write either
 * - is the final state (or, a delete, the key ends absent);
 * - was superseded by a later write of the same writer to the same key;
 * - was overwritten by the final state's write, which completed after it;
 * - or lost to a conflict recorded for its key after it was sent.
 * Anything else is a write the sync lost silently: an older state (a
 * resurrected document, a stale apply) ended up on top of it unrecorded.
 * `conflictTimes` lists, per key, when each recorded conflict was resolved.
 * Only the writes of `hosts` (the devices' writers) are accounted for; the
 * final state may come from any of `writers`. Direct Atlas writes are checked
 * by `checkOracle` only: one made within the adoption latency of a push based
 * on the same version can be overwritten by that push unrecorded (README,
 * Known limitations).
 */
export function checkEveryWrite(
  hosts: ChaosWriter[],
  writers: ChaosWriter[],
  finalDocs: Map<string, Document>,
  conflictTimes: Map<string, number[]>,
): WriteAccounting {
  const result: WriteAccounting = {
    checked: 0,
    survived: 0,
    supersededByOwn: 0,
    overwrittenLater: 0,
    lostToConflict: 0,
    violations: [],
  };
  const all = writers.flatMap((w) => w.log);
  const byKey = new Map<string, LoggedWrite[]>();
  for (const w of all) byKey.set(w.key, [...(byKey.get(w.key) ?? []), w]);
  for (const [key, writes] of byKey) {
    const doc = finalDocs.get(key);
    // The write the final state comes from; for an absent key, the last delete to complete.
    const final = doc
      ? writes.find((w) => w.writer === doc.writer && w.seq === doc.seq)
      : writes
          .filter((w) => w.op === 'delete')
          .sort((a, b) => (b.endedAt ?? Infinity) - (a.endedAt ?? Infinity))[0];
    for (const w of writes) {
      if (!w.acknowledged || !hosts.some((h) => h.name === w.writer)) continue;
      result.checked++;
      if (w === final || (!doc && w.op === 'delete')) {
        result.survived++;
        continue;
      }
      if (writes.some((later) => later.writer === w.writer && later.seq > w.seq)) {
        result.supersededByOwn++;
        continue;
      }
      if (final && (final.endedAt ?? Infinity) > w.endedAt!) {
        result.overwrittenLater++;
        continue;
      }
      if ((conflictTimes.get(key) ?? []).some((t) => t >= w.startedAt)) {
        result.lostToConflict++;
        continue;
      }
      const finalName = final ? `${final.writer}:${final.seq} (${final.op})` : 'nothing written';
      result.violations.push(
        `${key}: ${w.writer}:${w.seq} ${w.op}, acknowledged, lost to ${finalName} which completed before it, with no conflict recorded`,
      );
    }
  }
  return result;
}

/**
 * Every replica's copy and tombstone of the documents a failed verification
 * report names (` <collection> "<id>"`), and the last writes to each.
 */
export async function explainMismatches(
  report: string,
  replicas: (readonly [string, Db])[],
  writers: ChaosWriter[],
  collection: string,
): Promise<string> {
  const pattern = new RegExp(` ${collection} "([^"]+)"`, 'g');
  const ids = [...new Set([...report.matchAll(pattern)].map((m) => m[1]))];
  const lines: string[] = [];
  for (const id of ids) {
    for (const [name, db] of replicas) {
      const doc = await db.collection(collection).findOne({ _id: id as never });
      const tomb = await db.collection('_sync_tombstones').findOne({ i: id, c: collection });
      const state = doc ? `${doc.writer}:${doc.seq} ${JSON.stringify(doc._sync)}` : 'absent';
      const tombstone = tomb ? `${JSON.stringify(tomb._sync)} ${tomb.src ?? ''}` : 'none';
      lines.push(`${id} @ ${name}: ${state}; tombstone ${tombstone}`);
    }
    const history = writers.flatMap((w) => w.log.filter((l) => l.key === id).slice(-4));
    const described = history.map(
      (h) => `${h.writer}:${h.seq} ${h.op}${h.acknowledged ? '' : ' (unacknowledged)'}`,
    );
    lines.push(`  last writes: ${described.join(', ')}`);
  }
  return lines.join('\n');
}
