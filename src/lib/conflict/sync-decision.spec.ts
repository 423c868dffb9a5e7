import { compareVersions, formatVersion, parseVersion } from '../common/hybrid-logical-clock';
import type { SyncStamp } from '../common/sync-stamp';
import type { ConflictResolution } from './conflict-resolver.interface';
import { decide, DecisionInput, PullCase, PushCase, SyncDecision } from './sync-decision';

const ME = 'device-a';
const v = (ms: number, node = 'other') => formatVersion(ms, 0, node);
/** Issues `ms + 1` after whatever it is asked about: deterministic, always newer. */
const clock = {
  tickAfter: (after: string | undefined) =>
    formatVersion((parseVersion(after)?.ms ?? 0) + 1, 0, ME),
};
const stamp = (ms: number, node = 'other', f?: Record<string, string>): SyncStamp => ({
  v: v(ms, node),
  o: node,
  ...(f ? { f } : {}),
});
const doc = (fields: Record<string, unknown>, s?: SyncStamp) => ({
  _id: 1,
  ...fields,
  ...(s ? { _sync: s } : {}),
});

function run(
  change: PushCase | PullCase,
  strategy: DecisionInput['strategy'] = 'last-write-wins',
  resolution?: ConflictResolution,
): SyncDecision {
  return decide({
    strategy,
    instanceId: ME,
    clock,
    resolution,
    collection: 'items',
    documentId: 1,
    change,
  });
}

/** What a test checks of a decision: its kind, winner and (where it matters) the state written. */
interface Summary {
  kind: SyncDecision['kind'];
  winner?: string;
  doc?: Record<string, unknown> | null;
  v?: string;
  dropsPending?: boolean;
}

function summary(d: SyncDecision): Summary {
  return {
    kind: d.kind,
    winner: 'conflict' in d ? d.conflict?.winner : undefined,
    ...(d.kind === 'take' || d.kind === 'rewrite'
      ? { doc: d.doc && { ...d.doc, _sync: undefined }, v: d.stamp.v }
      : {}),
    ...(d.kind === 'take' && d.dropsPending ? { dropsPending: true } : {}),
  };
}

const push = (
  local: PushCase['local'],
  atlas: PushCase['atlas'] = { exists: false },
): PushCase => ({ direction: 'push', local, atlas });
const pull = (atlas: PullCase['atlas'], local: PullCase['local'] = {}): PullCase => ({
  direction: 'pull',
  atlas,
  local,
});

describe('decide: pushing a local edit to Atlas', () => {
  const edit = (ms: number, base?: number, fields: Record<string, unknown> = { a: 2 }) => ({
    doc: doc(fields, stamp(ms, ME)),
    version: v(ms, ME),
    base: base === undefined ? undefined : v(base),
  });
  const atlasAt = (ms: number, fields: Record<string, unknown> = { a: 1 }, origin = 'other') => ({
    exists: true,
    doc: doc(fields, stamp(ms, origin)),
    version: v(ms, origin),
    origin,
  });

  it.each<[string, PushCase, DecisionInput['strategy'], Summary]>([
    [
      'fast-forward: Atlas holds the base',
      push(edit(20, 10), atlasAt(10)),
      'last-write-wins',
      { kind: 'take', winner: undefined, doc: doc({ a: 2 }), v: v(20, ME) },
    ],
    [
      'fast-forward: nothing on Atlas',
      push(edit(20)),
      'last-write-wins',
      { kind: 'take', winner: undefined, doc: doc({ a: 2 }), v: v(20, ME) },
    ],
    [
      'own state on Atlas, base unknown (a host replace)',
      push(edit(20), atlasAt(15, { a: 1 }, ME)),
      'last-write-wins',
      { kind: 'take', winner: undefined, doc: doc({ a: 2 }), v: v(20, ME) },
    ],
    [
      'own state on Atlas, another base (a push replayed after a crash)',
      push(edit(20, 5), atlasAt(15, { a: 1 }, ME)),
      'last-write-wins',
      { kind: 'take', winner: undefined, doc: doc({ a: 2 }), v: v(20, ME) },
    ],
    [
      'own newer state on Atlas: an older queued edit is stale, no conflict',
      push(edit(20, 5), atlasAt(25, { a: 1 }, ME)),
      'last-write-wins',
      { kind: 'keep', winner: undefined },
    ],
    [
      'an edit of a document Atlas deleted and forgot (no document, no tombstone): wins, as a conflict',
      push(edit(20, 10)),
      'last-write-wins',
      { kind: 'take', winner: 'local', doc: doc({ a: 2 }), v: v(20, ME) },
    ],
    [
      'delete without a base: newer wins, no conflict',
      push({ doc: null, version: v(20, ME) }, atlasAt(10)),
      'last-write-wins',
      { kind: 'take', winner: undefined, doc: null, v: v(20, ME) },
    ],
    [
      'delete without a base, older than Atlas: stale, no conflict',
      push({ doc: null, version: v(5, ME) }, atlasAt(10)),
      'last-write-wins',
      { kind: 'keep', winner: undefined },
    ],
    [
      'delete without a base, made before it is newer than Atlas: wins, no conflict',
      push({ doc: null, version: v(20, ME), writtenAt: new Date(12) }, atlasAt(10)),
      'last-write-wins',
      { kind: 'take', winner: undefined, doc: null, v: v(20, ME) },
    ],
    [
      "delete captured late: newer, but made before Atlas's state, which it never saw: wins, as a conflict",
      push({ doc: null, version: v(20, ME), writtenAt: new Date(5) }, atlasAt(10)),
      'last-write-wins',
      { kind: 'take', winner: 'local', doc: null, v: v(20, ME) },
    ],
    [
      "delete made before Atlas's newer state, which it never saw: stale, as a conflict",
      push({ doc: null, version: v(8, ME), writtenAt: new Date(5) }, atlasAt(10)),
      'last-write-wins',
      { kind: 'keep', winner: 'atlas' },
    ],
    [
      "delete made before Atlas's state, which is this device's own: no conflict",
      push({ doc: null, version: v(20, ME), writtenAt: new Date(5) }, atlasAt(10, { a: 1 }, ME)),
      'last-write-wins',
      { kind: 'take', winner: undefined, doc: null, v: v(20, ME) },
    ],
    [
      'concurrent, local newer: last write wins locally',
      push(edit(20, 5), atlasAt(10)),
      'last-write-wins',
      { kind: 'take', winner: 'local', doc: doc({ a: 2 }), v: v(20, ME) },
    ],
    [
      'concurrent, Atlas newer: Atlas keeps its state',
      push(edit(20, 5), atlasAt(30)),
      'last-write-wins',
      { kind: 'keep', winner: 'atlas' },
    ],
    [
      'concurrent with an Atlas tombstone, tombstone newer: the delete stands',
      push(edit(20, 5), { exists: false, version: v(30), origin: 'other' }),
      'last-write-wins',
      { kind: 'keep', winner: 'atlas' },
    ],
    [
      'concurrent with an Atlas tombstone, edit newer: the edit brings it back',
      push(edit(40, 5), { exists: false, version: v(30), origin: 'other' }),
      'field-level',
      { kind: 'take', winner: 'local', doc: doc({ a: 2 }), v: v(40, ME) },
    ],
  ])('%s', (_name, change, strategy, expected) => {
    expect(summary(run(change, strategy))).toEqual(expected);
  });

  it('field-level: concurrent edits of different fields both survive under the edit’s version', () => {
    const local = {
      doc: doc({ a: 2, b: 1 }, stamp(20, ME, { a: v(20, ME), b: v(1) })),
      version: v(20, ME),
      base: v(1),
    };
    const atlas = {
      exists: true,
      doc: doc({ a: 1, b: 3 }, stamp(10, 'other', { a: v(1), b: v(10) })),
      version: v(10),
      origin: 'other',
    };
    const d = run(push(local, atlas), 'field-level');
    expect(summary(d)).toEqual({
      kind: 'take',
      winner: 'merged',
      doc: doc({ a: 2, b: 3 }),
      v: v(20, ME),
    });
  });

  it('field-level: Atlas newer overall, the merge is issued under a version after Atlas’s', () => {
    const local = { doc: doc({ a: 2 }, stamp(20, ME)), version: v(20, ME), base: v(1) };
    const d = run(push(local, atlasAt(30, { b: 3 })), 'field-level');
    expect(d.kind).toBe('rewrite');
    if (d.kind !== 'rewrite') return;
    expect(compareVersions(d.stamp.v, v(30))).toBeGreaterThan(0);
    expect(d.doc).toMatchObject({ a: 2, b: 3 });
  });

  describe('custom resolver', () => {
    const change = push(edit(20, 5), atlasAt(30, { a: 9 }));

    it('asks the resolver with both sides, stamps stripped', () => {
      const d = run(change, 'custom');
      expect(d).toEqual({
        kind: 'resolve',
        context: {
          collection: 'items',
          documentId: 1,
          local: { document: { _id: 1, a: 2 }, version: v(20, ME), origin: ME },
          atlas: { document: { _id: 1, a: 9 }, version: v(30), origin: 'other' },
        },
      });
    });

    it.each<[string, PushCase, ConflictResolution, Summary]>([
      [
        'Atlas chosen and newer: kept',
        change,
        { winner: 'atlas' },
        { kind: 'keep', winner: 'atlas' },
      ],
      [
        'local chosen and newer: pushed as it is',
        push(edit(40, 5), atlasAt(30)),
        { winner: 'local' },
        { kind: 'take', winner: 'local', doc: doc({ a: 2 }), v: v(40, ME) },
      ],
      [
        'local chosen but older: rewritten under a version after both',
        change,
        { winner: 'local' },
        { kind: 'rewrite', winner: 'local', doc: doc({ a: 2 }), v: v(31, ME) },
      ],
      [
        'merged: rewritten with the merged content',
        change,
        { merged: { a: 5 } },
        { kind: 'rewrite', winner: 'merged', doc: doc({ a: 5 }), v: v(31, ME) },
      ],
    ])('%s', (_name, c, resolution, expected) => {
      expect(summary(run(c, 'custom', resolution))).toEqual(expected);
    });
  });
});

describe('decide: applying an Atlas state locally', () => {
  const incoming = (
    ms: number,
    fields: Record<string, unknown> | null = { a: 9 },
    origin = 'other',
  ) => ({
    doc: fields && doc(fields, stamp(ms, origin)),
    stamp: stamp(ms, origin),
  });
  const localAt = (ms: number, pending?: { v: number; base?: number }) => ({
    doc: doc({ a: 1 }, stamp(ms, ME)),
    stamp: stamp(ms, ME),
    pending: pending && {
      v: v(pending.v, ME),
      base: pending.base === undefined ? undefined : v(pending.base),
    },
  });

  it.each<[string, PullCase, DecisionInput['strategy'], Summary]>([
    [
      'newer state, no local edit: applied',
      pull(incoming(20), localAt(10)),
      'last-write-wins',
      { kind: 'take', winner: undefined, doc: doc({ a: 9 }), v: v(20) },
    ],
    [
      'new document: applied',
      pull(incoming(20)),
      'last-write-wins',
      { kind: 'take', winner: undefined, doc: doc({ a: 9 }), v: v(20) },
    ],
    [
      'the state held already: stale (a replay)',
      pull(incoming(10, { a: 1 }, ME), localAt(10)),
      'last-write-wins',
      { kind: 'keep', winner: undefined },
    ],
    [
      'the echo of this device’s own pending edit: stale, no conflict',
      pull(incoming(15, { a: 1 }, ME), localAt(15, { v: 15, base: 5 })),
      'last-write-wins',
      { kind: 'keep', winner: undefined },
    ],
    [
      'an older state: stale',
      pull(incoming(5), localAt(10)),
      'last-write-wins',
      { kind: 'keep', winner: undefined },
    ],
    [
      'the state the pending edit was based on: stale, no conflict',
      pull(incoming(5), localAt(5, { v: 15, base: 5 })),
      'last-write-wins',
      { kind: 'keep', winner: undefined },
    ],
    [
      'concurrent, Atlas newer: Atlas wins, the pending edit is dropped',
      pull(incoming(30), localAt(10, { v: 20, base: 5 })),
      'last-write-wins',
      { kind: 'take', winner: 'atlas', doc: doc({ a: 9 }), v: v(30), dropsPending: true },
    ],
    [
      'concurrent, local newer: local wins (its push follows)',
      pull(incoming(15), localAt(10, { v: 20, base: 5 })),
      'last-write-wins',
      { kind: 'keep', winner: 'local' },
    ],
    [
      'delete newer than the local copy: deleted',
      pull(incoming(20, null), localAt(10)),
      'last-write-wins',
      { kind: 'take', winner: undefined, doc: null, v: v(20) },
    ],
    [
      'delete older than the local copy: stale',
      pull(incoming(5, null), localAt(10)),
      'last-write-wins',
      { kind: 'keep', winner: undefined },
    ],
    [
      'update older than the local tombstone: no resurrection',
      pull(incoming(10), { stamp: stamp(20, ME) }),
      'last-write-wins',
      { kind: 'keep', winner: undefined },
    ],
    [
      'update newer than the local tombstone: brought back',
      pull(incoming(30), { stamp: stamp(20, ME) }),
      'last-write-wins',
      { kind: 'take', winner: undefined, doc: doc({ a: 9 }), v: v(30) },
    ],
    [
      'field-level, delete: competes as a whole document',
      pull(incoming(30, null), localAt(10, { v: 20, base: 5 })),
      'field-level',
      { kind: 'take', winner: 'atlas', doc: null, v: v(30), dropsPending: true },
    ],
  ])('%s', (_name, change, strategy, expected) => {
    expect(summary(run(change, strategy))).toEqual(expected);
  });

  describe('field-level', () => {
    const local = {
      doc: doc({ a: 2, b: 1 }, stamp(20, ME, { a: v(20, ME), b: v(1) })),
      stamp: stamp(20, ME, { a: v(20, ME), b: v(1) }),
    };
    const atlasState = {
      doc: doc({ a: 1, b: 3 }, stamp(10, 'other', { a: v(1), b: v(10) })),
      stamp: stamp(10, 'other', { a: v(1), b: v(10) }),
    };

    it('merges per field; a conflict only when a local edit is pending', () => {
      const plain = run(pull(atlasState, local), 'field-level');
      expect(summary(plain)).toMatchObject({
        kind: 'take',
        winner: undefined,
        doc: doc({ a: 2, b: 3 }),
      });
      const pending = run(
        pull(atlasState, { ...local, pending: { v: v(20, ME), base: v(1) } }),
        'field-level',
      );
      expect(summary(pending)).toMatchObject({ kind: 'take', winner: 'merged' });
    });

    it('a state the local copy already contains changes nothing', () => {
      expect(run(pull(local, local), 'field-level')).toEqual({ kind: 'keep' });
    });
  });

  describe('custom resolver', () => {
    const concurrent = pull(incoming(30), localAt(10, { v: 20, base: 5 }));

    it('asks the resolver only for concurrent edits', () => {
      expect(run(concurrent, 'custom').kind).toBe('resolve');
      expect(run(pull(incoming(30), localAt(10)), 'custom').kind).toBe('take');
    });

    it.each<[string, PullCase, ConflictResolution, Summary]>([
      [
        'Atlas chosen and newer: applied, pending dropped',
        concurrent,
        { winner: 'atlas' },
        { kind: 'take', winner: 'atlas', doc: doc({ a: 9 }), v: v(30), dropsPending: true },
      ],
      [
        'local chosen and not older: kept (its push follows)',
        pull(incoming(15), localAt(10, { v: 20, base: 5 })),
        { winner: 'local' },
        { kind: 'keep', winner: 'local' },
      ],
      [
        'local chosen but Atlas newer: rewritten after both',
        concurrent,
        { winner: 'local' },
        { kind: 'rewrite', winner: 'local', doc: doc({ a: 1 }), v: v(31, ME) },
      ],
      [
        'Atlas chosen but older: rewritten after both',
        pull(incoming(15), localAt(10, { v: 20, base: 5 })),
        { winner: 'atlas' },
        { kind: 'rewrite', winner: 'atlas', doc: doc({ a: 9 }), v: v(21, ME) },
      ],
      [
        'Atlas’s delete chosen but older: a delete after both',
        pull(incoming(15, null), localAt(10, { v: 20, base: 5 })),
        { winner: 'atlas' },
        { kind: 'rewrite', winner: 'atlas', doc: null, v: v(21, ME) },
      ],
    ])('%s', (_name, c, resolution, expected) => {
      expect(summary(run(c, 'custom', resolution))).toEqual(expected);
    });
  });

  it('records the versions that competed', () => {
    const d = run(pull(incoming(30), localAt(10, { v: 20, base: 5 })));
    expect(d.kind === 'take' && d.conflict).toEqual({
      winner: 'atlas',
      localVersion: v(20, ME),
      atlasVersion: v(30),
    });
  });
});
