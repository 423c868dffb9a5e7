import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect as connectTcp } from 'node:net';
import { join, resolve } from 'node:path';
import { Logger } from '@nestjs/common';
import { embeddedServerTempRoot, findFreePort } from './embedded-mongo-server';
import { NatsConfigValues, renderNatsConfig } from './nats-config-render';

/** Options of one embedded nats-server. */
export interface EmbeddedNatsServerOptions {
  /**
   * A nats-server configuration file (accounts, users, permissions), rendered with
   * `renderNatsConfig()` into the server's directory with `host`, `port`,
   * `jetstream.store_dir` and `server_name` replaced, so the file must set all four. Default:
   * none, so JetStream with no authentication.
   */
  configFile?: string;
  /** More values to replace in `configFile` (e.g. `cluster.port`, `cluster.routes`). */
  configValues?: NatsConfigValues;
  /** Variables the configuration file reads from the environment (`$NAME`), e.g. passwords. */
  configEnv?: Record<string, string>;
  /** Loopback port. Default: a free port chosen at start, kept across `restart()`. */
  port?: number;
  /**
   * JetStream store directory. Default: a directory inside the server's own temp directory,
   * removed by `destroy()`. Kept across `stop()`/`crash()` and `startAgain()`.
   */
  storePath?: string;
  /** The nats-server binary. Default: `NATS_SERVER_BIN`, else `.tools/bin/nats-server`. */
  binary?: string;
  /** Label used in logs, the temp directory name and the server name. */
  name?: string;
  /** Milliseconds to wait for the server to accept connections. Default 20000. */
  startTimeoutMs?: number;
  /** Kill the server at once when this process gets SIGINT/SIGTERM/SIGHUP (default true). */
  killOnSignal?: boolean;
}

const PROJECT_ROOT = resolve(__dirname, '..', '..');
const READY_LINE = 'Server is ready';

/** The nats-server binary fleet mode runs (what `scripts/install-nats-server.js` installs). */
export function defaultNatsServerBinary(): string {
  return process.env.NATS_SERVER_BIN || join(PROJECT_ROOT, '.tools', 'bin', 'nats-server');
}

/** The single-server configuration of docs/nats, the one the docs describe and the tests run. */
export function fleetServerConfigFile(): string {
  return join(PROJECT_ROOT, 'docs', 'nats', 'fleet-server.conf');
}

/**
 * Installs the pinned nats-server when it is missing (the installer returns at once when it
 * is there), so dev servers start on a fresh clone. A binary given by NATS_SERVER_BIN is the
 * user's to install.
 */
export function ensureNatsServerInstalled(): void {
  if (process.env.NATS_SERVER_BIN) return;
  const installer = join(PROJECT_ROOT, 'scripts', 'install-nats-server.js');
  const result = spawnSync(process.execPath, [installer], { stdio: 'inherit' });
  if (result.status !== 0)
    throw new Error(
      `could not install nats-server (${installer} exited with ${result.status ?? result.error?.message})`,
    );
}

/** Linux kills the child when its parent dies, so a killed test runner leaves no server. */
const PDEATHSIG_WRAPPER = '/usr/bin/setpriv';

const live = new Set<EmbeddedNatsServer>();
let exitHooksInstalled = false;

function installExitHooks(): void {
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  process.on('exit', () => {
    for (const server of live) server.killNow();
  });
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const handler = (): void => {
      for (const server of live) server.onSignal();
      process.removeListener(signal, handler);
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    };
    process.on(signal, handler);
  }
}

/**
 * A real nats-server with JetStream on file storage, run as a child process on a loopback
 * port. Its files live in a temp directory under the same root as the embedded MongoDB
 * servers' (named `<pid>-nats-…`), so the test run's stale-directory sweep and leak check
 * cover it. Used by the fleet tests and, later, the dev servers.
 */
export class EmbeddedNatsServer {
  private readonly logger: Logger;
  private child?: ChildProcess;
  private exited?: Promise<void>;
  private logTail = '';
  private ownDir?: string;
  private readonly storeDir: string;
  private portNumber = 0;

  private constructor(private readonly options: EmbeddedNatsServerOptions) {
    this.logger = new Logger(`${EmbeddedNatsServer.name}:${options.name ?? 'nats'}`);
    installExitHooks();
    const root = embeddedServerTempRoot();
    mkdirSync(root, { recursive: true });
    this.ownDir = mkdtempSync(join(root, `${process.pid}-nats-${options.name ?? 'server'}-`));
    this.storeDir = options.storePath ?? join(this.ownDir, 'jetstream');
  }

  static async start(options: EmbeddedNatsServerOptions = {}): Promise<EmbeddedNatsServer> {
    const server = new EmbeddedNatsServer(options);
    live.add(server);
    try {
      await server.launch(options.port);
    } catch (err) {
      await server.destroy();
      throw err;
    }
    return server;
  }

  get port(): number {
    return this.portNumber;
  }

  /** Client URL (no credentials in it). */
  get url(): string {
    return `nats://127.0.0.1:${this.portNumber}`;
  }

  get running(): boolean {
    return !!this.child && this.child.exitCode === null && this.child.signalCode === null;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** The JetStream store directory (kept across restarts, removed by `destroy()` when own). */
  get storePath(): string {
    return this.storeDir;
  }

  /** The directory holding this server's files (removed by `destroy()`). */
  get directory(): string | undefined {
    return this.ownDir;
  }

  /** The last lines the server logged (for failure messages). */
  get recentLog(): string {
    return this.logTail;
  }

  private async launch(fixedPort?: number): Promise<void> {
    const attempts = fixedPort ? 1 : 3;
    let lastError: unknown;
    for (let attempt = 1; attempt <= attempts; attempt++) {
      const port = fixedPort ?? (await findFreePort());
      try {
        await this.spawnOn(port);
        this.portNumber = port;
        return;
      } catch (err) {
        lastError = err;
        await this.signalAndWait('SIGKILL');
      }
    }
    throw lastError;
  }

  private async spawnOn(port: number): Promise<void> {
    const o = this.options;
    const binary = o.binary ?? defaultNatsServerBinary();
    if (!existsSync(binary)) {
      throw new Error(
        `nats-server is not installed (${binary} missing): run "npm run nats-server:install"`,
      );
    }
    if (o.configFile && !existsSync(o.configFile)) {
      throw new Error(`nats-server configuration ${o.configFile} does not exist`);
    }
    mkdirSync(this.storeDir, { recursive: true });
    const serverName = `embedded-${o.name ?? 'nats'}-${port}`;
    let serverArgs: string[];
    if (o.configFile) {
      const rendered = join(this.ownDir ?? this.storeDir, 'nats-server.conf');
      writeFileSync(
        rendered,
        renderNatsConfig(o.configFile, {
          server_name: serverName,
          host: '127.0.0.1',
          port,
          'jetstream.store_dir': this.storeDir,
          ...o.configValues,
        }),
      );
      serverArgs = ['-c', rendered];
    } else {
      serverArgs = [
        '-a',
        '127.0.0.1',
        '-p',
        String(port),
        '-js',
        '-sd',
        this.storeDir,
        '-n',
        serverName,
      ];
    }
    const wrapped = existsSync(PDEATHSIG_WRAPPER);
    const command = wrapped ? PDEATHSIG_WRAPPER : binary;
    const args = wrapped ? ['--pdeathsig', 'KILL', '--', binary, ...serverArgs] : serverArgs;

    this.logTail = '';
    const child = spawn(command, args, {
      cwd: this.ownDir,
      env: { ...process.env, ...o.configEnv },
      stdio: ['ignore', 'ignore', 'pipe'],
      detached: o.killOnSignal === false,
    });
    this.child = child;
    let ready = false;
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      this.logTail = (this.logTail + chunk).slice(-8000);
      if (!ready && this.logTail.includes(READY_LINE)) ready = true;
    });
    this.exited = new Promise((res) => child.once('exit', () => res()));
    child.unref();
    (child.stderr as unknown as { unref?: () => void })?.unref?.();

    const timeoutMs = o.startTimeoutMs ?? 20_000;
    const deadline = Date.now() + timeoutMs;
    // "Server is ready" comes after JetStream has recovered its streams; the INFO line then
    // proves the listener accepts clients on the port we chose.
    while (Date.now() < deadline) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(
          `nats-server exited during start (code ${child.exitCode}, signal ${child.signalCode}): ${this.logTail.trim().slice(-1500)}`,
        );
      }
      if (ready && (await acceptsClients(port))) {
        this.logger.debug(`ready on port ${port}, store ${this.storeDir}`);
        return;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(
      `nats-server did not accept connections on port ${port} within ${timeoutMs} ms: ${this.logTail.trim().slice(-1500)}`,
    );
  }

  private async signalAndWait(signal: NodeJS.Signals, graceMs = 5000): Promise<void> {
    const child = this.child;
    if (!child || !this.running) return;
    child.kill(signal);
    // The child is unref'd; this ref'd timer keeps the process alive until it has exited.
    const timer = setTimeout(() => child.kill('SIGKILL'), signal === 'SIGKILL' ? 60_000 : graceMs);
    await this.exited;
    clearTimeout(timer);
  }

  /** Called on SIGINT/SIGTERM/SIGHUP: kills at once unless `killOnSignal` is false. */
  onSignal(): void {
    if (this.options.killOnSignal !== false) this.killNow();
  }

  /** Kills the process at once (SIGKILL), synchronously, and removes its files. Used on exit. */
  killNow(): void {
    if (this.running) this.child?.kill('SIGKILL');
    if (this.ownDir) rmSync(this.ownDir, { recursive: true, force: true });
  }

  /** Stops the server gracefully (SIGTERM, SIGKILL after 5 s); the store and port are kept. */
  async stop(): Promise<void> {
    await this.signalAndWait('SIGTERM');
  }

  /** Kills the server with SIGKILL, as a crash would; the store and port are kept. */
  async crash(): Promise<void> {
    await this.signalAndWait('SIGKILL');
  }

  /** Starts a stopped or crashed server again on the same port and store. */
  async startAgain(): Promise<void> {
    if (this.running) return;
    await this.launch(this.portNumber);
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.startAgain();
  }

  /** Stops the server and removes every file it had. Idempotent. */
  async destroy(): Promise<void> {
    await this.signalAndWait('SIGTERM');
    live.delete(this);
    if (this.ownDir) rmSync(this.ownDir, { recursive: true, force: true });
    this.ownDir = undefined;
  }
}

/** True when a NATS server on the port sends its INFO greeting. */
function acceptsClients(port: number): Promise<boolean> {
  return new Promise((done) => {
    const socket = connectTcp({ host: '127.0.0.1', port });
    let received = '';
    const finish = (ok: boolean): void => {
      socket.destroy();
      done(ok);
    };
    socket.setTimeout(1000, () => finish(false));
    socket.on('error', () => finish(false));
    socket.on('data', (chunk) => {
      received += chunk.toString('utf8');
      if (received.startsWith('INFO ')) finish(true);
    });
  });
}
