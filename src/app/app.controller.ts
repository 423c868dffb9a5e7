import { Controller, Get } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { HealthCheck, HealthCheckService, MongooseHealthIndicator } from '@nestjs/terminus';
import { SyncHealthIndicator } from '../lib/health/sync-health.indicator';

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
      () => this.mongoose.pingCheck('localMongo', { timeout: 2000 }),
      () => this.sync.pingAtlas('atlasMongo', { timeoutMs: 2000 }),
      () => this.sync.isHealthy('bidirectionalSync'),
    ]);
  }
}
