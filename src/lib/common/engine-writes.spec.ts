import type { ChangeStreamDocument } from 'mongodb';
import { contentDigest } from './content-digest';
import {
  casFilter,
  isHostWrite,
  issuedStamp,
  stamped,
  stateUpdate,
  unchangedFilter,
} from './engine-writes';

const stamp = { v: '001700000000000-000000-dev', o: 'dev' };

describe('engine writes', () => {
  it('stateUpdate sets every field of the new state and unsets the ones it lacks', () => {
    expect(stateUpdate({ _id: 1, a: 1, b: 2 }, { _id: 1, a: 3, _sync: stamp })).toEqual({
      $set: { a: 3, _sync: stamp },
      $unset: { b: '' },
    });
  });

  it('casFilter matches the version read, or no stamp at all', () => {
    expect(casFilter(1, stamp.v)).toEqual({ _id: 1, '_sync.v': stamp.v });
    expect(casFilter(1, undefined)).toEqual({ _id: 1, '_sync.v': { $exists: false } });
  });

  it('unchangedFilter compares every field read, and a missing stamp must still be missing', () => {
    expect(unchangedFilter({ _id: 1, a: 1, _sync: stamp })).toEqual({
      _id: 1,
      a: { $eq: 1 },
      _sync: { $eq: stamp },
    });
    // Read after a host replace (no stamp): the capture's stamp write-back must fail it.
    expect(unchangedFilter({ _id: 1, a: 1 })).toEqual({
      _id: 1,
      a: { $eq: 1 },
      _sync: { $exists: false },
    });
  });

  it('stamped replaces any stamp the content carries', () => {
    expect(stamped({ a: 1, _sync: { v: 'old', o: 'x' } }, 7, stamp)).toEqual({
      a: 1,
      _id: 7,
      _sync: stamp,
    });
  });

  it('issuedStamp adds the digest of the content it describes', () => {
    expect(issuedStamp({ a: 1 }, 7, stamp)).toEqual({
      ...stamp,
      h: contentDigest({ _id: 7, a: 1 }),
    });
  });

  it.each<[string, Partial<ChangeStreamDocument>, boolean]>([
    ['a host insert', { operationType: 'insert', fullDocument: { _id: 1, a: 1 } }, true],
    [
      'an engine insert',
      { operationType: 'insert', fullDocument: { _id: 1, _sync: stamp } },
      false,
    ],
    [
      'a host update',
      {
        operationType: 'update',
        updateDescription: { updatedFields: { a: 2 }, removedFields: [] },
      },
      true,
    ],
    [
      'an engine update (stamp written)',
      {
        operationType: 'update',
        updateDescription: { updatedFields: { a: 2, '_sync.v': stamp.v }, removedFields: [] },
      },
      false,
    ],
    ['a replace (the engine never replaces)', { operationType: 'replace' }, true],
    ['a delete (told apart by its tombstone)', { operationType: 'delete' }, true],
    ['a drop', { operationType: 'drop' }, false],
  ])('isHostWrite: %s', (_name, event, expected) => {
    expect(isHostWrite(event as ChangeStreamDocument)).toBe(expected);
  });
});
