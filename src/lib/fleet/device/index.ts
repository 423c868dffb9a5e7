export * from './fleet-change-consumer.service';
export * from './fleet-position.repository';
export * from './nats-push-sink';
export * from './nats-rebaseline-source';
