import { Decimal128, ObjectId } from 'mongodb';
import { FleetMessageDecodeError } from './fleet.errors';
import {
  decodeRebaselinePayload,
  encodeRebaselinePayload,
  RebaselineReply,
  RebaselineRequest,
} from './fleet-rebaseline.protocol';

describe('fleet re-baseline protocol', () => {
  it('round-trips requests and pages with their BSON types, as the driver returns them', () => {
    const id = new ObjectId();
    const request: RebaselineRequest = {
      op: 'page',
      collection: 'orders',
      bracket: JSON.stringify({ $type: ['objectId'] }),
      after: { id },
    };
    const decoded = decodeRebaselinePayload<typeof request>(encodeRebaselinePayload(request));
    expect(decoded.after?.id).toEqual(id);
    expect(JSON.parse(decoded.bracket!)).toEqual({ $type: ['objectId'] });
    const reply: RebaselineReply = {
      seq: 42,
      result: [{ _id: id, total: Decimal128.fromString('1.50'), n: 3, at: new Date(5) }],
    };
    const back = decodeRebaselinePayload<RebaselineReply>(encodeRebaselinePayload(reply));
    expect(back.seq).toBe(42);
    const [doc] = back.result as Record<string, unknown>[];
    expect(doc._id).toEqual(id);
    expect(doc.total).toBeInstanceOf(Decimal128);
    expect(doc.n).toBe(3);
    expect(doc.at).toEqual(new Date(5));
  });

  it('writes an undefined field as null (readers treat both alike) and refuses other formats', () => {
    const decoded = decodeRebaselinePayload<{
      op: 'tombstones';
      collection: string;
      after?: string | null;
    }>(encodeRebaselinePayload({ op: 'tombstones', collection: 'c', after: undefined }));
    expect(decoded.after ?? undefined).toBeUndefined();
    expect(() => decodeRebaselinePayload(Buffer.from('{"f":"other","p":{}}'))).toThrow(
      FleetMessageDecodeError,
    );
    expect(() => decodeRebaselinePayload(Buffer.from('not json'))).toThrow(FleetMessageDecodeError);
  });
});
