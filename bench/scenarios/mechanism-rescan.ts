import type { AnyBulkWriteOperation } from 'mongodb';
import { issuedStamp, stamped } from '../../src/lib/common/engine-writes';
import { HybridLogicalClock } from '../../src/lib/common/hybrid-logical-clock';
import { LocalRescanService } from '../../src/lib/initial-sync/local-rescan.service';
import { pagesById } from '../../src/lib/initial-sync/pages-by-id';
import { SyncDevice } from '../../test/support/sync-device';
import { deviceSpec, sleep, type BenchContext } from '../lib/context';
import { makeDoc } from '../lib/docs';
import { dropDatabases, uniqueDbName } from '../lib/servers';

/** Documents in the re-scanned collection, and the share of them changed without the engine. */
export const RESCAN_DOCS = 5000;
export const RESCAN_CHANGED_FRACTION = 0.1;
const COLL = 'rescan';
const WAIT_CAP_MS = 120_000;

export interface RescanRun {
  scanned: number;
  /** Documents the re-scan found changed and captured (must equal those changed). */
  pushed: number;
  /** The engine's own figure (health `localRescan.docsPerSecond`): pages read, digests checked, changes captured and pushed, checkpoints saved. */
  docsPerSecond: number;
  /** Baseline: one raw `find({}).toArray()` of the same collection on the same server. */
  findDocsPerSecond: number;
  /**
   * The re-scan's own read alone (`pagesById`: pages of 500 in `_id` order,
   * each a range query from the last `_id`), no digest, no capture: what of
   * the re-scan's time is the server's paging.
   */
  pagedReadDocsPerSecond: number;
  /** From the restart until Atlas holds every change found. */
  pushedToAtlasMs: number;
}

async function until(what: string, check: () => Promise<boolean>): Promise<void> {
  const deadline = performance.now() + WAIT_CAP_MS;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`mechanism re-scan: ${what} not reached`);
    await sleep(100);
  }
}

/**
 * Issue 14's local history loss, measured: a device (in this process) holds
 * RESCAN_DOCS synced documents, its sync is stopped, the application changes
 * a tenth of them with the raw driver, and a re-scan is recorded (as the
 * capture does when it finds its history gone; pruning an oplog needs a
 * server-specific command, the re-scan does not care why it runs). On
 * restart the re-scan runs before the capture streams again.
 */
export async function measureRescan(ctx: BenchContext, r: number): Promise<RescanRun> {
  const localDb = uniqueDbName(`mrl${r}`);
  const atlasDb = uniqueDbName(`mra${r}`);
  const spec = deviceSpec(ctx, ctx.localA, localDb, atlasDb, `mech-${r}`);
  const device = await SyncDevice.start(spec);
  try {
    const local = ctx.localA.client.db(localDb).collection<any>(COLL);
    const atlas = ctx.atlas.client.db(atlasDb).collection<any>(COLL);
    await until('device ready', async () => {
      const h = await device.sync.checkBidirectionalHealth();
      return h.atlasListener.connected && h.localCapture.connected;
    });
    // Synced documents as another device pushed them (stamp and digest), applied by this one.
    const peer = new HybridLogicalClock('bench-peer');
    const ids = Array.from({ length: RESCAN_DOCS }, (_, i) => `d${String(i).padStart(7, '0')}`);
    for (let k = 0; k < ids.length; k += 1000)
      await atlas.insertMany(
        ids.slice(k, k + 1000).map((id) => {
          const doc = makeDoc(id, 1);
          return stamped(doc, id, issuedStamp(doc, id, { v: peer.tick(), o: 'bench-peer' }));
        }),
        { ordered: false },
      );
    await until(
      'every document applied',
      async () => (await local.countDocuments({ '_sync.h': { $exists: true } })) === RESCAN_DOCS,
    );
    // Both positions saved, so the restart resumes instead of re-baselining.
    await until(
      'resume tokens saved',
      async () =>
        (await device.db.collection<{ _id: string }>('_sync_metadata').countDocuments({
          _id: { $in: [`resume:${spec.instanceId}:local`, `resume:${spec.instanceId}:atlas`] },
        })) === 2,
    );
    await device.sync.stop();

    const step = Math.round(1 / RESCAN_CHANGED_FRACTION);
    const changed = ids.filter((_, i) => i % step === 0);
    const ops: AnyBulkWriteOperation<any>[] = changed.map((id) => ({
      updateOne: { filter: { _id: id }, update: { $set: { n: -1, gap: r } } },
    }));
    await local.bulkWrite(ops, { ordered: false });
    await device.get(LocalRescanService).begin('benchmark: local history loss');

    const restarted = performance.now();
    await device.sync.start();
    let progress = device.get(LocalRescanService).progress;
    await until('re-scan done', async () => {
      progress = device.get(LocalRescanService).progress;
      if (progress.state === 'failed') throw new Error(`re-scan failed: ${progress.error}`);
      return progress.state === 'done';
    });
    await until(
      'every change on Atlas',
      async () => (await atlas.countDocuments({ gap: r })) === changed.length,
    );
    const pushedToAtlasMs = performance.now() - restarted;
    if (progress.pushed !== changed.length || progress.scanned !== RESCAN_DOCS)
      throw new Error(
        `re-scan found ${progress.pushed} of ${changed.length} changes in ${progress.scanned} documents`,
      );
    await device.close();

    const t0 = performance.now();
    const all = await local.find({}).toArray();
    const findDocsPerSecond = (all.length * 1000) / (performance.now() - t0);
    const t1 = performance.now();
    let paged = 0;
    for await (const pageOf of pagesById(ctx.localA.client.db(localDb), COLL, undefined))
      paged += pageOf.length;
    const pagedReadDocsPerSecond = (paged * 1000) / (performance.now() - t1);
    return {
      pagedReadDocsPerSecond,
      scanned: progress.scanned,
      pushed: progress.pushed,
      docsPerSecond: progress.docsPerSecond ?? NaN,
      findDocsPerSecond,
      pushedToAtlasMs,
    };
  } finally {
    await device.close().catch(() => undefined);
    await dropDatabases([
      [ctx.localA, localDb],
      [ctx.atlas, atlasDb],
    ]);
  }
}
