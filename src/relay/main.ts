import 'reflect-metadata';
import { INestApplicationContext, Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { config as loadDotenv } from 'dotenv';
import { syncOptionsFromEnv } from '../lib/config/sync-config';
import { redactMessage, redactUri } from '../lib/errors/sync.errors';
import { fleetOptionsFromEnv } from '../lib/fleet/fleet-config';
import { RelayModule } from '../lib/fleet/relay/relay.module';
import { RelayService } from '../lib/fleet/relay/relay.service';

/**
 * `npm run relay`: a fleet relay between NATS JetStream and Atlas. Reads the engine's
 * variables (`ATLAS_MONGODB_URI`, `ATLAS_DB_NAME`, `SYNC_*`), the NATS ones (`NATS_URL`,
 * `NATS_USER`/`NATS_PASSWORD`/`NATS_CREDS`/`NATS_TOKEN`, `NATS_*` stream options) and
 * `RELAY_DB_NAME` (default `<ATLAS_DB_NAME>_relay`), `RELAY_INSTANCE_ID` (default random),
 * `RELAY_PORT` (default 5001; 0: no HTTP) and `RELAY_HOST` (default 0.0.0.0) for its
 * `GET /health` and `GET /metrics`.
 */
/** `RELAY_PORT` when unset. */
const DEFAULT_RELAY_PORT = 5001;
const DEFAULT_RELAY_HOST = '0.0.0.0';

/** `RELAY_PORT`: 0 turns the HTTP endpoints off. */
function relayPort(value: string | undefined): number {
  if (value === undefined || value.trim() === '') return DEFAULT_RELAY_PORT;
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new Error(`RELAY_PORT must be a port number (0 turns HTTP off), not "${value}"`);
  return port;
}

async function bootstrap(): Promise<void> {
  loadDotenv({ quiet: true });
  const logger = new Logger('Relay');
  try {
    const sync = syncOptionsFromEnv();
    const atlasUri = sync.atlasUri;
    const atlasDbName = sync.atlasDbName;
    if (!atlasUri || !atlasDbName)
      throw new Error('the relay needs ATLAS_MONGODB_URI and ATLAS_DB_NAME');
    const port = relayPort(process.env.RELAY_PORT);
    const host = process.env.RELAY_HOST || DEFAULT_RELAY_HOST;
    const module = RelayModule.forRoot({
      atlasUri,
      atlasDbName,
      relayDbName: process.env.RELAY_DB_NAME || undefined,
      instanceId: process.env.RELAY_INSTANCE_ID || undefined,
      fleet: fleetOptionsFromEnv(),
      sync,
    });
    // With a port: an HTTP application for /health and /metrics; without: no listener at all.
    let app: INestApplicationContext;
    if (port) {
      const http = await NestFactory.create(module, { abortOnError: false });
      http.enableShutdownHooks(['SIGTERM', 'SIGINT']);
      await http.listen(port, host);
      app = http;
    } else {
      app = await NestFactory.createApplicationContext(module, { abortOnError: false });
      app.enableShutdownHooks(['SIGTERM', 'SIGINT']);
      await app.init();
    }
    const status = app.get(RelayService).status();
    logger.log(
      `Relay ${status.instanceId} ready (${status.role}): Atlas ${redactUri(atlasUri)} database "${atlasDbName}", NATS ${status.nats.servers.join(', ')}${port ? `; health and metrics on http://${host}:${port}` : ''}`,
    );
  } catch (err) {
    logger.error(`Relay failed to start: ${redactMessage((err as Error)?.message ?? String(err))}`);
    process.exit(1);
  }
}

void bootstrap();
