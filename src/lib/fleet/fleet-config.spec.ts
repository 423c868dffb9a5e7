import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FleetConfigurationError } from './fleet.errors';
import { FLEET_ENV_VARIABLES, fleetOptionsFromEnv, resolveFleetConfig } from './fleet-config';

describe('fleet configuration', () => {
  it('defaults to direct mode, with documented defaults', () => {
    const config = resolveFleetConfig(fleetOptionsFromEnv({}));
    expect(config).toMatchObject({
      transport: 'direct',
      role: 'device',
      servers: ['nats://127.0.0.1:4222'],
      changesStream: 'SYNC_CHANGES',
      pushStream: 'SYNC_PUSH',
      changesMaxAge: 7 * 24 * 3600 * 1000,
      changesMaxBytes: 1024 ** 3,
      pushMaxBytes: 1024 ** 3,
      duplicateWindow: 300_000,
      streamReplicas: 1,
      pushPartitions: 16,
      maxReconnectAttempts: -1,
    });
    expect(config.enabled).toBe(false);
    expect(config.authMethod).toBe('none');
  });

  it('reads the environment, with the device id falling back to SYNC_INSTANCE_ID', () => {
    const options = fleetOptionsFromEnv({
      SYNC_TRANSPORT: 'nats',
      NATS_URL: 'nats://a:4222, tls://b:4222',
      NATS_USER: 'device-7',
      NATS_PASSWORD: ' secret with spaces ',
      SYNC_INSTANCE_ID: 'device-7',
      NATS_STREAM_REPLICAS: '3',
      NATS_PUSH_PARTITIONS: '32',
    });
    const config = resolveFleetConfig(options);
    expect(config).toMatchObject({
      transport: 'nats',
      servers: ['nats://a:4222', 'tls://b:4222'],
      user: 'device-7',
      password: ' secret with spaces ',
      deviceId: 'device-7',
      streamReplicas: 3,
      pushPartitions: 32,
    });
    expect(config.authMethod).toBe('user-password');
    expect(fleetOptionsFromEnv({ NATS_DEVICE_ID: 'a', SYNC_INSTANCE_ID: 'b' }).deviceId).toBe('a');
  });

  it('names each bad option with its variable and never shows a secret', () => {
    let error: FleetConfigurationError | undefined;
    try {
      resolveFleetConfig({
        ...fleetOptionsFromEnv({
          SYNC_TRANSPORT: 'mqtt',
          NATS_URL: 'http://x',
          NATS_STREAM_REPLICAS: '2',
          NATS_DEVICE_ID: 'has.dot',
        }),
        password: 12345 as unknown as string,
      });
    } catch (err) {
      error = err as FleetConfigurationError;
    }
    expect(error).toBeInstanceOf(FleetConfigurationError);
    const text = error!.message;
    expect(text).toMatch(/transport \(SYNC_TRANSPORT\) = "mqtt"/);
    expect(text).toMatch(/servers \(NATS_URL\)/);
    expect(text).toMatch(/streamReplicas \(NATS_STREAM_REPLICAS\) = 2/);
    expect(text).toMatch(/deviceId \(NATS_DEVICE_ID\) = "has.dot": .*subject token/);
    expect(text).toMatch(/password \(NATS_PASSWORD\) = <redacted>/);
    expect(text).not.toContain('12345');
  });

  it('checks combinations: one authentication, user with password, no credentials in URLs, a device id', () => {
    const problems = (options: Parameters<typeof resolveFleetConfig>[0]): string => {
      try {
        resolveFleetConfig(options);
        return '';
      } catch (err) {
        return (err as Error).message;
      }
    };
    expect(problems({ token: 't', credsFile: '/x.creds' })).toMatch(/set only one/);
    expect(problems({ user: 'u' })).toMatch(/set both or neither/);
    const withSecret = problems({ servers: ['nats://u:hunter2@host:4222'] });
    expect(withSecret).toMatch(/must not hold credentials/);
    expect(withSecret).not.toContain('hunter2');
    expect(problems({ transport: 'nats' })).toMatch(/deviceId .* is required/);
    expect(problems({ transport: 'nats', role: 'relay' })).toBe('');
    expect(problems({ transport: 'nats', deviceId: 'device-1' })).toBe('');
  });

  it('.env.example lists every fleet variable, with the defaults', () => {
    const example = readFileSync(join(__dirname, '..', '..', '..', '.env.example'), 'utf8');
    const env = Object.fromEntries(
      [...example.matchAll(/^#? ?([A-Z0-9_]+)=(.*)$/gm)].map((m) => [m[1], m[2]]),
    );
    const variables = Object.values(FLEET_ENV_VARIABLES).filter((v): v is string => !!v);
    expect(variables.filter((v) => !(v in env))).toEqual([]);
    const active = Object.fromEntries(
      [...example.matchAll(/^([A-Z0-9_]+)=(.*)$/gm)].map((m) => [m[1], m[2]]),
    );
    const fromExample = resolveFleetConfig(fleetOptionsFromEnv(active));
    expect({ ...fromExample }).toEqual({ ...resolveFleetConfig({}) });
  });
});
