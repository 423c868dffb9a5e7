export * from './relay-change-publisher.service';
export * from './relay-health.service';
export * from './relay-http.controller';
export * from './relay-prometheus.service';
export * from './relay-push-consumer.service';
export * from './relay.module';
export * from './relay.service';
export * from './relay-rebaseline-responder.service';
