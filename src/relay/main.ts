import 'reflect-metadata';
import { Logger } from '@nestjs/common';
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
 * `RELAY_DB_NAME` (default `<ATLAS_DB_NAME>_relay`), `RELAY_INSTANCE_ID` (default random).
 */
async function bootstrap(): Promise<void> {
  loadDotenv({ quiet: true });
  const logger = new Logger('Relay');
  try {
    const sync = syncOptionsFromEnv();
    const atlasUri = sync.atlasUri;
    const atlasDbName = sync.atlasDbName;
    if (!atlasUri || !atlasDbName)
      throw new Error('the relay needs ATLAS_MONGODB_URI and ATLAS_DB_NAME');
    const app = await NestFactory.createApplicationContext(
      RelayModule.forRoot({
        atlasUri,
        atlasDbName,
        relayDbName: process.env.RELAY_DB_NAME || undefined,
        instanceId: process.env.RELAY_INSTANCE_ID || undefined,
        fleet: fleetOptionsFromEnv(),
        sync,
      }),
      { abortOnError: false },
    );
    app.enableShutdownHooks(['SIGTERM', 'SIGINT']);
    await app.init();
    const status = app.get(RelayService).status();
    logger.log(
      `Relay ${status.instanceId} ready (${status.role}): Atlas ${redactUri(atlasUri)} database "${atlasDbName}", NATS ${status.nats.servers.join(', ')}`,
    );
  } catch (err) {
    logger.error(`Relay failed to start: ${redactMessage((err as Error)?.message ?? String(err))}`);
    process.exit(1);
  }
}

void bootstrap();
