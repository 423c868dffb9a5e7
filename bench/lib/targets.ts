import type { BenchResults, TargetResult } from './results';

const n0 = (x: number) => (Number.isFinite(x) ? x.toFixed(0) : String(x));

/** The issue's targets, judged on medians. */
export function evaluateTargets(r: BenchResults, lagRate: number): TargetResult[] {
  const out: TargetResult[] = [];
  const bulk = r.baseline?.median.bulkWriteAtlas;
  if (r.throughput && bulk) {
    for (const d of ['localToAtlas', 'atlasToLocal'] as const) {
      const m = r.throughput.median[d]?.[d];
      if (!m) continue;
      const runs = r.throughput.runs.length;
      const confirmed = m.boundedRuns * 2 > runs;
      const value = confirmed ? m.confirmedRate : m.saturationRate;
      out.push({
        name: `Sustained throughput ${d === 'localToAtlas' ? 'Local → Atlas' : 'Atlas → Local'}`,
        required: `≥ 0.5 × bulkWrite = ${n0(0.5 * bulk)}/s`,
        measured: `${n0(value)}/s = ${(value / bulk).toFixed(3)} × bulkWrite${confirmed ? '' : ' (saturation rate; lag not bounded at 0.8× of it)'}`,
        met: confirmed && value >= 0.5 * bulk,
      });
    }
  }
  const raw = r.baseline?.median.changeStreamLoaded[lagRate];
  const lag = r.lag?.median[lagRate];
  if (raw && lag) {
    const limit = raw.p99 + 100;
    out.push({
      name: `p99 lag at ${lagRate} changes/s`,
      required: `≤ raw change-stream p99 + 100 ms = ${n0(limit)} ms`,
      measured: Number.isFinite(lag.p99)
        ? `${n0(lag.p99)} ms`
        : `> ${r.meta.parameters.waitCapSeconds} s after the window (${n0(lag.undelivered)} of ${n0(lag.n)} changes undelivered)`,
      met: lag.p99 <= limit,
    });
  }
  if (r.catchup && bulk) {
    const rate = r.catchup.median.rate;
    out.push({
      name: `Catch-up rate (${r.catchup.runs[0]?.n} changes)`,
      required: `≥ 0.5 × bulkWrite = ${n0(0.5 * bulk)}/s`,
      measured: `${n0(rate)}/s = ${(rate / bulk).toFixed(3)} × bulkWrite${r.catchup.median.converged < r.catchup.runs.length ? ` (${r.catchup.runs.length - r.catchup.median.converged} runs hit the cap)` : ''}`,
      met: rate >= 0.5 * bulk,
    });
  }
  if (r.lag?.runs[lagRate]) {
    const peaks = r.lag.runs[lagRate].map((x) =>
      Math.max(x.footprint.sender.rssPeakMiB, x.footprint.receiver.rssPeakMiB),
    );
    const worst = Math.max(...peaks);
    out.push({
      name: `Sync process RSS at ${lagRate} changes/s`,
      required: '< 200 MiB',
      measured: `${n0(worst)} MiB (worst run, sender or receiver)`,
      met: worst < 200,
    });
  }
  if (r.catchup) {
    const worst = Math.max(...r.catchup.runs.map((x) => x.footprint.rssPeakMiB));
    const small = r.catchup.small?.footprint.rssPeakMiB;
    const growth = small ? worst / small : NaN;
    out.push({
      name: 'Sync process RSS during catch-up',
      required: '< 200 MiB, not growing with the backlog',
      measured:
        `${n0(worst)} MiB at ${r.catchup.runs[0]?.n} changes` +
        (small
          ? `; ${n0(small)} MiB at ${r.catchup.small!.n} (×${growth.toFixed(2)} for ×${(r.catchup.runs[0].n / r.catchup.small!.n).toFixed(0)} backlog)`
          : ''),
      met: worst < 200 && !(growth > 1.25),
      note: 'Backlog sizes are far below 100,000 by default (see Catch-up).',
    });
  }
  return out;
}
