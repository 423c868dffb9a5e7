import {
  Controller,
  Get,
  Header,
  MessageEvent,
  NotFoundException,
  Param,
  Req,
  Res,
  Sse,
  UseGuards,
} from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { ApiExcludeEndpoint, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { ThrottlerGuard } from '@nestjs/throttler';
import type { Observable } from 'rxjs';
import { SyncApiAccess } from '../api/guards/sync-api-access.decorator';
import { SyncApiKeyGuard } from '../api/guards/sync-api-key.guard';
import { SYNC_API_PREFIX } from '../api/sync-api.constants';
import { SyncDashboardAssets } from './sync-dashboard-assets';
import { SyncDashboardService, SyncDashboardState } from './sync-dashboard.service';
import { SYNC_DASHBOARD_PATH } from './sync-dashboard.constants';

/** The page may load its own files and talk to its own origin, nothing else. */
const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

/**
 * The operator dashboard, served by the service itself under
 * `/api/sync/bidirectional/dashboard/`: a page, its script and style, uPlot
 * (from its npm package), and the live stream the page reads
 * (`dashboard/events`, server-sent events) or one reading of it
 * (`dashboard/state`). The page and files are `public` (they hold no data);
 * the data follows the API's read rule (`SYNC_API_PROTECT_READS`).
 *
 * @publicApi
 */
@ApiTags('bidirectional-sync')
@Controller(`${SYNC_API_PREFIX}/${SYNC_DASHBOARD_PATH}`)
@UseGuards(ThrottlerGuard, SyncApiKeyGuard)
export class SyncDashboardController {
  private readonly assets = new SyncDashboardAssets();

  constructor(
    private readonly dashboard: SyncDashboardService,
    private readonly adapterHost: HttpAdapterHost,
  ) {}

  @Get()
  @SyncApiAccess('public')
  @ApiOperation({ summary: 'The operator dashboard (an HTML page)' })
  page(@Req() request: unknown, @Res() response: unknown): void {
    this.assertEnabled();
    const adapter = this.adapterHost.httpAdapter;
    const path = String(adapter.getRequestUrl(request) ?? '').split('?')[0];
    // The page refers to its files relatively: it must be addressed as a folder.
    if (!path.endsWith('/')) {
      adapter.redirect(response, 302, `${path.slice(path.lastIndexOf('/') + 1)}/`);
      return;
    }
    const asset = this.assets.get('index.html')!;
    adapter.setHeader(response, 'Content-Type', asset.contentType);
    adapter.setHeader(response, 'Cache-Control', 'no-store');
    adapter.setHeader(response, 'Content-Security-Policy', CONTENT_SECURITY_POLICY);
    adapter.setHeader(response, 'X-Content-Type-Options', 'nosniff');
    adapter.setHeader(response, 'Referrer-Policy', 'no-referrer');
    adapter.reply(response, asset.body, 200);
  }

  @Get('assets/:name')
  @SyncApiAccess('public')
  @ApiExcludeEndpoint()
  asset(@Param('name') name: string, @Res() response: unknown): void {
    this.assertEnabled();
    const asset = SyncDashboardAssets.names.includes(name) ? this.assets.get(name) : undefined;
    if (!asset) throw new NotFoundException(`No dashboard file ${JSON.stringify(name)}`);
    const adapter = this.adapterHost.httpAdapter;
    adapter.setHeader(response, 'Content-Type', asset.contentType);
    adapter.setHeader(response, 'Cache-Control', 'no-cache');
    adapter.setHeader(response, 'X-Content-Type-Options', 'nosniff');
    adapter.reply(response, asset.body, 200);
  }

  @Get('state')
  @SyncApiAccess('read')
  @Header('Cache-Control', 'no-store')
  @ApiOperation({
    summary:
      "The dashboard's data: health, alerts, totals and the last 15 minutes of lag and throughput",
  })
  @ApiOkResponse({ description: 'SyncDashboardState' })
  state(): Promise<SyncDashboardState> {
    this.assertEnabled();
    return this.dashboard.state();
  }

  @Sse('events')
  @SyncApiAccess('read')
  @ApiOperation({
    summary:
      'The same as server-sent events: the whole state at once, then every second with new points',
  })
  events(): Observable<MessageEvent> {
    this.assertEnabled();
    return this.dashboard.stream();
  }

  private assertEnabled(): void {
    if (!this.dashboard.enabled)
      throw new NotFoundException('The dashboard is turned off (SYNC_API_DASHBOARD=false)');
  }
}
