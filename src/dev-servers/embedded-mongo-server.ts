import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Logger } from '@nestjs/common';
import { MongoClient } from 'mongodb';

/** Options of one embedded SecantusDB server. */
export interface EmbeddedMongoServerOptions {
  /** `memory` (default) loses everything on stop; `disk` keeps data across `restart()`. */
  storage?: 'memory' | 'disk';
  /** Data directory for `disk` storage. Default: a new temp directory, removed by `destroy()`. */
  storagePath?: string;
  /** Loopback port. Default: a free port chosen at start. */
  port?: number;
  /** Oplog wall-clock retention in seconds (server default 3600). Small values force history loss. */
  oplogRetentionSeconds?: number;
  /** Oplog entry cap (server default 100000). */
  oplogMaxEntries?: number;
  /**
   * WiredTiger cache, e.g. `'4G'` (server default `'1G'`). With `memory` storage it bounds all
   * data and oplog: past it writes fail with `InternalError`.
   */
  cacheSize?: string;
  /** Seconds between no-op oplog heartbeats, so idle change streams advance (default 1; 0 disables). */
  noopHeartbeatSeconds?: number;
  /**
   * Advertise a standalone server in `hello` (no `setName`), as a `mongod` started without
   * `--replSet` does. Default false: a single-node replica-set primary.
   */
  standalone?: boolean;
  /** Python interpreter with SecantusDB installed. Default: the project's `.venv-test-server`. */
  pythonPath?: string;
  /** Label used in logs and temp directory names. */
  name?: string;
  /** Milliseconds to wait for the server to answer `hello`. Default 30000. */
  startTimeoutMs?: number;
  /**
   * Kill the server at once when the process gets SIGINT/SIGTERM/SIGHUP (default true). The
   * service sets false and stops it itself after its graceful shutdown; the server then runs
   * in its own process group, so a terminal's Ctrl-C reaches only its owner. It still dies
   * with the process either way.
   */
  killOnSignal?: boolean;
}

const TEMP_ROOT = join(tmpdir(), 'nest-bidi-sync-servers');
const PROJECT_ROOT = resolve(__dirname, '..', '..');

/** Default of `startTimeoutMs`: a cold Python start on a busy machine takes seconds. */
const DEFAULT_START_TIMEOUT_MS = 30_000;
/** Each readiness probe gives up after this (ms), then waits `READY_POLL_MS` before the next. */
const READY_PROBE_TIMEOUT_MS = 500;
const READY_POLL_MS = 100;
/** A free port found can be taken by someone else before the server binds it: try this many. */
const LAUNCH_ATTEMPTS = 3;
/** A server that has not exited this long (ms) after SIGTERM is killed. */
const KILL_GRACE_MS = 5000;
/** How much of the server's stderr an error quotes (characters). */
const STDERR_QUOTE_CHARS = 1500;

/**
 * The child dies with its parent (PR_SET_PDEATHSIG) so a killed test runner or
 * service never leaves a server behind; the check on the parent pid closes the
 * race where the parent died before prctl ran.
 */
const BOOTSTRAP = [
  'import ctypes, os, runpy, signal, sys',
  'try:',
  '    ctypes.CDLL(None).prctl(1, signal.SIGKILL)',
  'except Exception:',
  '    pass',
  'if os.getppid() != int(sys.argv[1]):',
  '    sys.exit(3)',
  "sys.argv = ['secantus'] + sys.argv[2:]",
  "runpy.run_module('secantus', run_name='__main__', alter_sys=True)",
].join('\n');

const live = new Set<EmbeddedMongoServer>();
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
      // Only re-raise when nobody else handles the signal (a Nest app with
      // shutdown hooks does, and exits on its own).
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    };
    process.on(signal, handler);
  }
}

/** Finds a free TCP port on 127.0.0.1. */
export async function findFreePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const address = srv.address();
      srv.close(() =>
        typeof address === 'object' && address
          ? resolvePort(address.port)
          : reject(new Error('no port')),
      );
    });
  });
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes temp directories left by processes that no longer exist (a runner
 * killed with SIGKILL cannot clean up after itself). Returns the removed paths.
 */
export function sweepStaleServerDirs(): string[] {
  if (!existsSync(TEMP_ROOT)) return [];
  const removed: string[] = [];
  for (const entry of readdirSync(TEMP_ROOT)) {
    const owner = Number(entry.split('-')[0]);
    if (Number.isInteger(owner) && owner > 0 && !pidAlive(owner)) {
      rmSync(join(TEMP_ROOT, entry), { recursive: true, force: true });
      removed.push(join(TEMP_ROOT, entry));
    }
  }
  return removed;
}

/** The directory under which every embedded server keeps its files. */
export function embeddedServerTempRoot(): string {
  return TEMP_ROOT;
}

/**
 * Installs the pinned SecantusDB into the project's virtual environment when
 * it is missing (the installer returns at once when it is there), so the
 * service and the dev servers start on a fresh clone with nothing set up by
 * hand. A venv given by SYNC_TEST_SERVER_VENV is the user's to install.
 */
export function ensureTestServerInstalled(): void {
  if (process.env.SYNC_TEST_SERVER_VENV) return;
  const installer = join(PROJECT_ROOT, 'scripts', 'install-test-server.js');
  const result = spawnSync(process.execPath, [installer], { stdio: 'inherit' });
  if (result.status !== 0)
    throw new Error(
      `could not install the SecantusDB test server (${installer} exited with ${result.status ?? result.error?.message})`,
    );
}

export function defaultPythonPath(): string {
  const venv = process.env.SYNC_TEST_SERVER_VENV || join(PROJECT_ROOT, '.venv-test-server');
  return process.platform === 'win32'
    ? join(venv, 'Scripts', 'python.exe')
    : join(venv, 'bin', 'python');
}

/**
 * A SecantusDB server (MongoDB wire protocol, single-node replica set
 * `secantus`) run as a child process on a loopback port. Used by the test
 * harness, the dev-server command and the service when no URIs are configured.
 */
export class EmbeddedMongoServer {
  private readonly logger: Logger;
  private child?: ChildProcess;
  private exited?: Promise<void>;
  private stderrTail = '';
  private ownDir?: string;
  private readonly storagePath: string;
  private portNumber = 0;

  private constructor(private readonly options: EmbeddedMongoServerOptions) {
    this.logger = new Logger(`${EmbeddedMongoServer.name}:${options.name ?? 'server'}`);
    installExitHooks();
    mkdirSync(TEMP_ROOT, { recursive: true });
    this.ownDir = mkdtempSync(join(TEMP_ROOT, `${process.pid}-${options.name ?? 'server'}-`));
    this.storagePath = options.storagePath ?? join(this.ownDir, 'data');
  }

  static async start(options: EmbeddedMongoServerOptions = {}): Promise<EmbeddedMongoServer> {
    const server = new EmbeddedMongoServer(options);
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

  /** Connection string for the driver (direct connection to the one node). */
  get uri(): string {
    return `mongodb://127.0.0.1:${this.portNumber}/?directConnection=true`;
  }

  get running(): boolean {
    return !!this.child && this.child.exitCode === null && this.child.signalCode === null;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** The directory holding this server's files (removed by `destroy()`). */
  get directory(): string | undefined {
    return this.ownDir;
  }

  private async launch(fixedPort?: number): Promise<void> {
    const attempts = fixedPort ? 1 : LAUNCH_ATTEMPTS;
    let lastError: unknown;
    for (let attempt = 1; attempt <= attempts; attempt++) {
      const port = fixedPort ?? (await findFreePort());
      try {
        await this.spawnOn(port);
        this.portNumber = port;
        return;
      } catch (err) {
        lastError = err;
        await this.kill();
      }
    }
    throw lastError;
  }

  private async spawnOn(port: number): Promise<void> {
    const o = this.options;
    const args = [
      '-c',
      BOOTSTRAP,
      String(process.pid),
      '--host',
      '127.0.0.1',
      '--port',
      String(port),
      '--storage-path',
      o.storage === 'disk' ? this.storagePath : ':memory:',
      '--log-level',
      'WARNING',
      '--noop-heartbeat-seconds',
      String(o.noopHeartbeatSeconds ?? 1),
    ];
    if (o.oplogRetentionSeconds !== undefined)
      args.push('--oplog-retention-seconds', String(o.oplogRetentionSeconds));
    if (o.oplogMaxEntries !== undefined)
      args.push('--oplog-max-entries', String(o.oplogMaxEntries));
    if (o.cacheSize !== undefined) args.push('--cache-size', o.cacheSize);
    if (o.standalone) args.push('--standalone');
    if (o.storage === 'disk') mkdirSync(this.storagePath, { recursive: true });

    const python = o.pythonPath ?? defaultPythonPath();
    if (!existsSync(python)) {
      throw new Error(
        `SecantusDB is not installed (${python} missing): run "npm run test-server:install"`,
      );
    }
    this.stderrTail = '';
    // TMPDIR inside our own directory: ':memory:' storage makes a temp dir
    // there, which the sweeper can remove if this process is SIGKILLed.
    const child = spawn(python, args, {
      cwd: this.ownDir,
      env: { ...process.env, TMPDIR: this.ownDir, PYTHONUNBUFFERED: '1' },
      stdio: ['ignore', 'ignore', 'pipe'],
      detached: o.killOnSignal === false,
    });
    this.child = child;
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      this.stderrTail = (this.stderrTail + chunk).slice(-4000);
    });
    this.exited = new Promise((res) => child.once('exit', () => res()));
    child.unref();
    (child.stderr as unknown as { unref?: () => void })?.unref?.();
    await this.waitUntilReady(port, child);
  }

  private async waitUntilReady(port: number, child: ChildProcess): Promise<void> {
    const startTimeoutMs = this.options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
    const deadline = Date.now() + startTimeoutMs;
    while (Date.now() < deadline) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(
          `SecantusDB exited during start (code ${child.exitCode}, signal ${child.signalCode}): ${this.stderrTail.trim().slice(-STDERR_QUOTE_CHARS)}`,
        );
      }
      const client = new MongoClient(`mongodb://127.0.0.1:${port}/?directConnection=true`, {
        serverSelectionTimeoutMS: READY_PROBE_TIMEOUT_MS,
        connectTimeoutMS: READY_PROBE_TIMEOUT_MS,
      });
      try {
        await client.db('admin').command({ hello: 1 });
        return;
      } catch {
        await new Promise((r) => setTimeout(r, READY_POLL_MS));
      } finally {
        await client.close().catch(() => undefined);
      }
    }
    throw new Error(
      `SecantusDB did not answer on port ${port} within ${startTimeoutMs} ms: ${this.stderrTail.trim().slice(-STDERR_QUOTE_CHARS)}`,
    );
  }

  private async kill(): Promise<void> {
    const child = this.child;
    if (!child || !this.running) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), KILL_GRACE_MS);
    await this.exited;
    clearTimeout(timer);
  }

  /** Called on SIGINT/SIGTERM/SIGHUP: kills at once unless `killOnSignal` is false. */
  onSignal(): void {
    if (this.options.killOnSignal !== false) this.killNow();
  }

  /** Kills the process at once (SIGKILL), synchronously. Used on process exit. */
  killNow(): void {
    if (this.running) this.child?.kill('SIGKILL');
    if (this.ownDir) rmSync(this.ownDir, { recursive: true, force: true });
  }

  /** Stops the server; a `disk` server keeps its data and port for `start()` again. */
  async stop(): Promise<void> {
    await this.kill();
  }

  /** Starts a stopped server again on the same port (and data when on disk). */
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
    await this.kill();
    live.delete(this);
    if (this.ownDir) rmSync(this.ownDir, { recursive: true, force: true });
    this.ownDir = undefined;
  }
}
