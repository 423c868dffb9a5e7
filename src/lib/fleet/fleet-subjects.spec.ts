import { Int32, ObjectId } from 'mongodb';
import {
  changeSubject,
  collectionOfChangeSubject,
  decodeSubjectToken,
  encodeSubjectToken,
  fleetMessageId,
  parsePushSubject,
  pushPartition,
  pushSubject,
} from './fleet-subjects';

describe('fleet subjects', () => {
  it('encodes any collection name as one reversible subject token', () => {
    for (const name of ['orders', 'menu.items', 'a b', 'x*>y', '100%', 'café_€', 'a-b_c']) {
      const token = encodeSubjectToken(name);
      expect(token).toMatch(/^[A-Za-z0-9_%-]+$/);
      expect(decodeSubjectToken(token)).toBe(name);
      expect(collectionOfChangeSubject(changeSubject(name))).toBe(name);
    }
    expect(changeSubject('menu.items')).toBe('sync.changes.menu%2Eitems');
    expect(encodeSubjectToken('100%')).not.toBe(encodeSubjectToken('100%25'));
    expect(() => encodeSubjectToken('')).toThrow();
  });

  it('parses push subjects and rejects others', () => {
    expect(parsePushSubject(pushSubject('device-1', 7))).toEqual({
      deviceId: 'device-1',
      partition: 7,
    });
    expect(() => parsePushSubject('sync.push.device-1')).toThrow();
    expect(() => parsePushSubject('sync.changes.a.1')).toThrow();
  });

  it('puts a document in one stable partition, spread over all partitions', () => {
    const id = new ObjectId('656c4e2f9b1e8a0012345678');
    expect(pushPartition('orders', id, 16)).toBe(
      pushPartition('orders', new ObjectId(id.toHexString()), 16),
    );
    // Equal BSON ids give equal partitions; different types of "1" need not.
    expect(pushPartition('orders', 1, 16)).toBe(pushPartition('orders', new Int32(1), 16));
    const seen = new Set<number>();
    for (let i = 0; i < 2000; i++) {
      const p = pushPartition('orders', `doc-${i}`, 16);
      expect(p).toBeGreaterThanOrEqual(0);
      expect(p).toBeLessThan(16);
      seen.add(p);
    }
    expect(seen.size).toBe(16);
    // Pinned values: a change of the hash would move documents between partitions while
    // their pushes are queued (and reorder them), so it must be deliberate.
    expect(pushPartition('orders', 'doc-1', 1024)).toBe(267);
    expect(pushPartition('orders', 42, 16)).toBe(15);
  });

  it('derives the message id from collection, id and version only', () => {
    const v = '001733230000000-000001-device-1';
    const id = fleetMessageId('orders', 'doc-1', v);
    expect(id).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(fleetMessageId('orders', 'doc-1', v)).toBe(id);
    expect(fleetMessageId('orders', 'doc-2', v)).not.toBe(id);
    expect(fleetMessageId('orders2', 'doc-1', v)).not.toBe(id);
    expect(fleetMessageId('orders', 'doc-1', '001733230000000-000002-device-1')).not.toBe(id);
  });
});
