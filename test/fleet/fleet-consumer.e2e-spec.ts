import { JetStreamManager } from '@nats-io/jetstream';
import {
  changeSubject,
  decodeFleetMessage,
  encodeFleetMessage,
  ensureDeviceConsumer,
  FleetPositionExpiredError,
  NatsConnectionService,
} from '../../src/lib/fleet';
import { FleetTestServer } from './fleet-test-server';

/** Version n of document `doc-<n>`, so sequence and content line up for the assertions. */
function change(n: number): ReturnType<typeof encodeFleetMessage> {
  const stamp = { v: `00173323000${String(n).padStart(4, '0')}-000000-atlas`, o: 'atlas' };
  return encodeFleetMessage({
    collection: 'orders',
    id: `doc-${n}`,
    op: 'upsert',
    stamp,
    document: { _id: `doc-${n}`, n, _sync: stamp },
  });
}

describe('a device consumer resumes from its persisted stream sequence (real nats-server)', () => {
  let fleet: FleetTestServer;
  let relay: NatsConnectionService;
  let relayJsm: JetStreamManager;
  let published = 0;

  async function publish(count: number): Promise<void> {
    const js = relay.jetstream();
    for (let i = 0; i < count; i++) {
      const m = change(++published);
      await js.publish(changeSubject('orders'), m.data, { msgID: m.msgId, headers: m.headers });
    }
  }

  /**
   * What a device's listener does: ensure its consumer at the persisted position, then
   * fetch, apply and acknowledge. Returns the sequences and document numbers it applied.
   */
  async function applyAsDevice(
    lastApplied: number,
    max: number,
    acknowledge = true,
  ): Promise<{ seqs: number[]; docs: number[] }> {
    const device = fleet.device('device-1');
    await device.connect();
    try {
      await ensureDeviceConsumer(
        await device.jetstreamManager(),
        'SYNC_CHANGES',
        'device-1',
        lastApplied,
      );
      const consumer = await device.jetstream().consumers.get('SYNC_CHANGES', 'device-1');
      const seqs: number[] = [];
      const docs: number[] = [];
      const batch = await consumer.fetch({ max_messages: max, expires: 2000 });
      for await (const msg of batch) {
        seqs.push(msg.seq);
        docs.push(decodeFleetMessage(msg.data).document!.n as number);
        if (acknowledge) await msg.ackAck();
      }
      return { seqs, docs };
    } finally {
      await device.close();
    }
  }

  beforeAll(async () => {
    fleet = await FleetTestServer.start('consumer');
    relay = fleet.relay();
    await relay.connect();
    await relay.provisionStreams();
    relayJsm = await relay.jetstreamManager();
    await publish(10);
  });

  afterAll(async () => {
    await fleet?.destroy();
  });

  it('starts from the beginning, then continues after the persisted sequence on a new connection', async () => {
    const first = await applyAsDevice(0, 4);
    expect(first.seqs).toEqual([1, 2, 3, 4]);
    expect(first.docs).toEqual([1, 2, 3, 4]);
    await publish(5); // while the device is offline

    const second = await applyAsDevice(4, 20);
    expect(second.seqs).toEqual([5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
    const info = await relayJsm.consumers.info('SYNC_CHANGES', 'device-1');
    expect(info.ack_floor.stream_seq).toBe(15);
    expect(info.num_pending).toBe(0);
  });

  it("follows the device's record when the server's acknowledgements differ from it", async () => {
    await publish(5); // 16..20
    // Applied 16..18 but crashed before acknowledging: the server's ack floor stays at 15.
    const unacked = await applyAsDevice(15, 3, false);
    expect(unacked.seqs).toEqual([16, 17, 18]);
    expect((await relayJsm.consumers.info('SYNC_CHANGES', 'device-1')).ack_floor.stream_seq).toBe(
      15,
    );
    // The device persisted 18: it resumes at 19, without waiting for redeliveries of 16..18.
    const resumed = await applyAsDevice(18, 10);
    expect(resumed.seqs).toEqual([19, 20]);
    // A device restored from an older backup (persisted 12) reads 13.. again.
    const restored = await applyAsDevice(12, 3);
    expect(restored.seqs).toEqual([13, 14, 15]);
  });

  it('reports a position retention has dropped, so the device re-baselines', async () => {
    await relayJsm.streams.purge('SYNC_CHANGES', { seq: 18 }); // keeps 18.. (an operator's purge, as age would)
    const device = fleet.device('device-1');
    await device.connect();
    const jsm = await device.jetstreamManager();
    const error = await ensureDeviceConsumer(jsm, 'SYNC_CHANGES', 'device-1', 10).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(FleetPositionExpiredError);
    expect(error).toMatchObject({ stream: 'SYNC_CHANGES', position: 10, firstSequence: 18 });
    // Exactly at the edge is fine: 17 applied, 18 is the first kept.
    await expect(ensureDeviceConsumer(jsm, 'SYNC_CHANGES', 'device-1', 17)).resolves.toMatchObject({
      name: 'device-1',
    });
    await device.close();
  });
});
