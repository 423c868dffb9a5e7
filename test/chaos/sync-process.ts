import { ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, readFileSync, WriteStream } from 'node:fs';
import { join } from 'node:path';
import { findFreePort } from '../../src/dev-servers/embedded-mongo-server';
import { serviceArgv } from '../support/service-command';
import { waitFor } from '../support/mongo-harness';

export interface SyncProcessOptions {
  name: string;
  /** Working directory (no developer `.env`); the process log goes there too. */
  workDir: string;
  env: Record<string, string>;
}

/**
 * One device's sync service as users run it (`npm start`'s command line), as a
 * child process the chaos suite can SIGKILL and start again. Its output goes
 * to `<workDir>/<name>.log` (appended across restarts) for post-mortems.
 */
export class SyncProcess {
  private child?: ChildProcess;
  private exited?: Promise<void>;
  private log?: WriteStream;
  port = 0;
  starts = 0;
  kills = 0;

  constructor(private readonly options: SyncProcessOptions) {}

  get name(): string {
    return this.options.name;
  }

  get running(): boolean {
    return !!this.child && this.child.exitCode === null && this.child.signalCode === null;
  }

  get logPath(): string {
    return join(this.options.workDir, `${this.options.name}.log`);
  }

  /** Starts the service and waits until its HTTP API answers. */
  async start(): Promise<void> {
    if (this.running) return;
    this.port = await findFreePort();
    this.log ??= createWriteStream(this.logPath, { flags: 'a' });
    this.log.write(`\n===== start ${++this.starts} at ${new Date().toISOString()}\n`);
    const child = spawn(process.execPath, serviceArgv(), {
      cwd: this.options.workDir,
      env: {
        PATH: process.env.PATH,
        HOST: '127.0.0.1',
        PORT: String(this.port),
        SHUTDOWN_TIMEOUT_MS: '10000',
        ...this.options.env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    child.stdout!.pipe(this.log, { end: false });
    child.stderr!.pipe(this.log, { end: false });
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    await waitFor(
      async () => {
        if (child.exitCode !== null)
          throw new Error(`${this.name} exited at start: ${this.tail()}`);
        const res = await fetch(`http://127.0.0.1:${this.port}/api/sync/bidirectional/health`);
        return res.status === 200 || res.status === 503;
      },
      { timeoutMs: 60_000, intervalMs: 100, message: `${this.name} answering HTTP` },
    );
  }

  /** Resolves true once the process has exited by itself (false after `timeoutMs`). */
  async exitedWithin(timeoutMs: number): Promise<boolean> {
    if (!this.running) return true;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    const exited = await Promise.race([this.exited!.then(() => true), timeout]);
    clearTimeout(timer);
    return exited;
  }

  /** The environment of the next start (a fault point armed or cleared, say). */
  setEnv(name: string, value: string | undefined): void {
    if (value === undefined) delete this.options.env[name];
    else this.options.env[name] = value;
  }

  /** SIGKILL: no shutdown hook runs, nothing is flushed. */
  async kill9(): Promise<void> {
    if (!this.running) return;
    this.kills++;
    this.child!.kill('SIGKILL');
    await this.exited;
  }

  /** Graceful stop (SIGTERM), SIGKILL after 15 s. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.child!.kill('SIGTERM');
    const timer = setTimeout(() => this.child?.kill('SIGKILL'), 15_000);
    await this.exited;
    clearTimeout(timer);
  }

  async close(): Promise<void> {
    await this.stop();
    await new Promise<void>((resolve) => (this.log ? this.log.end(resolve) : resolve()));
    this.log = undefined;
  }

  /** The health endpoint's answer, or undefined when the process does not answer. */
  async health(): Promise<Record<string, any> | undefined> {
    if (!this.running) return undefined;
    try {
      const res = await fetch(`http://127.0.0.1:${this.port}/api/sync/bidirectional/health`);
      return (await res.json()) as Record<string, any>;
    } catch {
      return undefined;
    }
  }

  /** The whole process log (every start so far). */
  logText(): string {
    try {
      return readFileSync(this.logPath, 'utf8');
    } catch {
      return '';
    }
  }

  /** The last lines of the process log. */
  tail(lines = 40): string {
    return this.logText().split('\n').slice(-lines).join('\n');
  }
}
