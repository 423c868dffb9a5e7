import { contentDigest } from '../common/content-digest';
import { asReplaceEvent, writtenWithoutCapture } from './uncaptured-writes';

describe('writtenWithoutCapture', () => {
  const v = '001795800468298-000003-device-a';
  const stampedDoc = (content: Record<string, unknown>) => ({
    ...content,
    _sync: { v, o: 'device-a', h: contentDigest(content) },
  });

  it('is false for content its stamp describes, whatever the field order', () => {
    const doc = stampedDoc({ _id: 1, a: 1, b: { c: 2, d: 3 } });
    expect(writtenWithoutCapture(doc)).toBe(false);
    expect(writtenWithoutCapture({ b: { d: 3, c: 2 }, _sync: doc._sync, a: 1, _id: 1 })).toBe(
      false,
    );
  });

  it('is true for content changed after the stamp (a host update the capture missed)', () => {
    const doc = stampedDoc({ _id: 1, a: 1 });
    expect(writtenWithoutCapture({ ...doc, a: 2 })).toBe(true);
    expect(writtenWithoutCapture({ ...doc, extra: true })).toBe(true);
  });

  it('is true without a stamp (a host insert or replace)', () => {
    expect(writtenWithoutCapture({ _id: 1, a: 1 })).toBe(true);
  });

  it('counts a stamp from before digests (no h) as unmodified', () => {
    expect(writtenWithoutCapture({ _id: 1, a: 99, _sync: { v, o: 'device-a' } })).toBe(false);
  });
});

describe('asReplaceEvent', () => {
  it('is a replace event of the document, as the capture takes it', () => {
    const doc = { _id: 'x', a: 1 };
    expect(asReplaceEvent('db', 'items', doc)).toMatchObject({
      operationType: 'replace',
      ns: { db: 'db', coll: 'items' },
      documentKey: { _id: 'x' },
      fullDocument: doc,
    });
  });
});
