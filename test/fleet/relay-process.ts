import { ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { waitFor } from '../support/mongo-harness';

const ROOT = path.resolve(__dirname, '../..');

/** `npm run relay`'s entry as a child process (ts-node, no build needed), for kill -9 tests. */
export class RelayProcess {
  private output = '';
  private exited = false;

  private constructor(readonly child: ChildProcess) {
    child.stdout?.on('data', (d: Buffer) => (this.output += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (this.output += d.toString()));
    child.on('exit', () => (this.exited = true));
  }

  /** No HTTP unless `env` sets `RELAY_PORT` (the default 5001 could be taken on a test machine). */
  static start(env: Record<string, string>): RelayProcess {
    const child = spawn(
      process.execPath,
      ['-r', 'ts-node/register/transpile-only', path.join(ROOT, 'src/relay/main.ts')],
      { cwd: ROOT, env: { ...process.env, RELAY_PORT: '0', ...env, NO_COLOR: '1' }, stdio: 'pipe' },
    );
    return new RelayProcess(child);
  }

  get log(): string {
    return this.output;
  }

  /** Waits until the relay says it publishes Atlas changes (it holds the lease). */
  async active(timeoutMs = 60_000): Promise<void> {
    await waitFor(
      () => {
        if (this.exited) throw new Error(`the relay exited:\n${this.output}`);
        return /Active relay/.test(this.output);
      },
      { timeoutMs, intervalMs: 100, message: 'an active relay' },
    );
  }

  /** kill -9: no shutdown hook runs, the lease is left to expire. */
  async kill9(): Promise<void> {
    if (this.exited) return;
    const gone = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.kill('SIGKILL');
    await gone;
  }

  /** SIGTERM and wait (graceful stop); kill -9 after a grace period. */
  async stop(): Promise<void> {
    if (this.exited) return;
    const gone = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await gone;
    clearTimeout(timer);
  }
}
