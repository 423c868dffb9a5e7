import { INestApplication } from '@nestjs/common';
import { EventEmitterModule } from '@nestjs/event-emitter';
import { getConnectionToken, MongooseModule } from '@nestjs/mongoose';
import { ScheduleModule } from '@nestjs/schedule';
import { Test } from '@nestjs/testing';
import { Db, MongoClient, ObjectId } from 'mongodb';
import mongoose, { type Connection } from 'mongoose';
import request from 'supertest';
import { SyncApiModule } from '../../src/lib/api/sync-api.module';
import { BidirectionalSyncModule } from '../../src/lib/bidirectional-sync.module';
import {
  ChangeProcessorService,
  type IncomingChange,
} from '../../src/lib/processor/change-processor.service';
import { MongoHarness, uniqueDbName, waitFor } from '../support/mongo-harness';
import { SyncDevice } from '../support/sync-device';

const API_KEY = 'dead-letter-key-0123456789abcdef';
const PATH = '/api/sync/bidirectional/dead-letters';

/** The host's validation, which the test "fixes" later, as an operator would before a retry. */
const validation = { rejectNegativePrices: true };
const GadgetSchema = new mongoose.Schema(
  {
    _id: String,
    name: { type: String, required: true },
    price: {
      type: Number,
      validate: {
        validator: (v: number) => !validation.rejectNegativePrices || v >= 0,
        message: 'price must not be negative',
      },
    },
  },
  { collection: 'gadgets' },
);

/**
 * Dead letters over the API: the host's validation rejects a change from
 * Atlas, the change is listed, retried (rejected again, then applied once
 * the validation accepts it) and discarded. API-key guarded, validated ids.
 */
describe('dead letters: list, retry, discard', () => {
  const harness = new MongoHarness();
  let app: INestApplication;
  let atlasClient: MongoClient;
  let other: SyncDevice | undefined;
  let local: Db;
  const http = () => request(app.getHttpServer());
  const key = { 'x-api-key': API_KEY };

  beforeAll(async () => {
    const [localServer, atlasServer, otherServer] = await harness.start(3, {
      name: 'dead-letters',
    });
    const atlasDbName = uniqueDbName('atlas');
    atlasClient = await harness.client(atlasServer);
    const moduleRef = await Test.createTestingModule({
      imports: [
        ScheduleModule.forRoot(),
        EventEmitterModule.forRoot(),
        MongooseModule.forRoot(localServer.uri, { dbName: uniqueDbName('local') }),
        MongooseModule.forFeature([{ name: 'Gadget', schema: GadgetSchema }]),
        BidirectionalSyncModule.forRoot({
          atlasUri: atlasServer.uri,
          atlasDbName,
          enabled: true,
          outboxDrainInterval: 50,
          reconnectInterval: 200,
        }),
        SyncApiModule.forRoot({ apiKey: API_KEY, throttle: { ttl: 60_000, limit: 10_000 } }),
      ],
    }).compile();
    app = moduleRef.createNestApplication({ logger: false });
    await app.init();
    local = app.get<Connection>(getConnectionToken()).db as unknown as Db;
    // Another device, whose application has no such validation.
    other = await SyncDevice.start({
      localUri: otherServer.uri,
      localDbName: uniqueDbName('other'),
      atlasUri: atlasServer.uri,
      atlasDbName,
      instanceId: 'other-device',
    });
  }, 120_000);

  afterAll(async () => {
    await other?.close();
    await app?.close();
    await atlasClient?.close(true);
    await harness.stopAll();
  }, 60_000);

  /** Another device writes a gadget this host's validation rejects. */
  async function rejectedGadget(id: string): Promise<void> {
    await other!.db.collection('gadgets').insertOne({ _id: id as never, name: id, price: -5 });
    await waitFor(
      async () =>
        (await local.collection('_sync_dead_letters').countDocuments({ documentId: id })) === 1,
      { message: `${id} dead-lettered`, timeoutMs: 20_000 },
    );
  }

  const list = async (query = '') => (await http().get(`${PATH}${query}`).expect(200)).body;

  it('lists a change the host rejected, filtered by collection', async () => {
    await rejectedGadget('g1');
    const body = await list();
    expect(body.totalDeadLetters).toBe(1);
    expect(body.deadLetters[0]).toMatchObject({
      id: expect.stringMatching(/^[0-9a-f]{24}$/),
      collection: 'gadgets',
      documentId: 'g1',
      version: expect.any(String),
      retryable: true,
    });
    expect(body.deadLetters[0].error).toContain('price must not be negative');
    expect((await list('?collection=menuitems')).totalDeadLetters).toBe(0);
    await http().get(`${PATH}?limit=0`).expect(400);
    await http().get(`${PATH}?sort=1`).expect(400);
  });

  it('the same change delivered again (a resumed stream, a re-baseline page) stays one dead letter', async () => {
    const record = await local.collection('_sync_dead_letters').findOne({ documentId: 'g1' });
    const again: IncomingChange = {
      collection: 'gadgets',
      id: 'g1',
      operation: 'insert',
      doc: record!.document,
      stamp: record!.document._sync,
    };
    await app.get(ChangeProcessorService).applyChanges([again]);
    const body = await list();
    expect(body.totalDeadLetters).toBe(1);
    expect(body.deadLetters[0].version).toBe(record!.version);
    expect(await local.collection('gadgets').findOne({ _id: 'g1' as never })).toBeNull();
  });

  it('refuses retry and discard without the right key, and bad or unknown ids', async () => {
    const [{ id }] = (await list()).deadLetters;
    await http().post(`${PATH}/${id}/retry`).expect(401);
    await http().post(`${PATH}/${id}/retry`).set('x-api-key', 'wrong-key-0123456789').expect(401);
    await http().delete(`${PATH}/${id}`).expect(401);
    const bad = await http().post(`${PATH}/not-an-id/retry`).set(key).expect(400);
    expect(JSON.stringify(bad.body.message)).toContain('id must be a dead letter id');
    await http().delete(`${PATH}/not-an-id`).set(key).expect(400);
    const unknown = new ObjectId().toHexString();
    await http().post(`${PATH}/${unknown}/retry`).set(key).expect(404);
    await http().delete(`${PATH}/${unknown}`).set(key).expect(404);
    expect((await list()).totalDeadLetters).toBe(1);
  });

  it('a retry the host rejects again replaces the dead letter with a new one', async () => {
    const [{ id }] = (await list()).deadLetters;
    const res = await http().post(`${PATH}/${id}/retry`).set(key).expect(422);
    expect(res.body).toMatchObject({ success: false, outcome: 'rejected' });
    expect(res.body.message).toContain('price must not be negative');
    const after = await list();
    expect(after.totalDeadLetters).toBe(1);
    expect(after.deadLetters[0].id).toBe(res.body.deadLetterId);
    expect(after.deadLetters[0].id).not.toBe(id);
    expect(await local.collection('gadgets').findOne({ _id: 'g1' as never })).toBeNull();
  });

  it('once the validation accepts it, a retry applies it through the normal path', async () => {
    validation.rejectNegativePrices = false;
    try {
      const [{ id, version }] = (await list()).deadLetters;
      const res = await http().post(`${PATH}/${id}/retry`).set(key).expect(200);
      expect(res.body).toMatchObject({ success: true, outcome: 'applied' });
      const gadget = await local.collection('gadgets').findOne({ _id: 'g1' as never });
      expect(gadget).toMatchObject({ name: 'g1', price: -5, _sync: { v: version } });
      expect((await list()).totalDeadLetters).toBe(0);
      await http().post(`${PATH}/${id}/retry`).set(key).expect(404);
    } finally {
      validation.rejectNegativePrices = true;
    }
  });

  it('discard drops a dead letter and applies nothing', async () => {
    await rejectedGadget('g2');
    const [{ id }] = (await list()).deadLetters;
    const res = await http().delete(`${PATH}/${id}`).set(key).expect(200);
    expect(res.body).toMatchObject({ success: true });
    expect((await list()).totalDeadLetters).toBe(0);
    expect(await local.collection('gadgets').findOne({ _id: 'g2' as never })).toBeNull();
    await http().delete(`${PATH}/${id}`).set(key).expect(404);
  });

  it('a dead letter holding no versioned change cannot be retried (409), only discarded', async () => {
    // What the processor stores for an event it could not even read (no version).
    const { insertedId } = await local.collection('_sync_dead_letters').insertOne({
      collection: 'gadgets',
      operation: 'update',
      error: 'update event without ns.coll or documentKey._id',
      errorName: 'InvalidChangeError',
      at: new Date(),
    });
    const id = insertedId.toHexString();
    expect((await list()).deadLetters[0]).toMatchObject({ id, retryable: false });
    await http().post(`${PATH}/${id}/retry`).set(key).expect(409);
    await http().delete(`${PATH}/${id}`).set(key).expect(200);
  });
});
