import { createServer, Server, Socket, connect } from 'node:net';

/**
 * A loopback TCP proxy in front of one server, so a test can cut a client's
 * connections the way a flaky network does: `cut()` resets every open
 * connection; `block()` also refuses new ones until `unblock()`.
 */
export class TcpProxy {
  private readonly sockets = new Set<Socket>();
  private blocked = false;
  /** Connections reset by `cut()` and refused while blocked. */
  cuts = 0;

  private constructor(
    private readonly server: Server,
    readonly port: number,
    private readonly targetPort: number,
  ) {}

  static async start(targetPort: number): Promise<TcpProxy> {
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const address = server.address();
    if (!address || typeof address === 'string') throw new Error('proxy has no port');
    const proxy = new TcpProxy(server, address.port, targetPort);
    server.on('connection', (client) => proxy.accept(client));
    return proxy;
  }

  /** `mongodb://` URI of the proxied server (direct connection). */
  get uri(): string {
    return `mongodb://127.0.0.1:${this.port}/?directConnection=true`;
  }

  /** Resets every open connection (clients see a network error). */
  cut(): void {
    for (const socket of this.sockets) socket.resetAndDestroy();
    this.cuts++;
  }

  /** Cuts, and refuses new connections until `unblock()`. */
  block(): void {
    this.blocked = true;
    this.cut();
  }

  unblock(): void {
    this.blocked = false;
  }

  async close(): Promise<void> {
    this.block();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: Socket): void {
    if (this.blocked) {
      client.resetAndDestroy();
      return;
    }
    const upstream = connect(this.targetPort, '127.0.0.1');
    for (const socket of [client, upstream]) {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      // Resets are the point of this proxy; the other side is closed with it.
      socket.on('error', () => undefined);
    }
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  }
}
