import { Controller, Get, Header, HttpStatus, Res } from '@nestjs/common';
import { RelayHealth, RelayHealthService } from './relay-health.service';
import { RelayPrometheusService } from './relay-prometheus.service';

/** The part of the HTTP response the handler touches (Express or Fastify). */
interface HttpResponse {
  status(code: number): unknown;
}

/**
 * The relay's own HTTP endpoints (`RELAY_PORT`): `GET /health` (its role, lease, NATS
 * connection, publisher lag and push backlog; HTTP 503 when `down`) and `GET /metrics`
 * (Prometheus text, `relay_*`). Unauthenticated and read-only; they carry no secret.
 */
@Controller()
export class RelayHttpController {
  constructor(
    private readonly relayHealth: RelayHealthService,
    private readonly prometheus: RelayPrometheusService,
  ) {}

  @Get('health')
  @Header('Cache-Control', 'no-store')
  async health(@Res({ passthrough: true }) res: HttpResponse): Promise<RelayHealth> {
    const health = await this.relayHealth.check();
    if (health.status === 'down') res.status(HttpStatus.SERVICE_UNAVAILABLE);
    return health;
  }

  @Get('metrics')
  @Header('Cache-Control', 'no-store')
  @Header('Content-Type', 'text/plain; version=0.0.4; charset=utf-8')
  metrics(): Promise<string> {
    return this.prometheus.metrics();
  }
}
