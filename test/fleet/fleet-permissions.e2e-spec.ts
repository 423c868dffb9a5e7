import { JetStreamManager } from '@nats-io/jetstream';
import {
  changeSubject,
  ensureDeviceConsumer,
  NatsAuthenticationError,
  NatsConnectionService,
  NatsPermissionError,
  pushSubject,
  REBASELINE_SUBJECTS,
  RELAY_QUEUE_GROUP,
  rebaselineSubject,
  toNatsPermissionError,
} from '../../src/lib/fleet';
import { FleetTestServer } from './fleet-test-server';

/** Runs `operation`, expecting the server to refuse it; returns the typed error. */
async function refusal(operation: () => Promise<unknown>): Promise<NatsPermissionError> {
  try {
    await operation();
  } catch (err) {
    const typed = toNatsPermissionError(err);
    if (typed instanceof NatsPermissionError) return typed;
    throw err;
  }
  throw new Error('the server accepted an operation the permissions should refuse');
}

describe('fleet permissions of docs/nats/fleet-accounts.conf (real nats-server)', () => {
  let fleet: FleetTestServer;
  let relay: NatsConnectionService;
  let device1: NatsConnectionService;
  let relayJsm: JetStreamManager;

  beforeAll(async () => {
    fleet = await FleetTestServer.start('permissions');
    relay = fleet.relay();
    await relay.connect();
    await relay.provisionStreams();
    relayJsm = await relay.jetstreamManager();
    device1 = fleet.device('device-1');
    await device1.connect();
  });

  afterAll(async () => {
    await fleet?.destroy();
  });

  it("accepts a device's push on its own subject", async () => {
    const ack = await device1.jetstream().publish(pushSubject('device-1', 3), 'push', {
      msgID: 'own-push',
    });
    expect(ack.stream).toBe('SYNC_PUSH');
    const stored = await relayJsm.streams.getMessage('SYNC_PUSH', { seq: ack.seq });
    expect(stored?.subject).toBe('sync.push.device-1.3');
  });

  it("refuses a device's push on another device's subject, and stores nothing", async () => {
    const before = (await relayJsm.streams.info('SYNC_PUSH')).state.messages;
    const error = await refusal(() =>
      device1.jetstream().publish(pushSubject('device-2', 3), 'forged push'),
    );
    expect(error).toMatchObject({ operation: 'publish', subject: 'sync.push.device-2.3' });
    expect(error.message).toMatch(/Permissions Violation for Publish to "sync\.push\.device-2\.3"/);
    expect((await relayJsm.streams.info('SYNC_PUSH')).state.messages).toBe(before);
    // The connection survives a refused publish.
    await device1.measureRtt();
    expect(device1.status().state).toBe('connected');
  });

  it('refuses a device publishing on the change subjects (only relays do)', async () => {
    const error = await refusal(() => device1.jetstream().publish(changeSubject('menu'), 'fake'));
    expect(error.subject).toBe('sync.changes.menu');
  });

  it('refuses a device creating, updating, purging or deleting streams', async () => {
    const jsm = await device1.jetstreamManager();
    const create = await refusal(() => jsm.streams.add({ name: 'EVIL', subjects: ['evil.>'] }));
    expect(create).toMatchObject({
      operation: 'jetstream-api',
      subject: '$JS.API.STREAM.CREATE.EVIL',
    });
    const remove = await refusal(() => jsm.streams.delete('SYNC_CHANGES'));
    expect(remove.subject).toBe('$JS.API.STREAM.DELETE.SYNC_CHANGES');
    const purge = await refusal(() => jsm.streams.purge('SYNC_PUSH'));
    expect(purge.subject).toBe('$JS.API.STREAM.PURGE.SYNC_PUSH');
    const update = await refusal(() => jsm.streams.update('SYNC_CHANGES', { max_age: 1 }));
    expect(update.subject).toBe('$JS.API.STREAM.UPDATE.SYNC_CHANGES');
    const names = (await relayJsm.streams.names().next()).sort();
    expect(names).toEqual(['SYNC_CHANGES', 'SYNC_PUSH']);
  });

  it("lets a device manage its own consumer only, and not read another's", async () => {
    const jsm = await device1.jetstreamManager();
    const own = await ensureDeviceConsumer(jsm, 'SYNC_CHANGES', 'device-1', 0);
    expect(own.name).toBe('device-1');
    const other = await refusal(() => ensureDeviceConsumer(jsm, 'SYNC_CHANGES', 'device-2', 0));
    expect(other.subject).toMatch(/^\$JS\.API\.CONSUMER\.(INFO|CREATE)\.SYNC_CHANGES\.device-2/);
    await relayJsm.consumers.add('SYNC_CHANGES', {
      durable_name: 'device-2',
      ack_policy: 'explicit' as never,
    });
    const next = await refusal(() =>
      device1.connection.request('$JS.API.CONSUMER.MSG.NEXT.SYNC_CHANGES.device-2', '1'),
    );
    expect(next.subject).toBe('$JS.API.CONSUMER.MSG.NEXT.SYNC_CHANGES.device-2');
  });

  it('serves re-baseline requests on the own subject only, replies on the device inbox', async () => {
    const relayConnection = relay.connection;
    const served: string[] = [];
    const sub = relayConnection.subscribe(REBASELINE_SUBJECTS, {
      queue: RELAY_QUEUE_GROUP,
      callback: (_err, msg) => {
        served.push(`${msg.subject} -> ${msg.reply}`);
        msg.respond(`page for ${msg.subject}`);
      },
    });
    await relayConnection.flush();
    try {
      const reply = await device1.connection.request(rebaselineSubject('device-1'), 'page 1', {
        timeout: 5000,
      });
      expect(reply.string()).toBe('page for sync.rebaseline.device-1');
      expect(served[0]).toMatch(/^sync\.rebaseline\.device-1 -> _INBOX\.device-1\./);
      const other = await refusal(() =>
        device1.connection.request(rebaselineSubject('device-2'), 'page 1', { timeout: 5000 }),
      );
      expect(other.subject).toBe('sync.rebaseline.device-2');
      expect(served).toHaveLength(1);
    } finally {
      sub.unsubscribe();
    }
  });

  it('refuses a device subscribing to another inbox or to the change subjects', async () => {
    for (const subject of ['_INBOX.device-2.>', 'sync.changes.*', 'sync.push.>']) {
      const sub = device1.connection.subscribe(subject);
      // The subscription ends with the server's permission violation as its result.
      const ended = await sub.closed.catch((err: unknown) => err);
      expect(toNatsPermissionError(ended)).toMatchObject({ operation: 'subscribe', subject });
    }
    expect(device1.status().state).toBe('connected');
  });

  it('gives a device with wrong credentials a typed error that names no secret', async () => {
    const password = 'not-the-password-4711';
    const wrong = fleet.device('device-2', { password });
    const error = await wrong.connect().then(
      () => undefined,
      (err: unknown) => err as Error,
    );
    expect(error).toBeInstanceOf(NatsAuthenticationError);
    expect(error).toMatchObject({ user: 'device-2' });
    expect(error!.message).toMatch(/refused the credentials \(user-password of user "device-2"\)/);
    expect(error!.message).toMatch(/Authorization Violation/);
    expect(error!.message).not.toContain(password);
    expect(error!.message).not.toContain(fleet.passwords['device-2']);
    const status = wrong.status();
    expect(status).toMatchObject({
      state: 'closed',
      user: 'device-2',
      authMethod: 'user-password',
    });
    expect(JSON.stringify(status)).not.toContain(password);
  });
});
