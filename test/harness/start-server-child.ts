// Fixture for harness.e2e-spec: starts one server, reports it, then waits to be killed.
import { EmbeddedMongoServer } from '../../src/dev-servers/embedded-mongo-server';

void (async () => {
  const server = await EmbeddedMongoServer.start({
    name: 'orphan',
    storage: process.argv[2] === 'disk' ? 'disk' : 'memory',
  });
  process.stdout.write(
    `${JSON.stringify({ pid: server.pid, dir: server.directory, port: server.port })}\n`,
  );
  setInterval(() => undefined, 1000);
})();
