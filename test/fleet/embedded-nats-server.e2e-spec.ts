import { existsSync } from 'node:fs';
import { CHANGES_SUBJECTS, changeSubject, NatsConnectionService } from '../../src/lib/fleet';
import { FleetTestServer } from './fleet-test-server';

async function waitFor(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('EmbeddedNatsServer (real nats-server, docs/nats/fleet-server.conf)', () => {
  let fleet: FleetTestServer;
  let relay: NatsConnectionService;

  beforeAll(async () => {
    fleet = await FleetTestServer.start('embedded');
    relay = fleet.relay();
    await relay.connect();
    await relay.provisionStreams();
  });

  afterAll(async () => {
    await fleet?.destroy();
  });

  it('runs JetStream on file storage on a loopback port', async () => {
    expect(fleet.server.running).toBe(true);
    expect(fleet.server.url).toMatch(/^nats:\/\/127\.0\.0\.1:\d+$/);
    const jsm = await relay.jetstreamManager();
    const account = await jsm.getAccountInfo();
    expect(account.streams).toBe(2);
    const info = await jsm.streams.info('SYNC_CHANGES');
    expect(info.config.storage).toBe('file');
    expect(info.config.subjects).toEqual([CHANGES_SUBJECTS]);
  });

  it('keeps stored messages (and their dedup ids) when killed with SIGKILL and restarted on its store', async () => {
    const js = relay.jetstream();
    for (let i = 1; i <= 50; i++)
      await js.publish(changeSubject('items'), `change ${i}`, { msgID: `chaos-${i}` });
    const pidBefore = fleet.server.pid;

    await fleet.server.crash();
    expect(fleet.server.running).toBe(false);
    await waitFor(() => relay.status().state === 'reconnecting', 10_000, 'the client to notice');

    await fleet.server.startAgain();
    expect(fleet.server.pid).not.toBe(pidBefore);
    await waitFor(() => relay.status().state === 'connected', 20_000, 'the client to reconnect');
    expect(relay.status().reconnects).toBeGreaterThanOrEqual(1);

    const jsm = await relay.jetstreamManager();
    const state = (await jsm.streams.info('SYNC_CHANGES')).state;
    expect(state.messages).toBe(50);
    expect(state.last_seq).toBe(50);
    const last = await jsm.streams.getMessage('SYNC_CHANGES', { seq: 50 });
    expect(last?.string()).toBe('change 50');
    // The duplicate window survives too: a replay after the restart is not stored again.
    const replay = await js.publish(changeSubject('items'), 'change 50', { msgID: 'chaos-50' });
    expect(replay.duplicate).toBe(true);
    expect((await jsm.streams.info('SYNC_CHANGES')).state.messages).toBe(50);
  });

  it('removes its process and directory on destroy()', async () => {
    const other = await FleetTestServer.start('destroy');
    const dir = other.server.directory;
    const pid = other.server.pid;
    expect(dir && existsSync(dir)).toBe(true);
    await other.destroy();
    expect(other.server.running).toBe(false);
    expect(existsSync(dir!)).toBe(false);
    expect(() => process.kill(pid!, 0)).toThrow();
  });
});
