import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { MongoClient } from 'mongodb';
import { sweepStaleServerDirs } from '../../src/dev-servers/embedded-mongo-server';
import {
  itWithServerControl,
  MongoHarness,
  usingExternalServers,
  waitFor,
} from '../support/mongo-harness';
import { pidAlive } from '../support/process-probe';

describe('test MongoDB harness', () => {
  const harness = new MongoHarness();
  afterAll(() => harness.stopAll());

  it('starts independent single-node replica-set primaries on distinct ports', async () => {
    const [a, b] = await harness.start(2);
    const hellos = await Promise.all(
      [a, b].map(async (s) => (await harness.client(s)).db('admin').command({ hello: 1 })),
    );
    for (const hello of hellos) {
      expect(hello.isWritablePrimary).toBe(true);
      expect(typeof hello.setName).toBe('string');
    }
    if (!usingExternalServers) expect(a.uri).not.toEqual(b.uri);
    const ca = await harness.client(a);
    const cb = await harness.client(b);
    await ca
      .db('h')
      .collection('c')
      .insertOne({ _id: 'only-a' } as any);
    if (!usingExternalServers) {
      expect(
        await cb
          .db('h')
          .collection('c')
          .countDocuments({ _id: 'only-a' } as any),
      ).toBe(0);
    }
  });

  itWithServerControl(
    'restarts a disk-backed server on the same port with the same data',
    async () => {
      const [server] = await harness.start(1, { storage: 'disk', name: 'disk' });
      const uri = server.uri;
      let client = new MongoClient(uri);
      await client
        .db('h')
        .collection('c')
        .insertOne({ _id: 'kept', n: 1 } as any);
      await client.close();
      await server.restart();
      expect(server.uri).toBe(uri);
      client = new MongoClient(uri);
      expect(
        await client
          .db('h')
          .collection('c')
          .findOne({ _id: 'kept' } as any),
      ).toEqual({ _id: 'kept', n: 1 });
      await client.close();
    },
  );

  describe('when the process that started a server is interrupted', () => {
    const runChild = async (storage: string) => {
      const child = spawn(
        process.execPath,
        [
          '-r',
          'ts-node/register/transpile-only',
          join(__dirname, 'start-server-child.ts'),
          storage,
        ],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      const line = await new Promise<string>((resolve, reject) => {
        let buf = '';
        child.stdout.on('data', (d) => {
          buf += d;
          if (buf.includes('\n')) resolve(buf.split('\n')[0]);
        });
        child.once('exit', (code) => reject(new Error(`fixture exited early with ${code}`)));
      });
      return { child, info: JSON.parse(line) as { pid: number; dir: string; port: number } };
    };

    itWithServerControl.each(['SIGINT', 'SIGTERM'] as const)(
      'leaves no server process or directory after %s',
      async (signal) => {
        const { child, info } = await runChild('disk');
        expect(pidAlive(info.pid)).toBe(true);
        expect(existsSync(info.dir)).toBe(true);
        child.kill(signal);
        await waitFor(() => !pidAlive(info.pid), { message: 'server process to end' });
        await waitFor(() => !existsSync(info.dir), { message: 'server directory to be removed' });
      },
    );

    itWithServerControl(
      'leaves no server process after SIGKILL, and the next run sweeps its directory',
      async () => {
        const { child, info } = await runChild('memory');
        child.kill('SIGKILL');
        await waitFor(() => !pidAlive(info.pid), {
          message: 'orphaned server to die with its parent',
        });
        await waitFor(() => !pidAlive(child.pid!), { message: 'fixture to die' });
        expect(existsSync(info.dir)).toBe(true);
        expect(sweepStaleServerDirs()).toContain(info.dir);
        expect(existsSync(info.dir)).toBe(false);
      },
    );
  });
});
