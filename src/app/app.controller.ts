import { Controller, Get } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { HealthCheck, HealthCheckService, MongooseHealthIndicator } from '@nestjs/terminus';
import { SyncHealthIndicator } from '../lib/health/sync-health.indicator';

/** A database that has not answered a ping within this (ms) counts as down. */
const PING_TIMEOUT_MS = 2000;

/**
 * The service's own readiness check (`GET /health`, Terminus format): both
 * connections answer a ping and sync is not `unhealthy`. It shows how a host
 * wires `SyncHealthIndicator` next to its ping checks.
 */
@ApiTags('service')
@Controller('health')
export class AppController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly mongoose: MongooseHealthIndicator,
    private readonly sync: SyncHealthIndicator,
  ) {}

  @Get()
  @HealthCheck()
  @ApiOperation({ summary: 'Readiness: local and Atlas ping, sync health (503 when down)' })
  check() {
    return this.health.check([
      () => this.mongoose.pingCheck('localMongo', { timeout: PING_TIMEOUT_MS }),
      () => this.sync.pingAtlas('atlasMongo', { timeoutMs: PING_TIMEOUT_MS }),
      () => this.sync.isHealthy('bidirectionalSync'),
    ]);
  }
}
