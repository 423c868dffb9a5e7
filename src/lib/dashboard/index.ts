export * from './sync-dashboard.constants';
export * from './sync-dashboard-alerts';
export * from './sync-dashboard-history';
export * from './sync-dashboard.service';
export * from './sync-dashboard.controller';
