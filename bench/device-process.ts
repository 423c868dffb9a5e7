/**
 * A sync process for the benchmark: runs one or more devices (each a Nest
 * application with the sync module, as `test/support/sync-device.ts` builds
 * it) and reports its own resident memory and CPU time to the parent over
 * IPC, so footprint figures are this process's alone. Started by
 * `bench/lib/device-host.ts`; never run by hand.
 */
import type { MongoClient } from 'mongodb';
import { SyncStoresService } from '../src/lib/metadata/sync-stores.service';
import { MonitorService } from '../src/lib/monitor/monitor.service';
import { SyncDevice } from '../test/support/sync-device';
import type { ChildMessage, CommandStats, DeviceSpec, ParentMessage } from './lib/protocol';

const devices: SyncDevice[] = [];
const commandStats: CommandStats = {};
let stopping = false;

function send(message: ChildMessage, then?: () => void): void {
  if (!process.connected) return then?.();
  process.send!(message, undefined, {}, () => then?.());
}

function sample(): void {
  const cpu = process.cpuUsage();
  const mem = process.memoryUsage();
  send({
    type: 'sample',
    at: Date.now(),
    rss: mem.rss,
    heapUsed: mem.heapUsed,
    heapTotal: mem.heapTotal,
    external: mem.external,
    cpuUser: cpu.user,
    cpuSystem: cpu.system,
    synced: devices.reduce(
      (sum, d) => {
        const monitor = d.get(MonitorService);
        sum.localToAtlas += monitor.successful('localToAtlas');
        sum.atlasToLocal += monitor.successful('atlasToLocal');
        return sum;
      },
      { localToAtlas: 0, atlasToLocal: 0 },
    ),
    appliedByDevice: Object.fromEntries(
      devices.map((d) => [
        d.opts.instanceId ?? '',
        d.get(MonitorService).successful('atlasToLocal'),
      ]),
    ),
  });
}

function withMonitoring(uri: string): string {
  return `${uri}${uri.includes('?') ? '&' : '?'}monitorCommands=true`;
}

function monitor(client: MongoClient, side: string): void {
  const started = new Map<number, string>();
  client.on('commandStarted', (e) => {
    const cmd = e.command as Record<string, unknown>;
    const target = cmd[e.commandName];
    const pipeline = cmd.pipeline as Record<string, unknown>[] | undefined;
    const what =
      e.commandName === 'aggregate' && pipeline?.[0]?.$changeStream
        ? 'changeStream'
        : e.commandName === 'getMore'
          ? String(cmd.collection ?? '')
          : typeof target === 'string'
            ? target
            : '';
    started.set(e.requestId, `${side} ${e.commandName} ${what}`.trim());
  });
  const done = (e: { requestId: number; duration: number }): void => {
    const key = started.get(e.requestId);
    if (!key) return;
    started.delete(e.requestId);
    const s = (commandStats[key] ??= { count: 0, totalMs: 0, maxMs: 0 });
    s.count++;
    s.totalMs += e.duration;
    s.maxMs = Math.max(s.maxMs, e.duration);
  };
  client.on('commandSucceeded', done);
  client.on('commandFailed', done);
}

/** Waits until both streams run and both resume tokens are stored (offline/online cycles rely on them). */
async function ready(device: SyncDevice, instanceId: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const health = await device.sync.checkBidirectionalHealth();
    const tokens = await device.db.collection<{ _id: string }>('_sync_metadata').countDocuments({
      _id: { $in: [`resume:${instanceId}:local`, `resume:${instanceId}:atlas`] },
    });
    if (
      health.atlasListener.connected &&
      health.localCapture.connected &&
      (health.rebaseline as { state?: string }).state !== 'running' &&
      tokens === 2
    )
      return;
    if (Date.now() > deadline)
      throw new Error(`device ${instanceId} not ready after ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function startDevice(
  spec: DeviceSpec,
  monitorCommands: boolean,
  readyTimeoutMs: number,
): Promise<void> {
  const device = await SyncDevice.start({
    localUri: monitorCommands ? withMonitoring(spec.localUri) : spec.localUri,
    localDbName: spec.localDbName,
    atlasUri: monitorCommands ? withMonitoring(spec.atlasUri) : spec.atlasUri,
    atlasDbName: spec.atlasDbName,
    instanceId: spec.instanceId,
    options: spec.options,
  });
  devices.push(device);
  if (monitorCommands) {
    monitor(device.connection.getClient() as unknown as MongoClient, 'local');
    monitor(device.get(SyncStoresService).atlasClient, 'atlas');
  }
  await ready(device, spec.instanceId, readyTimeoutMs);
}

async function start(msg: Extract<ParentMessage, { type: 'start' }>): Promise<void> {
  const t0 = performance.now();
  for (let i = 0; i < msg.devices.length; i += msg.concurrency) {
    await Promise.all(
      msg.devices
        .slice(i, i + msg.concurrency)
        .map((d) => startDevice(d, msg.monitorCommands, msg.readyTimeoutMs)),
    );
  }
  send({
    type: 'ready',
    startMs: performance.now() - t0,
    monoUs: Number(process.hrtime.bigint() / 1000n),
  });
}

async function stop(graceful: boolean): Promise<void> {
  if (stopping) return;
  stopping = true;
  if (graceful) await Promise.all(devices.map((d) => d.close().catch(() => undefined)));
  send({ type: 'stopped', commandStats }, () => process.exit(0));
}

process.on('message', (msg: ParentMessage) => {
  if (msg.type === 'start')
    start(msg).catch((err) =>
      send({ type: 'error', message: String((err as Error)?.stack ?? err) }),
    );
  else if (msg.type === 'stats')
    send({ type: 'stats', commandStats: structuredClone(commandStats) });
  else if (msg.type === 'stop') void stop(msg.graceful);
});
// The parent stops us; a Ctrl-C in the terminal must not kill us halfway through a close.
process.on('SIGINT', () => undefined);
// Parent gone: nobody will ever stop us.
process.on('disconnect', () => process.exit(1));
setInterval(sample, 200);
sample();
