import { plainToInstance } from 'class-transformer';
import {
  ArrayMinSize,
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
import { FleetConfigurationError, redactNatsMessage } from './fleet.errors';
import type { FleetModuleOptions, FleetRole, SyncTransport } from './fleet-options.interface';

const DAY_MS = 24 * 3600 * 1000;
const GIB = 1024 ** 3;
/** A subject token and JetStream name: no `.`, `*`, `>`, spaces or path separators. */
const NAME_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/** Each option's environment variable. */
export const FLEET_ENV_VARIABLES: Record<keyof FleetModuleOptions, string | undefined> = {
  transport: 'SYNC_TRANSPORT',
  role: 'SYNC_FLEET_ROLE',
  servers: 'NATS_URL',
  credsFile: 'NATS_CREDS',
  user: 'NATS_USER',
  password: 'NATS_PASSWORD',
  token: 'NATS_TOKEN',
  deviceId: 'NATS_DEVICE_ID',
  changesStream: 'NATS_CHANGES_STREAM',
  pushStream: 'NATS_PUSH_STREAM',
  changesMaxAge: 'NATS_CHANGES_MAX_AGE',
  changesMaxBytes: 'NATS_CHANGES_MAX_BYTES',
  pushMaxBytes: 'NATS_PUSH_MAX_BYTES',
  duplicateWindow: 'NATS_DUPLICATE_WINDOW',
  streamReplicas: 'NATS_STREAM_REPLICAS',
  pushPartitions: 'NATS_PUSH_PARTITIONS',
  connectTimeout: 'NATS_CONNECT_TIMEOUT',
  reconnectTimeWait: 'NATS_RECONNECT_WAIT',
  maxReconnectAttempts: 'NATS_MAX_RECONNECT_ATTEMPTS',
  connectionName: undefined,
};

/** Options whose values never appear in an error message. */
const SECRET_OPTIONS = new Set<keyof FleetModuleOptions>(['password', 'token']);

/**
 * The validated fleet configuration. Built once by `resolveFleetConfig()`; every default
 * lives here.
 */
export class ResolvedFleetConfig {
  @IsIn(['direct', 'nats'])
  transport: SyncTransport = 'direct';

  @IsIn(['device', 'relay'])
  role: FleetRole = 'device';

  @IsString({ each: true })
  @ArrayMinSize(1)
  @Matches(/^(nats|tls|ws|wss):\/\/[^\s,]+$/, {
    each: true,
    message: 'must be nats://, tls://, ws:// or wss:// URLs',
  })
  servers: string[] = ['nats://127.0.0.1:4222'];

  @IsOptional()
  @IsString()
  @MinLength(1)
  credsFile?: string;

  @IsOptional()
  @IsString()
  @MinLength(1)
  user?: string;

  @IsOptional()
  @IsString()
  password?: string;

  @IsOptional()
  @IsString()
  @MinLength(1)
  token?: string;

  @IsOptional()
  @IsString()
  @Matches(NAME_PATTERN, {
    message: 'must be 1-64 characters of A-Z a-z 0-9 _ - (a subject token)',
  })
  deviceId?: string;

  @IsString()
  @Matches(NAME_PATTERN, { message: 'must be 1-64 characters of A-Z a-z 0-9 _ -' })
  changesStream = 'SYNC_CHANGES';

  @IsString()
  @Matches(NAME_PATTERN, { message: 'must be 1-64 characters of A-Z a-z 0-9 _ -' })
  pushStream = 'SYNC_PUSH';

  @IsInt()
  @Min(60_000)
  changesMaxAge = 7 * DAY_MS;

  @IsInt()
  @Min(-1)
  changesMaxBytes = GIB;

  @IsInt()
  @Min(-1)
  pushMaxBytes = GIB;

  @IsInt()
  @Min(1000)
  duplicateWindow = 5 * 60_000;

  @IsInt()
  @IsIn([1, 3, 5])
  streamReplicas = 1;

  @IsInt()
  @Min(1)
  @Max(1024)
  pushPartitions = 16;

  @IsInt()
  @Min(100)
  connectTimeout = 5000;

  @IsInt()
  @Min(10)
  reconnectTimeWait = 1000;

  @IsInt()
  @Min(-1)
  maxReconnectAttempts = -1;

  @IsOptional()
  @IsString()
  connectionName?: string;

  /** True in fleet mode. */
  get enabled(): boolean {
    return this.transport === 'nats';
  }

  /** The authentication this configuration uses, for status and logs (no secret). */
  get authMethod(): 'creds' | 'user-password' | 'token' | 'none' {
    if (this.credsFile) return 'creds';
    if (this.user !== undefined) return 'user-password';
    if (this.token) return 'token';
    return 'none';
  }

  /** The servers without any credentials written into their URLs. */
  get redactedServers(): string[] {
    return this.servers.map(redactNatsMessage);
  }
}

/** Problems no single-field rule can see. */
function crossFieldProblems(config: ResolvedFleetConfig): string[] {
  const problems: string[] = [];
  const methods = [config.credsFile, config.user ?? config.password, config.token].filter(
    (v) => v !== undefined,
  );
  if (methods.length > 1)
    problems.push(
      'NATS_CREDS, NATS_USER/NATS_PASSWORD and NATS_TOKEN are alternatives: set only one of them',
    );
  if ((config.user === undefined) !== (config.password === undefined))
    problems.push('user (NATS_USER) and password (NATS_PASSWORD) go together: set both or neither');
  if (config.servers.some((s) => /\/\/[^@/]+@/.test(s)))
    problems.push(
      'servers (NATS_URL) must not hold credentials: use NATS_USER/NATS_PASSWORD, NATS_TOKEN or NATS_CREDS',
    );
  if (config.enabled && config.role === 'device' && !config.deviceId)
    problems.push(
      'deviceId (NATS_DEVICE_ID, default SYNC_INSTANCE_ID) is required for a device in fleet mode',
    );
  return problems;
}

/**
 * Validates fleet options and fills defaults. Throws `FleetConfigurationError` whose message
 * names each bad option with its environment variable and never shows a secret.
 *
 * @publicApi
 */
export function resolveFleetConfig(options: FleetModuleOptions = {}): ResolvedFleetConfig {
  const defined = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
  const config = plainToInstance(ResolvedFleetConfig, defined);
  const problems = Object.keys(defined)
    .filter((k) => !(k in FLEET_ENV_VARIABLES))
    .map((k) => `unknown option "${k}"`);
  for (const error of validateSync(config, { forbidUnknownValues: false })) {
    const key = error.property as keyof FleetModuleOptions;
    const env = FLEET_ENV_VARIABLES[key];
    const label = env ? `${key} (${env})` : key;
    const value = SECRET_OPTIONS.has(key)
      ? '<redacted>'
      : redactNatsMessage(JSON.stringify(error.value) ?? 'undefined');
    problems.push(`${label} = ${value}: ${Object.values(error.constraints ?? {}).join('; ')}`);
  }
  if (!problems.length) problems.push(...crossFieldProblems(config));
  if (problems.length) throw new FleetConfigurationError(problems);
  return config;
}

const parseInteger = (raw: string): number | string =>
  /^-?\d+$/.test(raw.trim()) ? Number(raw) : raw;
const parseList = (raw: string): string[] =>
  raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);

const ENV_PARSERS: Partial<Record<keyof FleetModuleOptions, (raw: string) => unknown>> = {
  servers: parseList,
  changesMaxAge: parseInteger,
  changesMaxBytes: parseInteger,
  pushMaxBytes: parseInteger,
  duplicateWindow: parseInteger,
  streamReplicas: parseInteger,
  pushPartitions: parseInteger,
  connectTimeout: parseInteger,
  reconnectTimeWait: parseInteger,
  maxReconnectAttempts: parseInteger,
};

/**
 * Reads fleet options from environment variables. Unset or empty variables are left out so
 * defaults apply; `NATS_DEVICE_ID` falls back to `SYNC_INSTANCE_ID`. Values are checked by
 * `resolveFleetConfig()`. A password or token is taken as it is (not trimmed).
 *
 * @publicApi
 */
export function fleetOptionsFromEnv(
  env: NodeJS.ProcessEnv = process.env,
  overrides: Partial<FleetModuleOptions> = {},
): FleetModuleOptions {
  const options: Record<string, unknown> = {};
  for (const [key, variable] of Object.entries(FLEET_ENV_VARIABLES)) {
    const raw = variable ? env[variable] : undefined;
    if (raw === undefined || raw.trim() === '') continue;
    const name = key as keyof FleetModuleOptions;
    const parse = ENV_PARSERS[name];
    options[key] = parse ? parse(raw) : SECRET_OPTIONS.has(name) ? raw : raw.trim();
  }
  if (options.deviceId === undefined && env.SYNC_INSTANCE_ID?.trim())
    options.deviceId = env.SYNC_INSTANCE_ID.trim();
  return { ...(options as FleetModuleOptions), ...overrides };
}
