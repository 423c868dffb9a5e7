import { saturationCpuPerChange } from '../scenarios/throughput';
import type { Direction } from '../scenarios/throughput';
import { perChange } from './demand';
import type { BenchResults, TargetResult } from './results';
import { median } from './stats';

const n0 = (x: number) => (Number.isFinite(x) ? x.toFixed(0) : String(x));
const ms3 = (x: number) => `${x.toFixed(3)} ms`;
const known = (x: number | undefined): x is number => x !== undefined && Number.isFinite(x);

/** Issue 13's thresholds (its "Targets" table). */
export const TARGETS = {
  /** Local-server CPU per pushed change, ms. */
  localCpuPerChangeMs: 0.25,
  /** Local-server CPU per pushed change, as a multiple of the same server's raw per-insert CPU. */
  localCpuPerInsertRatio: 5.5,
  localWrittenPerChange: 1.2,
  /** Local → Atlas sustained (bounded) and catch-up, as a fraction of raw bulkWrite. */
  bulkWriteFraction: 0.2,
  /** Each direction with both saturated, as a fraction of its one-direction rate. */
  bothDirectionsFraction: 0.5,
  /** p99 lag above the raw change stream's p99 at the same load, ms. */
  lagOverRawMs: 150,
  rssMiB: 200,
  /** RSS growth factor still counted as flat in backlog. */
  rssFlatGrowth: 1.25,
} as const;

const runsText = (n: number) => `${n} run${n === 1 ? '' : 's'}`;

const NOT_MEASURED = 'not measured';

/** Met when every check is known and passes; missed as soon as one known check fails. */
function allOf(...checks: (boolean | null)[]): boolean | null {
  if (checks.some((c) => c === false)) return false;
  return checks.every((c) => c === true) ? true : null;
}

function notMeasured(name: string, required: string, why: string): TargetResult {
  return { name, required, measured: `${NOT_MEASURED} (${why})`, met: null };
}

const DIRECTION_NAME: Record<Direction, string> = {
  localToAtlas: 'Local → Atlas',
  atlasToLocal: 'Atlas → Local',
};

/**
 * Issue 13's targets, judged on medians of one run. Every row is present; a
 * figure the results lack (a scenario not run, an older results file) shows as
 * not measured with `met` null.
 */
export function evaluateTargets(r: BenchResults, lagRate: number): TargetResult[] {
  const t = TARGETS;
  const out: TargetResult[] = [];
  const bulk = r.baseline?.median.bulkWriteAtlas;
  const upRuns = r.throughput?.runs
    .map((run) => run.find((m) => m.mode === 'localToAtlas'))
    .filter((m) => m !== undefined);

  {
    const name = 'Local-server CPU per pushed change (Local → Atlas saturation)';
    const rawInsert = r.baseline?.median.insertCpuMs?.local;
    const limit = known(rawInsert) ? t.localCpuPerInsertRatio * rawInsert : NaN;
    const required =
      `≤ ${t.localCpuPerChangeMs} ms and ≤ ${t.localCpuPerInsertRatio} × the server's raw per-insert CPU` +
      (known(rawInsert)
        ? ` (${ms3(rawInsert)}) = ${ms3(limit)}`
        : ' (raw per-insert CPU not measured)');
    const cpu = upRuns?.length
      ? median(upRuns.map((m) => saturationCpuPerChange(m, 'local')))
      : undefined;
    if (!known(cpu))
      out.push(notMeasured(name, required, 'no throughput scenario or no local server process'));
    else
      out.push({
        name,
        required,
        measured:
          ms3(cpu) +
          (known(rawInsert)
            ? ` = ${(cpu / rawInsert).toFixed(1)} × raw per-insert`
            : '; raw per-insert CPU not measured'),
        met: allOf(cpu <= t.localCpuPerChangeMs, known(limit) ? cpu <= limit : null),
      });
  }

  {
    const name = 'Local documents written per pushed change';
    const required = `≤ ${t.localWrittenPerChange}`;
    const d = r.throughput?.demandMedian?.localToAtlas;
    if (!d) out.push(notMeasured(name, required, 'no command counts for Local → Atlas'));
    else
      out.push({
        name,
        required,
        measured: `${perChange(d.local.written)} (median of ${runsText(r.throughput!.runs.length)}, median ${n0(d.changes)} changes per run)`,
        met: d.local.written <= t.localWrittenPerChange,
      });
  }

  {
    const name = 'Sustained throughput Local → Atlas (bounded lag)';
    const required = bulk
      ? `≥ ${t.bulkWriteFraction} × bulkWrite = ${n0(t.bulkWriteFraction * bulk)}/s`
      : `≥ ${t.bulkWriteFraction} × bulkWrite`;
    const m = r.throughput?.median.localToAtlas?.localToAtlas;
    if (!m || !bulk)
      out.push(notMeasured(name, required, bulk ? 'no throughput scenario' : 'no baseline'));
    else {
      const runs = r.throughput!.runs.length;
      const confirmed = m.boundedRuns * 2 > runs;
      const value = confirmed ? m.confirmedRate : m.saturationRate;
      out.push({
        name,
        required,
        measured: `${n0(value)}/s = ${(value / bulk).toFixed(3)} × bulkWrite${confirmed ? '' : ' (saturation rate; lag not bounded at 0.8× of it)'}`,
        met: confirmed && value >= t.bulkWriteFraction * bulk,
      });
    }
  }

  for (const d of ['localToAtlas', 'atlasToLocal'] as const) {
    const name = `Both directions at once: ${DIRECTION_NAME[d]}`;
    const alone = r.throughput?.median[d]?.[d]?.saturationRate;
    const both = r.throughput?.median.both?.[d]?.saturationRate;
    const required =
      `≥ ${t.bothDirectionsFraction * 100} % of its one-direction saturation rate` +
      (known(alone) ? ` = ${n0(t.bothDirectionsFraction * alone)}/s` : '');
    if (!known(alone) || !known(both))
      out.push(notMeasured(name, required, 'throughput modes missing'));
    else
      out.push({
        name,
        required,
        measured: `${n0(both)}/s = ${((100 * both) / alone).toFixed(0)} % of ${n0(alone)}/s alone`,
        met: both >= t.bothDirectionsFraction * alone,
      });
  }

  {
    const name = `p99 lag at ${lagRate} changes/s`;
    const raw = r.baseline?.median.changeStreamLoaded[lagRate];
    const lag = r.lag?.median[lagRate];
    const required =
      `≤ raw change-stream p99 + ${t.lagOverRawMs} ms` +
      (raw ? ` = ${n0(raw.p99 + t.lagOverRawMs)} ms` : '') +
      ', 0 undelivered';
    if (!raw || !lag)
      out.push(
        notMeasured(
          name,
          required,
          raw ? 'no lag scenario at this rate' : 'no baseline at this rate',
        ),
      );
    else
      out.push({
        name,
        required,
        measured:
          (Number.isFinite(lag.p99)
            ? `${n0(lag.p99)} ms`
            : `> ${r.meta.parameters.waitCapSeconds} s after the window`) +
          `, ${n0(lag.undelivered)} of ${n0(lag.n)} changes undelivered`,
        met: lag.p99 <= raw.p99 + t.lagOverRawMs && lag.undelivered === 0,
      });
  }

  {
    const n = r.catchup?.runs[0]?.n;
    const name = `Catch-up rate${n ? ` (${n} changes)` : ''}`;
    const required = bulk
      ? `≥ ${t.bulkWriteFraction} × bulkWrite = ${n0(t.bulkWriteFraction * bulk)}/s`
      : `≥ ${t.bulkWriteFraction} × bulkWrite`;
    if (!r.catchup || !bulk)
      out.push(notMeasured(name, required, bulk ? 'no catch-up scenario' : 'no baseline'));
    else {
      const rate = r.catchup.median.rate;
      const capped = r.catchup.runs.length - r.catchup.median.converged;
      out.push({
        name,
        required,
        measured: `${n0(rate)}/s = ${(rate / bulk).toFixed(3)} × bulkWrite${capped > 0 ? ` (${capped} runs hit the cap)` : ''}`,
        met: rate >= t.bulkWriteFraction * bulk,
      });
    }
  }

  {
    const name = `Sync process RSS at ${lagRate} changes/s`;
    const required = `< ${t.rssMiB} MiB`;
    const runs = r.lag?.runs[lagRate];
    if (!runs?.length) out.push(notMeasured(name, required, 'no lag scenario at this rate'));
    else {
      const worst = Math.max(
        ...runs.map((x) =>
          Math.max(x.footprint.sender.rssPeakMiB, x.footprint.receiver.rssPeakMiB),
        ),
      );
      out.push({
        name,
        required,
        measured: `${n0(worst)} MiB (worst run, sender or receiver)`,
        met: worst < t.rssMiB,
      });
    }
  }

  {
    const name = 'Sync process RSS during catch-up';
    const required = `< ${t.rssMiB} MiB, not growing with the backlog`;
    if (!r.catchup) out.push(notMeasured(name, required, 'no catch-up scenario'));
    else {
      const worst = Math.max(...r.catchup.runs.map((x) => x.footprint.rssPeakMiB));
      const small = r.catchup.small;
      const growth = small ? worst / small.footprint.rssPeakMiB : NaN;
      out.push({
        name,
        required,
        measured:
          `${n0(worst)} MiB at ${r.catchup.runs[0]?.n} changes` +
          (small
            ? `; ${n0(small.footprint.rssPeakMiB)} MiB at ${small.n} (×${growth.toFixed(2)} for ×${(r.catchup.runs[0].n / small.n).toFixed(0)} backlog)`
            : ''),
        met: worst < t.rssMiB && !(growth > t.rssFlatGrowth),
        note: 'Backlog sizes are far below 100,000 by default (see Catch-up).',
      });
    }
  }
  return out;
}
