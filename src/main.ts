import 'reflect-metadata';
import { INestApplication, Logger, LoggerService } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import { config as loadDotenv } from 'dotenv';
import {
  SYNC_API_CONFIG,
  SYNC_API_KEY_HEADER,
  SYNC_API_PREFIX,
  SYNC_API_SECURITY_SCHEME,
} from './lib/api/sync-api.constants';
import type { ResolvedSyncApiConfig } from './lib/api/sync-api.config';
import { SYNC_DASHBOARD_PATH } from './lib/dashboard/sync-dashboard.constants';
import { AppModule } from './app/app.module';
import { redactMessage, redactUri } from './lib/errors/sync.errors';
import { EmbeddedDevServers } from './dev-servers/embedded-dev-servers';
import { loadServiceConfig, ServiceConfig, usesEmbeddedServers } from './app/service-config';
import { createServiceLogger } from './app/service-logger';

const SHUTDOWN_SIGNALS = ['SIGTERM', 'SIGINT'] as const;

async function bootstrap(): Promise<void> {
  // .env of the working directory; variables already set win.
  loadDotenv({ quiet: true });
  let logger: LoggerService = new Logger('Bootstrap');
  let devServers: EmbeddedDevServers | undefined;
  try {
    const config = loadServiceConfig();
    logger = createServiceLogger(config);
    const log = (message: string) => logger.log(message, 'Bootstrap');

    let uris: { local: string; atlas?: string };
    if (usesEmbeddedServers(config)) {
      devServers = await EmbeddedDevServers.start(config.embedded);
      uris = devServers.uris;
      logger.warn(
        `No LOCAL_MONGODB_URI / ATLAS_MONGODB_URI configured: running against EMBEDDED DEVELOPMENT SERVERS ` +
          `(SecantusDB, not for production): local ${uris.local}, atlas ${uris.atlas}, data in ${devServers.dataDir}`,
        'Bootstrap',
      );
    } else {
      uris = { local: config.localUri!, atlas: config.atlasUri };
      log(
        `Local MongoDB ${redactUri(uris.local)}, ${uris.atlas ? `Atlas ${redactUri(uris.atlas)}` : 'no Atlas URI (fleet mode: Atlas through the relays)'}`,
      );
    }

    const app = await NestFactory.create(AppModule.forRoot({ config, uris, devServers }), {
      logger,
      abortOnError: false,
      // At shutdown the engine has stopped before the HTTP server closes: a connection still
      // open (a dashboard's live stream reconnecting, a keep-alive socket) must not hold it.
      forceCloseConnections: true,
    });
    app.enableShutdownHooks([...SHUTDOWN_SIGNALS]);
    app.getHttpAdapter().getInstance()?.disable?.('x-powered-by');
    installShutdownDeadline(config, logger);
    if (config.apiDocs) setupOpenApi(app);
    await app.listen(config.port, config.host);
    log(
      `Bidirectional sync service listening on http://${config.host}:${config.port} ` +
        `(API /api/sync/bidirectional, readiness /health${config.apiDocs ? ', docs /api/docs' : ''})`,
    );
    if (app.get<ResolvedSyncApiConfig>(SYNC_API_CONFIG, { strict: false }).dashboard) {
      const shownHost = ['0.0.0.0', '::'].includes(config.host) ? 'localhost' : config.host;
      log(
        `Dashboard: http://${shownHost}:${config.port}/${SYNC_API_PREFIX}/${SYNC_DASHBOARD_PATH}/`,
      );
    }
  } catch (err) {
    logger.error(
      `Service failed to start: ${redactMessage(err instanceof Error ? err.message : String(err)).split('\n')[0]}`,
      undefined,
      'Bootstrap',
    );
    await devServers?.stop().catch(() => undefined);
    process.exit(1);
  }
}

/**
 * Nest closes the application on SIGTERM/SIGINT (sync stops taking changes,
 * flushes the outbox, saves the resume token and clock, connections close,
 * embedded servers stop) and then exits. This bounds how long that may take.
 */
function installShutdownDeadline(config: ServiceConfig, logger: LoggerService): void {
  for (const signal of SHUTDOWN_SIGNALS) {
    process.once(signal, () => {
      logger.log(
        `${signal} received: shutting down (at most ${config.shutdownTimeoutMs} ms)`,
        'Shutdown',
      );
      setTimeout(() => {
        logger.error(
          `Shutdown did not finish within ${config.shutdownTimeoutMs} ms: exiting`,
          undefined,
          'Shutdown',
        );
        process.exit(1);
      }, config.shutdownTimeoutMs).unref();
    });
  }
}

function setupOpenApi(app: INestApplication): void {
  const document = SwaggerModule.createDocument(
    app,
    new DocumentBuilder()
      .setTitle('Bidirectional sync')
      .setDescription(
        'Health, metrics, conflicts and the on/off switch of the local MongoDB ↔ Atlas sync. ' +
          `POST /toggle needs the API key (${SYNC_API_KEY_HEADER} header or Authorization: Bearer).`,
      )
      .setVersion(process.env.npm_package_version ?? '0.1.0')
      .addApiKey(
        { type: 'apiKey', in: 'header', name: SYNC_API_KEY_HEADER },
        SYNC_API_SECURITY_SCHEME,
      )
      .build(),
  );
  SwaggerModule.setup('api/docs', app, document);
}

void bootstrap();
