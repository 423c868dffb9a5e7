/**
 * A sync process for the benchmark: runs one or more devices (each a Nest
 * application with the sync module, as `test/support/sync-device.ts` builds
 * it) and reports its own resident memory and CPU time to the parent over
 * IPC, so footprint figures are this process's alone. Started by
 * `bench/lib/device-host.ts`; never run by hand.
 */
import { MongoClient } from 'mongodb';
import { MonitorService } from '../src/lib/monitor/monitor.service';
import { SyncDevice } from '../test/support/sync-device';
import { asHarness, CommandCounters } from './lib/command-counters';
import type { ChildMessage, DeviceSpec, ParentMessage, ServerSide } from './lib/protocol';

const devices: SyncDevice[] = [];
const counters = new CommandCounters();
const commandStats = counters.stats;
let stopping = false;

function send(message: ChildMessage, then?: () => void): void {
  if (!process.connected) return then?.();
  process.send!(message, undefined, {}, () => then?.());
}

function sample(requested = false): void {
  const cpu = process.cpuUsage();
  const mem = process.memoryUsage();
  send({
    type: 'sample',
    requested,
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
    commands: commandStats,
  });
}

/** Client names that tell the counters which server a client talks to. */
const APP_NAMES: Record<string, ServerSide> = {
  'bench-device-local': 'local',
  'bench-device-atlas': 'atlas',
};

function withMonitoring(uri: string): string {
  return `${uri}${uri.includes('?') ? '&' : '?'}monitorCommands=true&appName=bench-device-local`;
}

/**
 * Benchmark instrumentation. The module creates its Atlas client itself
 * (SyncStoresService) and the host's Mongoose connection connects while the
 * application is compiled, both before a device could reach them; the
 * commands they send from their first one on (index builds, the opening
 * aggregate of each change stream) must be counted. So every client that
 * connects in this process and carries one of the names above gets the
 * counters first. `connect()` is where both the driver's auto-connect and
 * Mongoose's `openUri` go through.
 */
function countCommandsOfNamedClients(): void {
  const connect = MongoClient.prototype.connect;
  const attached = new WeakSet<MongoClient>();
  MongoClient.prototype.connect = function (this: MongoClient) {
    const side = APP_NAMES[this.options.appName ?? ''];
    if (side && !attached.has(this)) {
      attached.add(this);
      counters.attach(this, side);
    }
    return connect.call(this);
  } as typeof connect;
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
  // The module passes `atlasClientOptions` to its Atlas client: monitoring and the name go in there.
  const options = monitorCommands
    ? {
        ...spec.options,
        atlasClientOptions: {
          ...spec.options?.atlasClientOptions,
          monitorCommands: true,
          appName: 'bench-device-atlas',
        },
      }
    : spec.options;
  const device = await SyncDevice.start({
    localUri: monitorCommands ? withMonitoring(spec.localUri) : spec.localUri,
    localDbName: spec.localDbName,
    atlasUri: spec.atlasUri,
    atlasDbName: spec.atlasDbName,
    instanceId: spec.instanceId,
    options,
  });
  devices.push(device);
  // The readiness polls (health, token count) are the benchmark's, not the engine's.
  await asHarness(() => ready(device, spec.instanceId, readyTimeoutMs));
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
  else if (msg.type === 'sample') sample(true);
  else if (msg.type === 'stop') void stop(msg.graceful);
});
// The parent stops us; a Ctrl-C in the terminal must not kill us halfway through a close.
process.on('SIGINT', () => undefined);
// Parent gone: nobody will ever stop us.
process.on('disconnect', () => process.exit(1));
countCommandsOfNamedClients();
setInterval(sample, 200);
sample();
