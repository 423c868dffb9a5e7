import { Inject } from '@nestjs/common';
import { FLEET_CONFIG } from './fleet.constants';

/** Injects the validated `ResolvedFleetConfig`. @publicApi */
export const InjectFleetConfig = (): ParameterDecorator => Inject(FLEET_CONFIG);
