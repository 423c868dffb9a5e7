import { OnApplicationShutdown } from '@nestjs/common';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import {
  EmbeddedMongoServer,
  ensureTestServerInstalled,
  sweepStaleServerDirs,
} from './embedded-mongo-server';

export interface EmbeddedDevServersOptions {
  /** Port of the "local" server (default: a free port). */
  localPort?: number;
  /** Port of the "atlas" server (default: a free port). */
  atlasPort?: number;
  /** Data directory; each server keeps its data in `<dataDir>/<name>` across restarts. */
  dataDir: string;
}

/**
 * The development pair: two SecantusDB servers named "local" and "atlas",
 * on disk under `dataDir`, each a single-node replica set. Used by the
 * service when no URIs are configured and by `npm run dev:servers`.
 * Not for production.
 */
export class EmbeddedDevServers implements OnApplicationShutdown {
  private stopped?: Promise<void>;

  private constructor(
    readonly local: EmbeddedMongoServer,
    readonly atlas: EmbeddedMongoServer,
    readonly dataDir: string,
  ) {}

  static async start(options: EmbeddedDevServersOptions): Promise<EmbeddedDevServers> {
    ensureTestServerInstalled();
    const dataDir = resolve(options.dataDir);
    // Temp directories of runs killed with SIGKILL (the data directory is never touched).
    sweepStaleServerDirs();
    await Promise.all([portFree(options.localPort), portFree(options.atlasPort)]);
    const start = (name: string, port?: number) =>
      EmbeddedMongoServer.start({
        name,
        port,
        storage: 'disk',
        storagePath: join(dataDir, name),
        // Stopped by stop() after the application closed, not at the signal.
        killOnSignal: false,
      });
    const [local, atlas] = await Promise.allSettled([
      start('local', options.localPort),
      start('atlas', options.atlasPort),
    ]);
    if (local.status === 'rejected' || atlas.status === 'rejected') {
      await Promise.all(
        [local, atlas].map((r) => (r.status === 'fulfilled' ? r.value.destroy() : undefined)),
      );
      throw (local.status === 'rejected' ? local : (atlas as PromiseRejectedResult)).reason;
    }
    return new EmbeddedDevServers(local.value, atlas.value, dataDir);
  }

  get uris(): { local: string; atlas: string } {
    return { local: this.local.uri, atlas: this.atlas.uri };
  }

  /** Stops both servers (SIGTERM, then SIGKILL after 5 s); their data stays in `dataDir`. Idempotent. */
  stop(): Promise<void> {
    this.stopped ??= Promise.all([this.local.destroy(), this.atlas.destroy()]).then(
      () => undefined,
    );
    return this.stopped;
  }

  /** Called by Nest at shutdown, after the imported modules closed their connections. */
  onApplicationShutdown(): Promise<void> {
    return this.stop();
  }
}

async function portFree(port?: number): Promise<void> {
  if (!port) return;
  await new Promise<void>((ok, fail) => {
    const probe = createServer();
    probe.once('error', (err: NodeJS.ErrnoException) =>
      fail(
        new Error(
          err.code === 'EADDRINUSE'
            ? `port ${port} is in use (is "npm run dev:servers" running? Then set LOCAL_MONGODB_URI and ATLAS_MONGODB_URI to its servers, or choose EMBEDDED_LOCAL_PORT / EMBEDDED_ATLAS_PORT)`
            : `port ${port} is not usable: ${err.message}`,
        ),
      ),
    );
    probe.listen(port, '127.0.0.1', () => probe.close(() => ok()));
  });
}
