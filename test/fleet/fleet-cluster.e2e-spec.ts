import { join } from 'node:path';
import { findFreePort } from '../../src/dev-servers/embedded-mongo-server';
import {
  EmbeddedNatsServer,
  fleetServerConfigFile,
} from '../../src/dev-servers/embedded-nats-server';
import { natsConfigString } from '../../src/dev-servers/nats-config-render';
import { changeSubject, NatsConnectionService, resolveFleetConfig } from '../../src/lib/fleet';

/** Retries `operation` while the cluster elects its leaders (JetStream answers 503 meanwhile). */
async function eventually<T>(operation: () => Promise<T>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await operation();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

describe('docs/nats/cluster-node-{1,2,3}.conf form a JetStream cluster (3 real nats-servers)', () => {
  const nodes: EmbeddedNatsServer[] = [];
  let relay: NatsConnectionService;
  const password = 'cluster-relay-secret';

  beforeAll(async () => {
    const routePorts = [await findFreePort(), await findFreePort(), await findFreePort()];
    const routes = routePorts.map((p) => `nats-route://127.0.0.1:${p}`);
    const env = {
      FLEET_RELAY_PASSWORD: natsConfigString(password),
      FLEET_DEVICE_1_PASSWORD: natsConfigString('d1'),
      FLEET_DEVICE_2_PASSWORD: natsConfigString('d2'),
      FLEET_DEVICE_3_PASSWORD: natsConfigString('d3'),
    };
    const docs = join(fleetServerConfigFile(), '..');
    for (let n = 1; n <= 3; n++) {
      nodes.push(
        await EmbeddedNatsServer.start({
          name: `cluster-n${n}`,
          configFile: join(docs, `cluster-node-${n}.conf`),
          configEnv: env,
          configValues: { 'cluster.port': routePorts[n - 1], 'cluster.routes': routes },
          startTimeoutMs: 30_000,
        }),
      );
    }
    relay = new NatsConnectionService(
      resolveFleetConfig({
        transport: 'nats',
        role: 'relay',
        servers: nodes.map((n) => n.url),
        user: 'relay',
        password,
        streamReplicas: 3,
        reconnectTimeWait: 100,
      }),
    );
    await relay.connect();
  });

  afterAll(async () => {
    await relay?.close();
    for (const node of nodes) await node.destroy();
  });

  it('keeps a 3-replica stream writable and complete while one node is down', async () => {
    const results = await eventually(() => relay.provisionStreams(), 30_000);
    expect(results.map((r) => r.action)).toEqual(['created', 'created']);
    const jsm = await relay.jetstreamManager();
    const info = await jsm.streams.info('SYNC_CHANGES');
    expect(info.config.num_replicas).toBe(3);
    expect(info.cluster?.replicas).toHaveLength(2);

    const js = relay.jetstream();
    for (let i = 1; i <= 20; i++)
      await eventually(
        () => js.publish(changeSubject('items'), `c${i}`, { msgID: `c${i}` }),
        15_000,
      );

    // Take down the node that leads the stream: the other two elect a new leader.
    const leader = info.cluster?.leader;
    const victim = nodes.find((n) => leader?.endsWith(`-${n.port}`)) ?? nodes[0];
    await victim.crash();
    for (let i = 21; i <= 40; i++)
      await eventually(
        () => js.publish(changeSubject('items'), `c${i}`, { msgID: `c${i}` }),
        20_000,
      );
    const during = await eventually(() => jsm.streams.info('SYNC_CHANGES'), 20_000);
    expect(during.state.messages).toBe(40);

    await victim.startAgain();
    const after = await eventually(async () => {
      const i = await jsm.streams.info('SYNC_CHANGES');
      if (!i.cluster?.replicas?.every((r) => r.current)) throw new Error('replica not current yet');
      return i;
    }, 30_000);
    expect(after.state.messages).toBe(40);
  });
});
