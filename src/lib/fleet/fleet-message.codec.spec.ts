import { BSON, ObjectId } from 'mongodb';
import { FleetMessageDecodeError } from './fleet.errors';
import { decodeFleetMessage, encodeFleetMessage, FleetChangeMessage } from './fleet-message.codec';

const stamp = { v: '001733230000000-000001-device-1', o: 'device-1' };
const id = new ObjectId();
const message: FleetChangeMessage = {
  collection: 'orders',
  id,
  op: 'upsert',
  stamp,
  document: { _id: id, total: 3, _sync: stamp },
};

describe('fleet message codec', () => {
  it('writes canonical Extended JSON with the version and origin as headers', () => {
    const encoded = encodeFleetMessage(message);
    const text = Buffer.from(encoded.data).toString('utf8');
    expect(text).toContain(`{"$oid":"${id.toHexString()}"}`);
    expect(text).toContain('{"$numberInt":"3"}');
    expect(encoded.headers.get('Sync-Version')).toBe(stamp.v);
    expect(encoded.headers.get('Sync-Origin')).toBe('device-1');
    expect(decodeFleetMessage(encoded.data)).toEqual(message);
  });

  it("carries a push's base and the time the host made it", () => {
    const push: FleetChangeMessage = {
      collection: 'orders',
      id,
      op: 'delete',
      stamp,
      base: null,
      writtenAt: new Date(1_733_230_000_123),
    };
    expect(decodeFleetMessage(encodeFleetMessage(push).data)).toEqual(push);
  });

  it('refuses inconsistent messages on both sides', () => {
    const otherStamp = { v: '001733230000009-000000-atlas', o: 'atlas' };
    expect(() => encodeFleetMessage({ ...message, stamp: otherStamp })).toThrow(/stamp/);
    expect(() => encodeFleetMessage({ ...message, id: new ObjectId() })).toThrow(/_id/);
    expect(() => encodeFleetMessage({ ...message, op: 'delete' })).toThrow(/no document/);
    expect(() => encodeFleetMessage({ ...message, base: 'yesterday' })).toThrow(/base/);
    const encode = (wire: unknown): Uint8Array =>
      Buffer.from(BSON.EJSON.stringify(wire as BSON.Document, { relaxed: false }));
    const good = BSON.EJSON.parse(Buffer.from(encodeFleetMessage(message).data).toString());
    for (const bad of [
      Buffer.from('not json'),
      encode({ ...good, f: 'fleet-change/99' }),
      encode({ ...good, op: 'patch' }),
      encode({ ...good, s: { v: 'nope', o: 'x' } }),
      encode({ ...good, d: { ...good.d, _id: 'other' } }),
    ])
      expect(() => decodeFleetMessage(bad)).toThrow(FleetMessageDecodeError);
  });
});
