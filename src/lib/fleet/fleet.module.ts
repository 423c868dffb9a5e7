import { DynamicModule, Module } from '@nestjs/common';
import { FLEET_CONFIG } from './fleet.constants';
import { resolveFleetConfig } from './fleet-config';
import type { FleetModuleOptions } from './fleet-options.interface';
import { NatsConnectionService } from './nats-connection.service';

/**
 * Fleet mode's foundation for a Nest application: the validated `ResolvedFleetConfig`
 * (`@InjectFleetConfig()`) and the `NatsConnectionService`, closed on shutdown. It does not
 * connect by itself: the relay and the device transport (to come) call `connect()` when
 * `transport` is `nats`. Options are validated here, so a bad value stops start-up.
 *
 * @publicApi
 */
@Module({})
export class FleetModule {
  static forRoot(options: FleetModuleOptions = {}, isGlobal = false): DynamicModule {
    return {
      module: FleetModule,
      global: isGlobal,
      providers: [
        { provide: FLEET_CONFIG, useValue: resolveFleetConfig(options) },
        NatsConnectionService,
      ],
      exports: [FLEET_CONFIG, NatsConnectionService],
    };
  }
}
