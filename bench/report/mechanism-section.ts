import type { DocShape, MechanismResult } from '../scenarios/mechanism';

export const MECHANISM_HEADING = "## 8. What issue 14's mechanism costs";

const SHAPE_NAME: Record<DocShape, string> = {
  doc1k: "the benchmark's 1 KiB document",
  wide: 'a many-field document',
};
const SHAPES = Object.keys(SHAPE_NAME) as DocShape[];

const f = (x: number | undefined, digits: number) =>
  x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(digits);
const int = (x: number | undefined) =>
  x === undefined || !Number.isFinite(x) ? '–' : Math.round(x).toLocaleString('en-US');
const pct = (x: number) => (Number.isFinite(x) ? `${(x * 100).toFixed(1)} %` : '–');

function table(header: string[], rows: string[][]): string[] {
  return [
    `| ${header.join(' | ')} |`,
    `| ${header.map(() => '---').join(' | ')} |`,
    ...rows.map((r) => `| ${r.join(' | ')} |`),
  ];
}

/** The section's lines (a full run and a `--only mechanism` run render the same). */
export function mechanismSection(m: MechanismResult): string[] {
  const md = m.median;
  const by = m.producedBy;
  const ratioRuns = <T>(runs: T[], get: (x: T) => number) =>
    runs.map((x) => `×${f(get(x), 2)}`).join(', ');
  return [
    MECHANISM_HEADING,
    '',
    by
      ? `_Produced by \`${by.command}\` on engine ${by.engineCommit} (${by.startedAt}, load average ${f(by.loadAvgStart, 2)} at start; ${by.servers.split(',')[0]}). ` +
        'A run of only this scenario with `--docs` replaces this section, its key in `docs/benchmarks.json` and the Analysis; the other ' +
        'sections may come from another run (see "How these numbers were produced")._'
      : '',
    '',
    'Every stamp the engine issues carries `h`, a digest of the content it describes (`contentDigest`, ' +
      '`src/lib/common/content-digest.ts`): the capture computes one per pushed change and the apply one per incoming ' +
      'document it holds a copy of (is the local copy still what its stamp says?). The apply then writes with a ' +
      'compare-and-set on the exact content it read (`unchangedFilter`, one `$eq` term per field) instead of on the ' +
      'stamp alone (`casFilter`). After local history loss, a re-scan reads every synced document and pushes those ' +
      `whose digest no longer matches. Medians of ${m.runs} runs; each ratio is the median of the runs' own ratios to ` +
      'the baseline measured in the same run.',
    '',
    `**CPU per change (digest).** µs per call on one document, ${m.digestIterations.toLocaleString('en-US')} calls ` +
      'per run in alternating slices with the baseline, in the benchmark process:',
    '',
    ...table(
      [
        'document',
        'BSON size, fields',
        '`contentDigest`',
        'baseline: `BSON.serialize`',
        'ratio',
        'runs (ratio)',
      ],
      SHAPES.map((s) => [
        SHAPE_NAME[s],
        `${int(m.shapes[s].docBytes)} B, ${m.shapes[s].fields}`,
        `${f(md.digestUs[s], 1)} µs`,
        `${f(md.serializeUs[s], 1)} µs`,
        `×${f(md.digestRatio[s], 1)}`,
        ratioRuns(m.digest, (x) => x.digestUs[s] / x.serializeUs[s]),
      ]),
    ),
    '',
    '**Bytes per change (stamp).** The `_sync` element as stored, with a generated instance id (16 characters) as origin:',
    '',
    ...table(
      [
        'document',
        'stamp without `h`',
        'stamp with `h`',
        '`h` adds',
        '`h` / document',
        'whole stamp / document',
      ],
      SHAPES.map((s) => {
        const x = m.shapes[s];
        return [
          SHAPE_NAME[s],
          `${x.stampBytes} B`,
          `${x.stampBytesWithDigest} B`,
          `${x.stampBytesWithDigest - x.stampBytes} B`,
          pct((x.stampBytesWithDigest - x.stampBytes) / x.docBytes),
          pct(x.stampBytesWithDigest / x.docBytes),
        ];
      }),
    ),
    '',
    `**The apply's compare-and-set on the server.** ${m.casDocs} documents per collection on a device's local server; ` +
      `each round writes every document's next state (\`stateUpdate\` of the state read, as the apply does) as unordered ` +
      `\`bulkWrite\`s of ${m.casBatch} \`updateOne\`, under one filter or the other; two rounds each, in ABBA order, every ` +
      'statement matched. ms per statement (wall) and local-server CPU per statement:',
    '',
    ...table(
      [
        'document',
        'exact content (`unchangedFilter`)',
        'baseline: stamp only (`casFilter`)',
        'ratio',
        'server CPU: exact / stamp',
        'runs (ratio)',
      ],
      SHAPES.map((s) => [
        SHAPE_NAME[s],
        `${f(md.contentMs[s], 3)} ms`,
        `${f(md.stampMs[s], 3)} ms`,
        `×${f(md.casRatio[s], 2)}`,
        `${f(md.contentCpuMs[s], 3)} / ${f(md.stampCpuMs[s], 3)} ms`,
        ratioRuns(m.cas, (x) => x.contentMs[s] / x.stampMs[s]),
      ]),
    ),
    '',
    `**Local re-scan.** A device (in the benchmark process) holds ${int(m.rescanDocs)} synced 1 KiB documents; its sync ` +
      `is stopped, the application changes ${pct(m.rescanChangedFraction)} of them with the raw driver, a re-scan is ` +
      "recorded (as the capture does when its history is gone) and the sync restarts. The rate is the engine's own " +
      '(health `localRescan.docsPerSecond`: pages read, digests checked, the changed documents captured and pushed, ' +
      'a checkpoint saved per page of 500); the baseline is one raw `find({}).toArray()` of the same collection on ' +
      "the same server. The re-scan's paged read alone (`pagesById`: pages of 500 in `_id` order, each a range query " +
      'from the last `_id` read, no digest, no capture) shows how much of its time is the server paging.',
    '',
    ...table(
      [
        'documents',
        'changed without the engine',
        're-scan',
        'baseline: raw find',
        'ratio',
        'its paged read alone',
        'all changes on Atlas after restart',
        'runs (documents/s)',
      ],
      [
        [
          int(m.rescanDocs),
          int(m.rescan[0]?.pushed),
          `${int(md.rescanDocsPerSecond)} documents/s`,
          `${int(md.findDocsPerSecond)} documents/s`,
          `×${f(md.rescanRatio, 3)}`,
          md.pagedReadDocsPerSecond === undefined
            ? '–'
            : `${int(md.pagedReadDocsPerSecond)} documents/s`,
          `${int(md.pushedToAtlasMs)} ms`,
          m.rescan.map((x) => int(x.docsPerSecond)).join(', '),
        ],
      ],
    ),
    '',
  ];
}
