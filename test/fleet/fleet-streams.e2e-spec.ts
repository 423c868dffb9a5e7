import { BSON, Binary, Decimal128, Double, Int32, Long, ObjectId, Timestamp, UUID } from 'mongodb';
import {
  changeSubject,
  collectionOfChangeSubject,
  decodeFleetMessage,
  encodeFleetMessage,
  FleetChangeMessage,
  FleetStreamConfigError,
  NatsConnectionService,
  provisionStream,
  pushStreamConfig,
  resolveFleetConfig,
} from '../../src/lib/fleet';
import { Test } from '@nestjs/testing';
import { FleetModule, FLEET_CONFIG, ResolvedFleetConfig } from '../../src/lib/fleet';
import { FleetTestServer } from './fleet-test-server';

const STAMP = { v: '001733230000000-000001-device-1', o: 'device-1' };

function upsert(
  collection: string,
  document: Record<string, unknown>,
  v = STAMP.v,
): FleetChangeMessage {
  const stamp = { v, o: STAMP.o };
  return {
    collection,
    id: document._id,
    op: 'upsert',
    stamp,
    document: { ...document, _sync: stamp },
  };
}

describe('fleet streams and messages (real nats-server)', () => {
  let fleet: FleetTestServer;
  let relay: NatsConnectionService;

  beforeAll(async () => {
    fleet = await FleetTestServer.start('streams');
    relay = fleet.relay();
    await relay.connect();
  });

  afterAll(async () => {
    await fleet?.destroy();
  });

  it('provisions both streams idempotently, as documented', async () => {
    const first = await relay.provisionStreams();
    expect(first.map((r) => [r.name, r.action])).toEqual([
      ['SYNC_CHANGES', 'created'],
      ['SYNC_PUSH', 'created'],
    ]);
    const second = await relay.provisionStreams();
    expect(second.map((r) => r.action)).toEqual(['unchanged', 'unchanged']);

    const jsm = await relay.jetstreamManager();
    const changes = (await jsm.streams.info('SYNC_CHANGES')).config;
    expect(changes).toMatchObject({
      subjects: ['sync.changes.*'],
      retention: 'limits',
      storage: 'file',
      discard: 'old',
      max_age: 7 * 24 * 3600 * 1e9,
      max_bytes: 1024 ** 3,
      duplicate_window: 5 * 60 * 1e9,
      deny_delete: true,
    });
    const push = (await jsm.streams.info('SYNC_PUSH')).config;
    expect(push).toMatchObject({
      subjects: ['sync.push.>'],
      retention: 'workqueue',
      storage: 'file',
      discard: 'new',
      max_age: 0,
    });
    expect((await jsm.streams.list().next()).length).toBe(2);
  });

  it('updates a changed limit in place and refuses a retention it cannot change', async () => {
    const shorter = fleet.relay({ changesMaxAge: 3600_000 });
    await shorter.connect();
    const results = await shorter.provisionStreams();
    expect(results[0]).toEqual({ name: 'SYNC_CHANGES', action: 'updated', changed: ['max_age'] });
    expect(results[1].action).toBe('unchanged');
    const jsm = await relay.jetstreamManager();
    expect((await jsm.streams.info('SYNC_CHANGES')).config.max_age).toBe(3600 * 1e9);
    await relay.provisionStreams(); // back to the default

    await jsm.streams.add({ name: 'LEGACY_PUSH', subjects: ['legacy.push.>'] });
    const desired = pushStreamConfig(resolveFleetConfig({ pushStream: 'LEGACY_PUSH' }));
    await expect(provisionStream(jsm, desired)).rejects.toThrow(FleetStreamConfigError);
    await expect(provisionStream(jsm, desired)).rejects.toThrow(/retention "limits".*"workqueue"/);
    await jsm.streams.delete('LEGACY_PUSH');
  });

  it('stores a message published twice with the same id once', async () => {
    const js = relay.jetstream();
    const jsm = await relay.jetstreamManager();
    const before = (await jsm.streams.info('SYNC_CHANGES')).state.messages;
    const message = upsert('menu', { _id: new ObjectId(), name: 'Soup' });
    const encoded = encodeFleetMessage(message);
    const again = encodeFleetMessage({ ...message, id: new ObjectId(String(message.id)) });
    expect(again.msgId).toBe(encoded.msgId);

    const subject = changeSubject('menu');
    const opts = { msgID: encoded.msgId, headers: encoded.headers };
    const a = await js.publish(subject, encoded.data, opts);
    const b = await js.publish(subject, again.data, { msgID: again.msgId, headers: again.headers });
    expect(a.duplicate).toBe(false);
    expect(b.duplicate).toBe(true);
    expect(b.seq).toBe(a.seq);
    // The next version of the same document is a new message.
    const next = encodeFleetMessage(
      upsert('menu', { _id: message.id, name: 'Soup' }, '001733230000001-000000-device-1'),
    );
    expect(next.msgId).not.toBe(encoded.msgId);
    expect((await js.publish(subject, next.data, { msgID: next.msgId })).duplicate).toBe(false);
    expect((await jsm.streams.info('SYNC_CHANGES')).state.messages).toBe(before + 2);
  });

  it('round-trips BSON types, the stamp and the base through the stream', async () => {
    const document = {
      _id: new ObjectId(),
      at: new Date('2026-12-03T12:34:56.789Z'),
      price: Decimal128.fromString('12.3400'),
      count: new Int32(7),
      ratio: new Double(1.5),
      big: Long.fromString('9007199254740993'),
      bytes: new Binary(Buffer.from([0, 1, 2, 255])),
      uuid: new UUID(),
      ts: new Timestamp({ t: 1733230000, i: 3 }),
      nested: { list: [new ObjectId(), null, 'x', { deep: new Date(0) }] },
      'odd.key': true,
    };
    const message: FleetChangeMessage = {
      ...upsert('menu.items v2', document),
      base: '001733220000000-000000-atlas',
    };
    const tombstone: FleetChangeMessage = {
      collection: 'menu.items v2',
      id: { compound: new ObjectId(), n: 1 },
      op: 'delete',
      stamp: { v: '001733230000002-000000-device-1', o: 'device-1' },
      base: null,
    };
    const js = relay.jetstream();
    const seqs: number[] = [];
    for (const m of [message, tombstone]) {
      const encoded = encodeFleetMessage(m);
      const subject = changeSubject(m.collection);
      expect(subject).toBe('sync.changes.menu%2Eitems%20v2');
      seqs.push(
        (
          await js.publish(subject, encoded.data, {
            msgID: encoded.msgId,
            headers: encoded.headers,
          })
        ).seq,
      );
    }
    const jsm = await relay.jetstreamManager();
    const stored = await jsm.streams.getMessage('SYNC_CHANGES', { seq: seqs[0] });
    expect(collectionOfChangeSubject(stored!.subject)).toBe('menu.items v2');
    expect(stored!.header.get('Sync-Version')).toBe(STAMP.v);
    expect(stored!.header.get('Sync-Origin')).toBe('device-1');
    const decoded = decodeFleetMessage(stored!.data);
    // Exactly what the MongoDB driver returns for the same BSON: the engine sees the same
    // values in fleet mode as in direct mode, and writing them gives the same bytes.
    const asDriverReturnsIt = BSON.deserialize(BSON.serialize(message.document!));
    expect(decoded.document).toEqual(asDriverReturnsIt);
    expect(Buffer.from(BSON.serialize(decoded.document!))).toEqual(
      Buffer.from(BSON.serialize(asDriverReturnsIt)),
    );
    expect(decoded.document!.big).toBeInstanceOf(Long); // beyond 2^53: kept exact
    expect(decoded.document!.big.toString()).toBe('9007199254740993');
    expect(decoded.document!.ratio).toBe(1.5);
    expect(decoded.document!.count).toBe(7);
    expect(decoded.document!.price).toBeInstanceOf(Decimal128);
    expect(decoded.document!.price.toString()).toBe('12.3400');
    expect(decoded.document!.at).toEqual(document.at);
    expect(decoded.id).toBeInstanceOf(ObjectId);
    expect(decoded).toMatchObject({
      collection: 'menu.items v2',
      op: 'upsert',
      stamp: message.stamp,
      base: message.base,
    });

    const deleted = decodeFleetMessage(
      (await jsm.streams.getMessage('SYNC_CHANGES', { seq: seqs[1] }))!.data,
    );
    expect(deleted).toEqual(tombstone);
    expect(deleted.document).toBeUndefined();
  });

  it('FleetModule provides the validated config and the connection, closed on shutdown', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [
        FleetModule.forRoot({
          transport: 'nats',
          role: 'relay',
          servers: [fleet.server.url],
          user: 'relay',
          password: fleet.passwords.relay,
        }),
      ],
    }).compile();
    const app = moduleRef.createNestApplication({ logger: false });
    await app.init();
    const config = app.get<ResolvedFleetConfig>(FLEET_CONFIG);
    expect(config.enabled).toBe(true);
    const connection = app.get(NatsConnectionService);
    await connection.connect();
    expect(await connection.measureRtt()).toBeGreaterThanOrEqual(0);
    expect(connection.status()).toMatchObject({ state: 'connected', user: 'relay' });
    expect(JSON.stringify(connection.status())).not.toContain(fleet.passwords.relay);
    await app.close();
    expect(connection.status().state).toBe('closed');
  });
});
