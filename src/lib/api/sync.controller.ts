import {
  Body,
  Controller,
  Delete,
  Get,
  Header,
  HttpCode,
  HttpStatus,
  Param,
  Post,
  Query,
  Res,
  UseGuards,
  UseInterceptors,
  UsePipes,
  ValidationPipe,
} from '@nestjs/common';
import {
  ApiBadRequestResponse,
  ApiConflictResponse,
  ApiForbiddenResponse,
  ApiNotFoundResponse,
  ApiOkResponse,
  ApiOperation,
  ApiProduces,
  ApiSecurity,
  ApiServiceUnavailableResponse,
  ApiTags,
  ApiTooManyRequestsResponse,
  ApiUnauthorizedResponse,
  ApiUnprocessableEntityResponse,
} from '@nestjs/swagger';
import { ThrottlerGuard } from '@nestjs/throttler';
import { SyncPrometheusService } from '../metrics/sync-prometheus.service';
import { ConflictsQueryDto } from './dto/conflicts-query.dto';
import {
  DeadLetterDiscardResponseDto,
  DeadLetterIdDto,
  DeadLetterRetryResponseDto,
  DeadLettersQueryDto,
  DeadLettersResponseDto,
} from './dto/dead-letters.dto';
import {
  ConflictsResponseDto,
  SyncHealthResponseDto,
  SyncMetricsResponseDto,
  ToggleSyncResponseDto,
} from './dto/sync-responses.dto';
import { ToggleSyncDto } from './dto/toggle-sync.dto';
import { SyncApiAccess } from './guards/sync-api-access.decorator';
import { SyncApiKeyGuard } from './guards/sync-api-key.guard';
import { RedactResponseInterceptor } from './redact-response.interceptor';
import {
  SYNC_API_PREFIX,
  SYNC_API_PROMETHEUS_PATH,
  SYNC_API_SECURITY_SCHEME,
} from './sync-api.constants';
import { SyncApiService } from './sync-api.service';
import { SyncDeadLettersService } from './sync-dead-letters.service';

/** The part of the HTTP response the handlers touch (Express or Fastify). */
interface HttpResponse {
  status(code: number): unknown;
}

/**
 * The specification's REST API under `/api/sync/bidirectional`: health,
 * metrics (JSON and Prometheus), conflicts, dead letters (list, retry,
 * discard) and the on/off switch.
 * Rate limited, validated (unknown fields are rejected) and guarded by
 * `SyncApiKeyGuard`.
 *
 * @internal (served by `SyncApiModule`; not exported)
 */
@ApiTags('bidirectional-sync')
@ApiSecurity(SYNC_API_SECURITY_SCHEME)
@ApiTooManyRequestsResponse({ description: 'Rate limit exceeded (see Retry-After)' })
@Controller(SYNC_API_PREFIX)
@UseGuards(ThrottlerGuard, SyncApiKeyGuard)
@UsePipes(new ValidationPipe({ whitelist: true, forbidNonWhitelisted: true, transform: true }))
@UseInterceptors(RedactResponseInterceptor)
export class SyncController {
  constructor(
    private readonly api: SyncApiService,
    private readonly prometheus: SyncPrometheusService,
    private readonly deadLetters: SyncDeadLettersService,
  ) {}

  @Get('health')
  @SyncApiAccess('read')
  @Header('Cache-Control', 'no-store')
  @ApiOperation({ summary: 'Health of bidirectional sync (the specification shape plus details)' })
  @ApiOkResponse({ type: SyncHealthResponseDto, description: '`healthy` or `degraded`' })
  @ApiServiceUnavailableResponse({ type: SyncHealthResponseDto, description: '`unhealthy`' })
  async health(@Res({ passthrough: true }) res: HttpResponse) {
    const { body, down } = await this.api.health();
    if (down) res.status(HttpStatus.SERVICE_UNAVAILABLE);
    return body;
  }

  @Get('metrics')
  @SyncApiAccess('read')
  @Header('Cache-Control', 'no-store')
  @ApiOperation({ summary: 'Sync metrics of both directions, lag percentiles, outbox, conflicts' })
  @ApiOkResponse({ type: SyncMetricsResponseDto })
  metrics(): Promise<SyncMetricsResponseDto> {
    return this.api.metrics();
  }

  @Get(SYNC_API_PROMETHEUS_PATH)
  @SyncApiAccess('read')
  @Header('Cache-Control', 'no-store')
  @Header('Content-Type', 'text/plain; version=0.0.4; charset=utf-8')
  @ApiOperation({ summary: 'The same figures in the Prometheus text exposition format' })
  @ApiProduces('text/plain')
  @ApiOkResponse({ type: String })
  prometheusMetrics(): Promise<string> {
    return this.prometheus.metrics();
  }

  @Get('conflicts')
  @SyncApiAccess('read')
  @Header('Cache-Control', 'no-store')
  @ApiOperation({ summary: 'Recorded conflicts, newest first (limit, offset, collection, since)' })
  @ApiOkResponse({ type: ConflictsResponseDto })
  @ApiBadRequestResponse({ description: 'Invalid or unknown query parameter' })
  conflicts(@Query() query: ConflictsQueryDto): Promise<ConflictsResponseDto> {
    return this.api.conflicts(query);
  }

  @Post('toggle')
  @HttpCode(HttpStatus.OK)
  @SyncApiAccess('write')
  @ApiOperation({ summary: 'Turn Atlas → Local sync on or off (at once, survives restarts)' })
  @ApiOkResponse({ type: ToggleSyncResponseDto })
  @ApiBadRequestResponse({ description: 'Invalid body or unknown field' })
  @ApiUnauthorizedResponse({ description: 'API key missing or wrong' })
  @ApiForbiddenResponse({ description: 'No API key configured on the server' })
  @ApiServiceUnavailableResponse({ description: 'The local database did not accept the change' })
  toggle(@Body() body: ToggleSyncDto): Promise<ToggleSyncResponseDto> {
    return this.api.toggle(body.enabled);
  }

  @Get('dead-letters')
  @SyncApiAccess('read')
  @Header('Cache-Control', 'no-store')
  @ApiOperation({
    summary: 'Remote changes the host rejected, newest first (limit, offset, collection)',
  })
  @ApiOkResponse({ type: DeadLettersResponseDto })
  @ApiBadRequestResponse({ description: 'Invalid or unknown query parameter' })
  listDeadLetters(@Query() query: DeadLettersQueryDto): Promise<DeadLettersResponseDto> {
    return this.deadLetters.list(query);
  }

  @Post('dead-letters/:id/retry')
  @HttpCode(HttpStatus.OK)
  @SyncApiAccess('write')
  @ApiOperation({ summary: 'Apply a dead letter again through the normal apply path' })
  @ApiOkResponse({ type: DeadLetterRetryResponseDto, description: '`applied` or `superseded`' })
  @ApiBadRequestResponse({ description: 'Not a dead letter id' })
  @ApiNotFoundResponse({ description: 'No such dead letter' })
  @ApiConflictResponse({ description: 'It holds no versioned change (discard it)' })
  @ApiUnprocessableEntityResponse({ description: 'Rejected again (a new dead letter replaces it)' })
  @ApiUnauthorizedResponse({ description: 'API key missing or wrong' })
  @ApiForbiddenResponse({ description: 'No API key configured on the server' })
  retryDeadLetter(@Param() params: DeadLetterIdDto): Promise<DeadLetterRetryResponseDto> {
    return this.deadLetters.retry(params.id);
  }

  @Delete('dead-letters/:id')
  @SyncApiAccess('write')
  @ApiOperation({ summary: 'Discard a dead letter' })
  @ApiOkResponse({ type: DeadLetterDiscardResponseDto })
  @ApiBadRequestResponse({ description: 'Not a dead letter id' })
  @ApiNotFoundResponse({ description: 'No such dead letter' })
  @ApiUnauthorizedResponse({ description: 'API key missing or wrong' })
  @ApiForbiddenResponse({ description: 'No API key configured on the server' })
  discardDeadLetter(@Param() params: DeadLetterIdDto): Promise<DeadLetterDiscardResponseDto> {
    return this.deadLetters.discard(params.id);
  }
}
