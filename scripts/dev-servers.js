'use strict';
/**
 * Starts the development pair, "local" and "atlas" (SecantusDB, single-node
 * replica sets, data kept in .dev-servers/), and stops both on Ctrl-C.
 *
 *   npm run dev:servers
 *
 * Ports: EMBEDDED_LOCAL_PORT (default 27027), EMBEDDED_ATLAS_PORT (default 27028);
 * data: EMBEDDED_DATA_DIR (default .dev-servers).
 */
const path = require('node:path');

require('ts-node').register({
  transpileOnly: true,
  project: path.join(__dirname, '..', 'tsconfig.json'),
});
const { EmbeddedDevServers } = require('../src/dev-servers/embedded-dev-servers');
const { DEFAULT_EMBEDDED_PORTS } = require('../src/app/service-config');

function port(name, fallback) {
  const raw = (process.env[name] || '').trim();
  if (!raw) return fallback;
  if (!/^\d+$/.test(raw) || Number(raw) > 65535) {
    console.error(`${name} = ${JSON.stringify(raw)}: must be a port number`);
    process.exit(2);
  }
  return Number(raw) || undefined;
}

async function main() {
  const servers = await EmbeddedDevServers.start({
    localPort: port('EMBEDDED_LOCAL_PORT', DEFAULT_EMBEDDED_PORTS.local),
    atlasPort: port('EMBEDDED_ATLAS_PORT', DEFAULT_EMBEDDED_PORTS.atlas),
    dataDir: (process.env.EMBEDDED_DATA_DIR || '').trim() || '.dev-servers',
  });
  const { local, atlas } = servers.uris;
  console.log(`Development servers running (data in ${servers.dataDir}):`);
  console.log(`  local  ${local}`);
  console.log(`  atlas  ${atlas}`);
  console.log('Point the service at them (.env):');
  console.log(`  LOCAL_MONGODB_URI=${local}`);
  console.log(`  ATLAS_MONGODB_URI=${atlas}`);
  console.log('Press Ctrl-C to stop.');

  // The server processes are unref'd: keep this process alive until a signal.
  const keepAlive = setInterval(() => undefined, 1 << 30);
  let stopping = false;
  const stop = async (signal) => {
    if (stopping) return;
    stopping = true;
    clearInterval(keepAlive);
    console.log(`\n${signal}: stopping the development servers...`);
    await servers.stop();
    console.log('Stopped.');
    process.exit(0);
  };
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => void stop(signal));
}

main().catch((err) => {
  console.error(
    `Could not start the development servers: ${err instanceof Error ? err.message : err}`,
  );
  process.exit(1);
});
