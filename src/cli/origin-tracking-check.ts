import { hostname } from 'node:os';
import type { Db, Document } from 'mongodb';
import {
  ATLAS_ORIGIN,
  SYNC_COLLECTION_PREFIX,
  SYNC_COLLECTIONS,
} from '../lib/bidirectional-sync.constants';
import { maxVersion, SyncVersion } from '../lib/common/hybrid-logical-clock';
import type { ResolvedSyncConfig } from '../lib/config/sync-config';
import { Finding, formatFindings, formatTable } from './cli-support';

const INSTANCE_ID = /^[A-Za-z0-9_.:-]{3,64}$/;

export interface StampCoverage {
  collection: string;
  side: 'local' | 'atlas';
  documents: number;
  /** Documents carrying a valid `_sync` stamp (`v` a version string, `o` an origin). */
  stamped: number;
  /** Stamped documents per origin (`_sync.o`). */
  origins: Record<string, number>;
}

export interface OriginSummary {
  origin: string;
  label: string;
  local: number;
  atlas: number;
}

export interface OriginTrackingReport {
  ok: boolean;
  instanceId?: string;
  /** Host recorded when the instance id was stored, and this machine's. */
  instanceHost?: string;
  thisHost: string;
  coverage: StampCoverage[];
  origins: OriginSummary[];
  findings: Finding[];
}

interface OriginGroup {
  _id: string | null;
  n: number;
  maxV?: string | null;
}

/**
 * Checks origin tracking as the specification's verifyOriginTracking does:
 * this database's instance id (present, valid, not reserved, where it was
 * created), the share of synced documents that carry a `_sync` stamp on
 * each side, the origins seen, and whether Atlas holds versions stamped with
 * this instance id that this database never issued (two devices sharing one
 * instance id, e.g. a cloned machine). Read only.
 */
export async function checkOriginTracking(options: {
  local: Db;
  atlas?: Db;
  sync: Pick<ResolvedSyncConfig, 'pushesCollection' | 'pullsCollection'>;
}): Promise<OriginTrackingReport> {
  const { local, atlas, sync } = options;
  const findings: Finding[] = [];
  const report: OriginTrackingReport = {
    ok: false,
    thisHost: hostname(),
    coverage: [],
    origins: [],
    findings,
  };
  const metadata = local.collection<Document & { _id: string }>(SYNC_COLLECTIONS.metadata);
  const instance = await metadata.findOne({ _id: 'instance' });
  const instanceId = typeof instance?.instanceId === 'string' ? instance.instanceId : undefined;
  report.instanceId = instanceId;
  report.instanceHost = typeof instance?.host === 'string' ? instance.host : undefined;
  if (!instanceId) {
    findings.push({
      level: 'fail',
      message: `no instance id in ${SYNC_COLLECTIONS.metadata} ({_id: 'instance'}): the sync module has not started on this database`,
    });
  } else if (instanceId === ATLAS_ORIGIN) {
    findings.push({
      level: 'fail',
      message: `instance id "${ATLAS_ORIGIN}" is reserved for writes made on Atlas without the module; set SYNC_INSTANCE_ID to a unique value`,
    });
  } else if (!INSTANCE_ID.test(instanceId)) {
    findings.push({
      level: 'fail',
      message: `instance id "${instanceId}" is not 3-64 characters of A-Z a-z 0-9 _ . : -`,
    });
  } else {
    findings.push({ level: 'ok', message: `instance id "${instanceId}" is set and valid` });
  }
  if (instanceId && report.instanceHost && report.instanceHost !== report.thisHost) {
    findings.push({
      level: 'warn',
      message: `the instance id was stored on host "${report.instanceHost}", this is "${report.thisHost}": if this database was copied from another device, give one of them a new SYNC_INSTANCE_ID`,
    });
  }
  const others = await metadata
    .find({ _id: { $regex: /^(resume|clock):/ } }, { projection: { _id: 1 } })
    .toArray();
  const previousIds = new Set(
    others
      .map((d) =>
        d._id.startsWith('clock:')
          ? d._id.slice('clock:'.length)
          : d._id.slice('resume:'.length, d._id.lastIndexOf(':')),
      )
      .filter((id) => id && id !== instanceId),
  );
  if (previousIds.size) {
    findings.push({
      level: 'info',
      message: `state of other instance ids in this database (the id was changed): ${[...previousIds].join(', ')}`,
    });
  }

  // Stamp coverage and origins, per synced collection and side.
  const sides: ['local' | 'atlas', Db][] = atlas
    ? [
        ['local', local],
        ['atlas', atlas],
      ]
    : [['local', local]];
  const pulledMaxForMe: Record<'local' | 'atlas', SyncVersion | undefined> = {
    local: undefined,
    atlas: undefined,
  };
  for (const [side, db] of sides) {
    const names = (await db.listCollections({}, { nameOnly: true }).toArray())
      .filter((c) => (c.type ?? 'collection') === 'collection')
      .map((c) => c.name)
      .filter(
        (n) =>
          !n.startsWith(SYNC_COLLECTION_PREFIX) &&
          !n.startsWith('system.') &&
          sync.pushesCollection(n),
      )
      .sort();
    for (const name of names) {
      const groups = await db
        .collection(name)
        .aggregate<OriginGroup>([
          {
            $group: {
              _id: {
                $cond: [
                  {
                    $and: [
                      { $eq: [{ $type: '$_sync.v' }, 'string'] },
                      { $eq: [{ $type: '$_sync.o' }, 'string'] },
                    ],
                  },
                  '$_sync.o',
                  null,
                ],
              },
              n: { $sum: 1 },
              maxV: { $max: '$_sync.v' },
            },
          },
        ])
        .toArray();
      const coverage: StampCoverage = {
        collection: name,
        side,
        documents: 0,
        stamped: 0,
        origins: {},
      };
      for (const g of groups) {
        coverage.documents += g.n;
        if (g._id === null) continue;
        coverage.stamped += g.n;
        coverage.origins[g._id] = (coverage.origins[g._id] ?? 0) + g.n;
        if (g._id === instanceId && sync.pullsCollection(name) && typeof g.maxV === 'string')
          pulledMaxForMe[side] = maxVersion(pulledMaxForMe[side], g.maxV);
      }
      report.coverage.push(coverage);
    }
  }

  for (const side of ['local', 'atlas'] as const) {
    const rows = report.coverage.filter((c) => c.side === side);
    const unstamped = rows.reduce((n, c) => n + c.documents - c.stamped, 0);
    if (!rows.length) continue;
    if (unstamped) {
      findings.push({
        level: 'warn',
        message: `${side}: ${unstamped} synced document(s) without a _sync stamp (written before the module started, or by a path it does not capture; a re-baseline stamps them)`,
      });
    } else {
      findings.push({ level: 'ok', message: `${side}: every synced document carries _sync` });
    }
  }

  // Versions stamped with this id on Atlas that this database never issued.
  if (instanceId && atlas) {
    const clock = await metadata.findOne({ _id: `clock:${instanceId}` });
    const [tombstone, outbox] = await Promise.all([
      local
        .collection(SYNC_COLLECTIONS.tombstones)
        .find({ '_sync.o': instanceId })
        .sort({ '_sync.v': -1 })
        .limit(1)
        .next(),
      local.collection(SYNC_COLLECTIONS.outbox).find().sort({ v: -1 }).limit(1).next(),
    ]);
    const known = maxVersion(
      pulledMaxForMe.local,
      typeof clock?.highWater === 'string' ? clock.highWater : undefined,
      tombstone?._sync?.v,
      typeof outbox?.v === 'string' ? outbox.v : undefined,
    );
    const onAtlas = pulledMaxForMe.atlas;
    if (onAtlas && (!known || onAtlas > known)) {
      findings.push({
        level: 'fail',
        message: `Atlas holds version ${onAtlas} stamped with this instance id, newer than any this database issued (${known ?? 'none'}): another device or database probably uses instance id "${instanceId}"`,
      });
    } else if (onAtlas) {
      findings.push({
        level: 'ok',
        message: `no version stamped "${instanceId}" on Atlas is newer than this database's (no sign of a duplicate instance id)`,
      });
    }
  }

  const origins = new Map<string, OriginSummary>();
  for (const c of report.coverage) {
    const entries: [string, number][] = [
      ...Object.entries(c.origins),
      ['(unstamped)', c.documents - c.stamped],
    ];
    for (const [origin, n] of entries) {
      if (!n) continue;
      const summary = origins.get(origin) ?? {
        origin,
        label:
          origin === instanceId
            ? 'this device'
            : origin === ATLAS_ORIGIN
              ? 'written on Atlas without the module'
              : origin === '(unstamped)'
                ? 'no _sync stamp'
                : 'another device',
        local: 0,
        atlas: 0,
      };
      summary[c.side] += n;
      origins.set(origin, summary);
    }
  }
  report.origins = [...origins.values()].sort((a, b) => b.local + b.atlas - (a.local + a.atlas));
  report.ok = !findings.some((f) => f.level === 'fail');
  return report;
}

/** The report as text. */
export function formatOriginTrackingReport(report: OriginTrackingReport): string {
  const lines: string[] = [];
  lines.push(
    `Instance id: ${report.instanceId ?? '(none)'}` +
      (report.instanceHost ? ` (stored on host "${report.instanceHost}")` : ''),
  );
  lines.push('');
  if (report.coverage.length) {
    lines.push('Stamp coverage (synced collections):');
    lines.push(
      formatTable(
        ['collection', 'side', 'documents', 'stamped', 'coverage'],
        report.coverage.map((c) => [
          c.collection,
          c.side,
          c.documents,
          c.stamped,
          c.documents ? `${((100 * c.stamped) / c.documents).toFixed(1)}%` : '-',
        ]),
      ),
    );
    lines.push('');
    lines.push('Origins seen (_sync.o):');
    lines.push(
      formatTable(
        ['origin', 'meaning', 'local', 'atlas'],
        report.origins.map((o) => [o.origin, o.label, o.local, o.atlas]),
      ),
    );
    lines.push('');
  }
  lines.push('Checks:');
  lines.push(formatFindings(report.findings));
  lines.push('');
  const failed = report.findings.filter((f) => f.level === 'fail').length;
  lines.push(report.ok ? 'Result: OK' : `Result: FAILED (${failed} problem(s))`);
  return lines.join('\n');
}
