import { INestApplication, Injectable, Module } from '@nestjs/common';
import { EventEmitterModule } from '@nestjs/event-emitter';
import { MongooseModule } from '@nestjs/mongoose';
import { ScheduleModule } from '@nestjs/schedule';
import { Test } from '@nestjs/testing';
import mongoose from 'mongoose';
import {
  BidirectionalSyncModule,
  BidirectionalSyncService,
  InjectSyncConfig,
  ResolvedSyncConfig,
  SyncHealthIndicator,
  SyncHealthModule,
} from '../../src/lib';
import { MongoHarness, TestMongoServer, uniqueDbName, waitFor } from '../support/mongo-harness';

const ATLAS_URI = 'ATLAS_URI';

/** A host's feature module that does not import the engine. */
@Injectable()
class HostFeature {
  constructor(
    readonly sync: BidirectionalSyncService,
    @InjectSyncConfig() readonly config: ResolvedSyncConfig,
  ) {}
}

@Module({ providers: [HostFeature] })
class HostFeatureModule {}

describe('module wiring: forRootAsync, isGlobal, SyncHealthModule without the API', () => {
  const harness = new MongoHarness();
  let local: TestMongoServer;
  let atlas: TestMongoServer;
  const apps: INestApplication[] = [];

  beforeAll(async () => {
    [local, atlas] = await harness.start(2, { name: 'wiring' });
  }, 60_000);

  afterAll(async () => {
    await Promise.all(apps.map((a) => a.close()));
    await harness.stopAll();
  });

  /** Builds a host; a module that fails to build closes the connections it opened. */
  const build = async (imports: NonNullable<Parameters<typeof Module>[0]['imports']>) => {
    const before = new Set(mongoose.connections);
    try {
      const moduleRef = await Test.createTestingModule({
        imports: [
          ScheduleModule.forRoot(),
          EventEmitterModule.forRoot(),
          MongooseModule.forRoot(local.uri, { dbName: uniqueDbName('wiring_local') }),
          ...imports,
        ],
      }).compile();
      const app = moduleRef.createNestApplication({ logger: false });
      apps.push(app);
      await app.init();
      return app;
    } catch (err) {
      await Promise.all(
        mongoose.connections.filter((c) => !before.has(c)).map((c) => c.close(true)),
      );
      throw err;
    }
  };

  it('forRootAsync takes its options from an imported module; SyncHealthModule reads that engine', async () => {
    @Module({ providers: [{ provide: ATLAS_URI, useValue: atlas.uri }], exports: [ATLAS_URI] })
    class AtlasUriModule {}

    const app = await build([
      BidirectionalSyncModule.forRootAsync({
        imports: [AtlasUriModule],
        inject: [ATLAS_URI],
        useFactory: async (atlasUri: string) => ({
          atlasUri,
          atlasDbName: uniqueDbName('wiring_atlas'),
          enabled: true,
          healthThresholds: { maxConflictsPerHour: 7 },
        }),
      }),
      SyncHealthModule,
    ]);
    const indicator = app.get(SyncHealthIndicator);
    const result = await waitFor(
      async () => {
        const r = await indicator.isHealthy('sync');
        return r.sync.status === 'up' && r.sync.health === 'healthy' ? r : undefined;
      },
      { message: 'healthy through SyncHealthModule' },
    );
    expect(result?.sync).toMatchObject({ status: 'up', enabled: true });
    expect((await indicator.report()).thresholds).toEqual({
      maxLagMs: 30_000,
      maxDisconnectedMs: 300_000,
      maxConflictsPerHour: 7,
    });
    expect(await indicator.pingAtlas('atlas')).toMatchObject({ atlas: { status: 'up' } });
  });

  it('isGlobal makes the services injectable in every module, and only then', async () => {
    const options = () => ({
      atlasUri: atlas.uri,
      atlasDbName: uniqueDbName('wiring_atlas'),
      autoStart: false,
    });
    const app = await build([
      BidirectionalSyncModule.forRoot({ ...options(), isGlobal: true }),
      HostFeatureModule,
    ]);
    const feature = app.get(HostFeature);
    expect(feature.sync).toBe(app.get(BidirectionalSyncService));
    expect(feature.config).toBeInstanceOf(ResolvedSyncConfig);
    expect(feature.config.autoStart).toBe(false);

    // Without isGlobal, only the narrow engine view the health module uses is application-wide.
    await expect(
      build([BidirectionalSyncModule.forRoot(options()), HostFeatureModule]),
    ).rejects.toThrow(/HostFeature/);
  });
});
