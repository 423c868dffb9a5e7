import { plainToInstance } from 'class-transformer';
import {
  ArrayUnique,
  IsBoolean,
  IsIn,
  IsInt,
  IsOptional,
  IsString,
  Matches,
  Max,
  Min,
  MinLength,
  validateSync,
} from 'class-validator';
import { SYNC_COLLECTION_PREFIX } from '../bidirectional-sync.constants';
import { SyncConfigurationError } from '../errors/sync.errors';
import {
  DEFAULT_HEALTH_THRESHOLDS,
  HealthThresholds,
  healthThresholdProblems,
  resolveHealthThresholds,
  SYNC_HEALTH_ENV_VARIABLES,
} from '../health/sync-health.options';
import type {
  BidirectionalSyncModuleOptions,
  ConflictResolutionStrategy,
  LocalCaptureMode,
} from './sync-options.interface';

export const DEFAULT_EXCLUDED_COLLECTIONS = ['sessions', 'logs', 'notifications'];

/** Each option's environment variable (the specification's names where it has one). */
export const SYNC_ENV_VARIABLES: Record<keyof BidirectionalSyncModuleOptions, string | undefined> =
  {
    atlasUri: 'ATLAS_MONGODB_URI',
    atlasDbName: 'ATLAS_DB_NAME',
    atlasClientOptions: undefined,
    enabled: 'BIDIRECTIONAL_SYNC_ENABLED',
    collections: 'SYNC_COLLECTIONS',
    excludedCollections: 'BIDIRECTIONAL_EXCLUDED_COLLECTIONS',
    changeStreamBatchSize: 'ATLAS_CHANGE_STREAM_BATCH_SIZE',
    conflictResolutionStrategy: 'CONFLICT_RESOLUTION_STRATEGY',
    originTrackingCleanupInterval: 'ORIGIN_TRACKING_CLEANUP_INTERVAL',
    reconnectInterval: 'CHANGE_STREAM_RECONNECT_INTERVAL',
    maxReconnectAttempts: 'CHANGE_STREAM_MAX_RECONNECT_ATTEMPTS',
    maxReconnectInterval: 'CHANGE_STREAM_MAX_RECONNECT_INTERVAL',
    instanceId: 'SYNC_INSTANCE_ID',
    outboxDrainInterval: 'SYNC_OUTBOX_DRAIN_INTERVAL',
    outboxBatchSize: 'SYNC_OUTBOX_BATCH_SIZE',
    tombstoneRetention: 'SYNC_TOMBSTONE_RETENTION',
    maxConflictRecords: 'SYNC_MAX_CONFLICT_RECORDS',
    applyConcurrency: 'SYNC_APPLY_CONCURRENCY',
    leaseTtl: 'SYNC_LEASE_TTL',
    leaseRenewInterval: 'SYNC_LEASE_RENEW_INTERVAL',
    localCapture: 'SYNC_LOCAL_CAPTURE',
    healthThresholds: undefined, // one variable per threshold: SYNC_HEALTH_ENV_VARIABLES
    autoStart: undefined,
  };

/**
 * The validated configuration every service reads. Built once from the
 * module options by `resolveSyncConfig()`; every default lives here.
 */
export class ResolvedSyncConfig {
  /** Absent only on a device in fleet mode (checked by `resolveSyncConfig()`). */
  @IsOptional()
  @IsString()
  @Matches(/^mongodb(\+srv)?:\/\//, {
    message: 'must be a mongodb:// or mongodb+srv:// connection string',
  })
  atlasUri?: string;

  @IsOptional()
  @IsString()
  @Matches(/^[^/\\. "$*<>:|?]{1,63}$/, { message: 'must be a valid database name' })
  atlasDbName?: string;

  atlasClientOptions: BidirectionalSyncModuleOptions['atlasClientOptions'] = {};

  @IsBoolean()
  enabled = false;

  @IsOptional()
  @IsString({ each: true })
  @ArrayUnique()
  collections?: string[];

  @IsString({ each: true })
  @ArrayUnique()
  excludedCollections: string[] = DEFAULT_EXCLUDED_COLLECTIONS;

  @IsInt()
  @Min(1)
  @Max(10_000)
  changeStreamBatchSize = 100;

  @IsIn(['last-write-wins', 'field-level', 'custom'])
  conflictResolutionStrategy: ConflictResolutionStrategy = 'last-write-wins';

  @IsInt()
  @Min(1000)
  originTrackingCleanupInterval = 60_000;

  @IsInt()
  @Min(10)
  reconnectInterval = 5000;

  @IsInt()
  @Min(1)
  maxReconnectAttempts = 10;

  @IsInt()
  @Min(10)
  maxReconnectInterval = 60_000;

  @IsOptional()
  @IsString()
  @MinLength(3)
  @Matches(/^[A-Za-z0-9_.:-]{3,64}$/, { message: 'must be 3-64 characters of A-Z a-z 0-9 _ . : -' })
  instanceId?: string;

  @IsInt()
  @Min(10)
  outboxDrainInterval = 250;

  @IsInt()
  @Min(1)
  @Max(10_000)
  outboxBatchSize = 500;

  @IsInt()
  @Min(60_000)
  tombstoneRetention = 30 * 24 * 3600 * 1000;

  @IsInt()
  @Min(1)
  maxConflictRecords = 1000;

  @IsInt()
  @Min(1)
  @Max(256)
  applyConcurrency = 16;

  @IsInt()
  @Min(500)
  leaseTtl = 15_000;

  @IsInt()
  @Min(100)
  leaseRenewInterval = 5_000;

  @IsIn(['auto', 'change-stream', 'mongoose-plugin'])
  localCapture: 'auto' | LocalCaptureMode = 'auto';

  /** Validated by `resolveSyncConfig()` (no decorators: a nested, partial object); frozen. */
  healthThresholds: Readonly<HealthThresholds> = DEFAULT_HEALTH_THRESHOLDS;

  @IsBoolean()
  autoStart = true;

  /** True when `name` is synced Atlas → Local (not excluded, in the allow-list if any). */
  pullsCollection(name: string): boolean {
    return this.pushesCollection(name) && !this.excludedCollections.includes(name);
  }

  /** True when `name` is synced Local → Atlas. */
  pushesCollection(name: string): boolean {
    if (name.startsWith(SYNC_COLLECTION_PREFIX) || name.startsWith('system.')) return false;
    return !this.collections || this.collections.includes(name);
  }
}

/**
 * Validates options and fills defaults. Throws `SyncConfigurationError` whose
 * message names each bad option with its environment variable. `atlasUri` is
 * required unless `fleetDevice` (a device in fleet mode reaches Atlas through the relays).
 */
export function resolveSyncConfig(
  options: BidirectionalSyncModuleOptions,
  { fleetDevice = false }: { fleetDevice?: boolean } = {},
): ResolvedSyncConfig {
  const defined = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
  const config = plainToInstance(ResolvedSyncConfig, defined);
  const unknown = Object.keys(defined).filter((k) => !(k in SYNC_ENV_VARIABLES));
  const problems = unknown.map((k) => `unknown option "${k}"`);
  for (const error of validateSync(config, { forbidUnknownValues: false })) {
    const key = error.property as keyof BidirectionalSyncModuleOptions;
    const env = SYNC_ENV_VARIABLES[key];
    const label = env ? `${key} (${env})` : key;
    const value = key === 'atlasUri' ? '<redacted>' : JSON.stringify(error.value);
    problems.push(`${label} = ${value}: ${Object.values(error.constraints ?? {}).join('; ')}`);
  }
  if (!fleetDevice && (options.atlasUri === undefined || options.atlasUri === ''))
    problems.push(
      'atlasUri (ATLAS_MONGODB_URI) is required in direct mode (SYNC_TRANSPORT=direct, the default); only a device in fleet mode (SYNC_TRANSPORT=nats) runs without it',
    );
  problems.push(...healthThresholdProblems(options.healthThresholds));
  if (problems.length) throw new SyncConfigurationError(problems);
  config.healthThresholds = resolveHealthThresholds(options.healthThresholds);
  return config;
}

const parseBoolean = (raw: string): boolean | string =>
  /^(true|1|yes|on)$/i.test(raw) ? true : /^(false|0|no|off)$/i.test(raw) ? false : raw;
const parseInteger = (raw: string): number | string =>
  /^-?\d+$/.test(raw.trim()) ? Number(raw) : raw;
const parseList = (raw: string): string[] =>
  raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);

const ENV_PARSERS: Partial<Record<keyof BidirectionalSyncModuleOptions, (raw: string) => unknown>> =
  {
    enabled: parseBoolean,
    collections: parseList,
    excludedCollections: parseList,
    changeStreamBatchSize: parseInteger,
    originTrackingCleanupInterval: parseInteger,
    reconnectInterval: parseInteger,
    maxReconnectAttempts: parseInteger,
    maxReconnectInterval: parseInteger,
    outboxDrainInterval: parseInteger,
    outboxBatchSize: parseInteger,
    tombstoneRetention: parseInteger,
    maxConflictRecords: parseInteger,
    applyConcurrency: parseInteger,
    leaseTtl: parseInteger,
    leaseRenewInterval: parseInteger,
  };

/**
 * Reads module options from environment variables (the specification's names,
 * and `SYNC_HEALTH_MAX_*` for `healthThresholds`). Unset or empty variables are left out so defaults apply; values are checked
 * by `resolveSyncConfig()` when the module starts.
 *
 * @publicApi
 */
export function syncOptionsFromEnv(
  env: NodeJS.ProcessEnv = process.env,
  overrides: Partial<BidirectionalSyncModuleOptions> = {},
): BidirectionalSyncModuleOptions {
  const options: Record<string, unknown> = {};
  for (const [key, variable] of Object.entries(SYNC_ENV_VARIABLES)) {
    const raw = variable ? env[variable] : undefined;
    if (raw === undefined || raw.trim() === '') continue;
    const parse = ENV_PARSERS[key as keyof BidirectionalSyncModuleOptions];
    options[key] = parse ? parse(raw) : raw.trim();
  }
  const thresholds: Record<string, unknown> = {};
  for (const [key, variable] of Object.entries(SYNC_HEALTH_ENV_VARIABLES)) {
    const raw = env[variable];
    if (raw !== undefined && raw.trim() !== '') thresholds[key] = parseInteger(raw);
  }
  if (Object.keys(thresholds).length) options.healthThresholds = thresholds;
  return { ...(options as unknown as BidirectionalSyncModuleOptions), ...overrides };
}
