import { BSON } from 'mongodb';
import { formatDuration, formatTable } from './cli-support';
import { formatId } from '../lib/verifier/canonical';
import type { SyncMismatch, SyncVerificationReport } from '../lib/verifier/sync-verifier';

const DIRECTION_LABEL = {
  both: 'both ways',
  'local-to-atlas': 'local→atlas',
  'not-synced': 'not synced',
} as const;

function describe(m: SyncMismatch): string {
  const where = `${m.collection}  _id=${formatId(m.id)}`;
  switch (m.kind) {
    case 'missing':
      return `missing    ${where}  (on Atlas only${m.atlasVersion ? `, v ${m.atlasVersion}` : ''})`;
    case 'extra':
      return `extra      ${where}  (local only${m.localVersion ? `, v ${m.localVersion}` : ''})`;
    default:
      return (
        `different  ${where}  fields: ${m.fields?.join(', ') || '(none)'}` +
        `  local v ${m.localVersion ?? '-'}, atlas v ${m.atlasVersion ?? '-'}` +
        (m.newer === 'same' ? ' (same version)' : m.newer ? ` (${m.newer} newer)` : '')
      );
  }
}

/** The verifier's report as text: summary table, first `limit` mismatches, pending, result. */
export function formatVerificationReport(
  report: SyncVerificationReport,
  { limit = 20 }: { limit?: number } = {},
): string {
  const lines: string[] = [];
  lines.push(`Local database "${report.localDb}"  vs  Atlas database "${report.atlasDb}"`);
  lines.push(
    `Compared: ${report.comparison}; SHA-256 hashes per range of ${report.pageSize} _ids, documents fetched only for differing ranges`,
  );
  lines.push('');
  const rows = report.collections.map((c) => [
    c.name,
    DIRECTION_LABEL[c.direction],
    c.local,
    c.atlas,
    c.ranges,
    c.rangesDiffering,
    c.missing,
    c.extra,
    c.different,
    c.pending,
  ]);
  const t = report.totals;
  rows.push([
    'TOTAL',
    `${report.collections.length} coll.`,
    t.local,
    t.atlas,
    t.ranges,
    t.rangesDiffering,
    t.missing,
    t.extra,
    t.different,
    t.pending,
  ]);
  lines.push(
    formatTable(
      [
        'collection',
        'direction',
        'local',
        'atlas',
        'ranges',
        'differing',
        'missing',
        'extra',
        'different',
        'pending',
      ],
      rows,
    ),
  );
  lines.push('');
  lines.push(
    'missing = on Atlas only, extra = local only, different = content differs, pending = unpushed change in the local outbox',
  );
  if (report.mismatches.length) {
    const shown = report.mismatches.slice(0, limit);
    lines.push('');
    lines.push(`First ${shown.length} of ${t.mismatches} mismatch(es):`);
    for (const m of shown) lines.push(`  ${describe(m)}`);
  }
  if (report.pending.length) {
    const shown = report.pending.slice(0, limit);
    lines.push('');
    lines.push(`Pending (the local outbox holds an unpushed change; not counted as mismatches):`);
    for (const m of shown)
      lines.push(`  ${describe(m)}  [outbox: ${m.pending!.op} v ${m.pending!.v}]`);
    if (t.pending > shown.length) lines.push(`  ... ${t.pending - shown.length} more`);
  }
  if (report.outboxSize) lines.push(`Local outbox: ${report.outboxSize} change(s) not yet pushed.`);
  lines.push('');
  lines.push(
    report.ok
      ? `Result: OK, no mismatches (${formatDuration(report.durationMs)})`
      : `Result: ${t.mismatches} mismatch(es) in ${report.collections.filter((c) => c.missing + c.extra + c.different > 0).length} collection(s) (${formatDuration(report.durationMs)})`,
  );
  return lines.join('\n');
}

/** The report as JSON text (ids and versions as relaxed Extended JSON). */
export function verificationReportJson(report: SyncVerificationReport): string {
  return BSON.EJSON.stringify(report as unknown as BSON.Document, { relaxed: true }, 2);
}
