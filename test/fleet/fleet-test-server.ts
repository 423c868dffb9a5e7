import { randomBytes } from 'node:crypto';
import {
  EmbeddedNatsServer,
  EmbeddedNatsServerOptions,
  fleetServerConfigFile,
} from '../../src/dev-servers/embedded-nats-server';
import { natsConfigString } from '../../src/dev-servers/nats-config-render';
import { FleetModuleOptions, NatsConnectionService, resolveFleetConfig } from '../../src/lib/fleet';

/** The users docs/nats/fleet-accounts.conf defines, with a fresh password each per suite. */
export interface FleetTestPasswords {
  relay: string;
  'device-1': string;
  'device-2': string;
  'device-3': string;
}

/**
 * A real nats-server running docs/nats/fleet-server.conf (rendered with a free port and a
 * temp store), with random passwords given through the environment variables it reads.
 */
export class FleetTestServer {
  private readonly connections: NatsConnectionService[] = [];

  private constructor(
    readonly server: EmbeddedNatsServer,
    readonly passwords: FleetTestPasswords,
  ) {}

  static async start(
    name: string,
    options: Partial<EmbeddedNatsServerOptions> = {},
  ): Promise<FleetTestServer> {
    const secret = (): string => randomBytes(12).toString('base64url');
    const passwords: FleetTestPasswords = {
      relay: secret(),
      'device-1': secret(),
      'device-2': secret(),
      'device-3': secret(),
    };
    const server = await EmbeddedNatsServer.start({
      name,
      configFile: fleetServerConfigFile(),
      configEnv: {
        FLEET_RELAY_PASSWORD: natsConfigString(passwords.relay),
        FLEET_DEVICE_1_PASSWORD: natsConfigString(passwords['device-1']),
        FLEET_DEVICE_2_PASSWORD: natsConfigString(passwords['device-2']),
        FLEET_DEVICE_3_PASSWORD: natsConfigString(passwords['device-3']),
      },
      ...options,
    });
    return new FleetTestServer(server, passwords);
  }

  /** A connection service for the relay user (not yet connected). */
  relay(options: FleetModuleOptions = {}): NatsConnectionService {
    return this.track({
      transport: 'nats',
      role: 'relay',
      user: 'relay',
      password: this.passwords.relay,
      ...options,
    });
  }

  /** A connection service for one device user (not yet connected). */
  device(
    deviceId: keyof Omit<FleetTestPasswords, 'relay'>,
    options: FleetModuleOptions = {},
  ): NatsConnectionService {
    return this.track({
      transport: 'nats',
      role: 'device',
      deviceId,
      user: deviceId,
      password: this.passwords[deviceId],
      ...options,
    });
  }

  private track(options: FleetModuleOptions): NatsConnectionService {
    const service = new NatsConnectionService(
      resolveFleetConfig({ servers: [this.server.url], reconnectTimeWait: 100, ...options }),
    );
    this.connections.push(service);
    return service;
  }

  /**
   * The environment of a relay process (`npm run relay`) on this server for one Atlas
   * database, as the relay user; `overrides` win.
   */
  relayEnv(
    atlas: { uri: string; dbName: string },
    { pushPartitions, leaseTtlMs }: { pushPartitions: number; leaseTtlMs: number },
    overrides: Record<string, string> = {},
  ): Record<string, string> {
    return {
      ATLAS_MONGODB_URI: atlas.uri,
      ATLAS_DB_NAME: atlas.dbName,
      NATS_URL: this.server.url,
      NATS_USER: 'relay',
      NATS_PASSWORD: this.passwords.relay,
      NATS_PUSH_PARTITIONS: String(pushPartitions),
      SYNC_TRANSPORT: 'nats',
      SYNC_FLEET_ROLE: 'relay',
      SYNC_LEASE_TTL: String(leaseTtlMs),
      SYNC_RECONNECT_INTERVAL: '200',
      ...overrides,
    };
  }

  /** A device's `fleet` module options on this server, as its own NATS user. */
  deviceFleet(
    deviceId: keyof Omit<FleetTestPasswords, 'relay'>,
    pushPartitions: number,
  ): FleetModuleOptions {
    return {
      transport: 'nats',
      servers: [this.server.url],
      user: deviceId,
      password: this.passwords[deviceId],
      pushPartitions,
      reconnectTimeWait: 100,
    };
  }

  /** Closes every connection made here, then stops the server and removes its files. */
  async destroy(): Promise<void> {
    for (const c of this.connections) await c.close().catch(() => undefined);
    await this.server.destroy();
  }
}
