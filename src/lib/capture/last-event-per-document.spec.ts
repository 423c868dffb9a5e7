import { lastEventPerDocument } from './local-change-capture.service';

type Ev = Parameters<typeof lastEventPerDocument>[0][number];

const ev = (coll: string, id: unknown, op: string, extra: object = {}): Ev =>
  ({ ns: { db: 'd', coll }, documentKey: { _id: id }, operationType: op, ...extra }) as Ev;
const upd = (id: unknown, set: object, removed: string[] = []): Ev =>
  ev('c', id, 'update', { updateDescription: { updatedFields: set, removedFields: removed } });

describe('lastEventPerDocument', () => {
  it('keeps one event per document, in the order of their last events', () => {
    const out = lastEventPerDocument([
      ev('c', 1, 'insert'),
      ev('c', 2, 'insert'),
      upd(1, { a: 1 }),
    ]);
    expect(out.map((e) => e.documentKey._id)).toEqual([2, 1]);
  });

  it('tells documents of different collections and id types apart', () => {
    const out = lastEventPerDocument([
      ev('c', 1, 'insert'),
      ev('d', 1, 'insert'),
      ev('c', '1', 'insert'),
    ]);
    expect(out).toHaveLength(3);
  });

  it('merges the changed fields of consecutive updates', () => {
    const [only] = lastEventPerDocument([
      upd(1, { a: 1, 'b.x': 2 }, ['z']),
      upd(1, { c: 3 }, ['y']),
    ]);
    const d = (only as { updateDescription: { updatedFields: object; removedFields: string[] } })
      .updateDescription;
    expect(Object.keys(d.updatedFields).sort()).toEqual(['a', 'b.x', 'c']);
    expect(d.removedFields.sort()).toEqual(['y', 'z']);
  });

  it('treats an update after an insert or replace in the batch as a replace', () => {
    expect(lastEventPerDocument([ev('c', 1, 'insert'), upd(1, { a: 1 })])[0].operationType).toBe(
      'replace',
    );
    expect(lastEventPerDocument([ev('c', 1, 'replace'), upd(1, { a: 1 })])[0].operationType).toBe(
      'replace',
    );
  });

  it('keeps the last of a delete and a re-insert', () => {
    expect(
      lastEventPerDocument([ev('c', 1, 'delete'), ev('c', 1, 'insert')])[0].operationType,
    ).toBe('insert');
    expect(lastEventPerDocument([upd(1, { a: 1 }), ev('c', 1, 'delete')])[0].operationType).toBe(
      'delete',
    );
  });
});
