export * from './embedded-mongo-server';
export * from './embedded-nats-server';
export * from './nats-config-render';
