export * from './fleet.constants';
export * from './fleet.errors';
export * from './fleet-config';
export * from './fleet-message.codec';
export * from './fleet-options.interface';
export * from './fleet-streams';
export * from './fleet-subjects';
export * from './nats-connection.service';
