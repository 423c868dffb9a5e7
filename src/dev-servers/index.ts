export * from './embedded-mongo-server';
