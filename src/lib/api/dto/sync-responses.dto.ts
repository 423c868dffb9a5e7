/* OpenAPI description of the responses (the specification's shapes plus extras). */
import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';

export class AtlasListenerHealthDto {
  @ApiProperty() running!: boolean;
  @ApiProperty() connected!: boolean;
  @ApiProperty({ nullable: true, type: String, example: '2025-11-30T10:00:00Z' })
  lastChange!: string | null;
  @ApiProperty({ description: 'Consecutive failed (re)connects' }) reconnectAttempts!: number;
  @ApiProperty({ nullable: true, type: String }) disconnectedSince!: string | null;
  @ApiProperty({ nullable: true, type: String }) lastError!: string | null;
  @ApiProperty({ nullable: true, type: Number, description: 'Age of the saved resume token (ms)' })
  resumeTokenAgeMs!: number | null;
}

export class SyncWorkerHealthDto {
  @ApiProperty() running!: boolean;
  @ApiProperty({ description: 'Pending local changes (outbox depth)' }) queueSize!: number;
  @ApiProperty({ nullable: true, type: Number }) oldestPendingAgeMs!: number | null;
  @ApiProperty({ nullable: true, type: String }) lastError!: string | null;
}

export class DirectionLagDto {
  @ApiProperty({ nullable: true, type: Number }) localToAtlas!: number | null;
  @ApiProperty({ nullable: true, type: Number }) atlasToLocal!: number | null;
}

export class HealthThresholdsDto {
  @ApiProperty({ example: 30000 }) maxLagMs!: number;
  @ApiProperty({ example: 300000 }) maxDisconnectedMs!: number;
  @ApiProperty({ example: 10 }) maxConflictsPerHour!: number;
}

export class NatsConnectionDto {
  @ApiProperty({ enum: ['idle', 'connecting', 'connected', 'reconnecting', 'closed'] })
  state!: string;
  @ApiProperty({ nullable: true, type: String, example: '127.0.0.1:4222' }) server!: string | null;
  @ApiProperty({ description: 'Reconnects since start' }) reconnects!: number;
  @ApiProperty({ nullable: true, type: String }) lastError!: string | null;
}

export class SyncTransportDto {
  @ApiProperty({ enum: ['direct', 'nats'], description: '`nats`: fleet mode (through relays)' })
  mode!: string;
  @ApiProperty({ type: NatsConnectionDto, nullable: true, description: 'null in direct mode' })
  nats!: NatsConnectionDto | null;
  @ApiProperty({
    nullable: true,
    type: Number,
    description: 'Last changes-stream sequence applied (fleet mode)',
  })
  changesSequence!: number | null;
  @ApiProperty({
    nullable: true,
    type: Number,
    description: 'Consumer lag: messages on the changes stream not yet applied (fleet mode)',
  })
  changesPending!: number | null;
}

export class SyncHealthResponseDto {
  @ApiProperty({ description: 'Atlas → Local enabled' }) enabled!: boolean;
  @ApiProperty({ type: AtlasListenerHealthDto }) atlasListener!: AtlasListenerHealthDto;
  @ApiProperty({ type: SyncWorkerHealthDto }) syncWorker!: SyncWorkerHealthDto;
  @ApiProperty({ enum: ['healthy', 'degraded', 'unhealthy'] }) health!: string;
  @ApiProperty({ type: [String], description: 'Why health is not `healthy`' }) reasons!: string[];
  @ApiProperty() instanceId!: string;
  @ApiProperty({ type: DirectionLagDto, description: 'Current sync lag per direction (ms)' })
  lagMs!: DirectionLagDto;
  @ApiProperty() conflictsLastHour!: number;
  @ApiProperty({ type: HealthThresholdsDto }) thresholds!: HealthThresholdsDto;
  @ApiProperty({ type: Object }) localCapture!: Record<string, unknown>;
  @ApiProperty({ type: Object }) rebaseline!: Record<string, unknown>;
  @ApiProperty({ type: SyncTransportDto, description: 'Direct to Atlas, or fleet mode over NATS' })
  transport!: SyncTransportDto;
  @ApiProperty() checkedAt!: string;
}

export class LagPercentilesDto {
  @ApiProperty({ nullable: true, type: Number }) p50!: number | null;
  @ApiProperty({ nullable: true, type: Number }) p95!: number | null;
  @ApiProperty({ nullable: true, type: Number }) p99!: number | null;
  @ApiProperty({ nullable: true, type: Number }) last!: number | null;
}

export class DirectionMetricsDto {
  @ApiProperty({ example: 1000 }) totalProcessed!: number;
  @ApiProperty({ example: 995 }) successful!: number;
  @ApiProperty({ example: 5 }) failed!: number;
  @ApiProperty({ example: 150, description: 'Mean processing time per change (ms)' })
  avgProcessTime!: number;
  @ApiProperty({ type: Object, example: { insert: 600, update: 390, delete: 10 } })
  byOperation!: Record<string, number>;
  @ApiProperty({ type: LagPercentilesDto, description: 'Write → applied on the other side (ms)' })
  lagMs!: LagPercentilesDto;
}

export class ConflictMetricsDto {
  @ApiProperty({ description: 'Since the service started' }) total!: number;
  @ApiProperty({
    description:
      'Equal to total: a conflict is recorded once its strategy decided it (none stays open)',
  })
  resolved!: number;
  @ApiPropertyOptional({ nullable: true, type: Number, description: 'Stored, last hour' })
  lastHour!: number | null;
  @ApiProperty({ type: Object, example: { atlas: 6, local: 4 } }) byWinner!: Record<string, number>;
}

export class SyncMetricsResponseDto {
  @ApiProperty({ type: DirectionMetricsDto }) localToAtlas!: DirectionMetricsDto;
  @ApiProperty({ type: DirectionMetricsDto }) atlasToLocal!: DirectionMetricsDto;
  @ApiProperty({ type: ConflictMetricsDto }) conflicts!: ConflictMetricsDto;
  @ApiProperty({ nullable: true, type: Number, description: 'Pending local changes' })
  outboxDepth!: number | null;
  @ApiProperty({ nullable: true, type: Number }) oldestPendingAgeMs!: number | null;
  @ApiProperty({ description: 'Remote changes the host rejected (since start)' })
  deadLettered!: number;
  @ApiProperty({ description: 'Change stream reconnects (since start)' }) reconnects!: number;
  @ApiProperty() staleRejected!: number;
  @ApiProperty({ type: SyncTransportDto, description: 'Direct to Atlas, or fleet mode over NATS' })
  transport!: SyncTransportDto;
  @ApiProperty({ description: 'Counters are kept since this time' }) since!: string;
}

export class ConflictEntryDto {
  @ApiProperty({ example: 'menuitems' }) collection!: string;
  @ApiProperty({ example: '123' }) documentId!: string;
  @ApiProperty({ nullable: true, type: String, example: '2025-11-30T10:00:00Z' })
  localTimestamp!: string | null;
  @ApiProperty({ nullable: true, type: String, example: '2025-11-30T10:00:05Z' })
  atlasTimestamp!: string | null;
  @ApiProperty({ enum: ['local', 'atlas', 'merged'], example: 'atlas' }) winner!: string;
  @ApiProperty({ example: '2025-11-30T10:00:06Z' }) resolvedAt!: string;
  @ApiProperty({ example: 'last-write-wins' }) strategy!: string;
  @ApiPropertyOptional() localVersion?: string;
  @ApiPropertyOptional() atlasVersion?: string;
}

export class ConflictsResponseDto {
  @ApiProperty({ description: 'Stored conflicts matching the filter' }) totalConflicts!: number;
  @ApiProperty({ type: [ConflictEntryDto] }) recentConflicts!: ConflictEntryDto[];
}

export class ToggleSyncResponseDto {
  @ApiProperty() success!: boolean;
  @ApiProperty() enabled!: boolean;
  @ApiProperty({ example: 'Bidirectional sync enabled' }) message!: string;
}
