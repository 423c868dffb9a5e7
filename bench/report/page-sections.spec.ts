import { markSection, mergeResults, replaceSection } from './page-sections';

const page = (...lines: string[]) => lines.join('\n');

describe('replaceSection (a partial benchmark run rewrites only its own section)', () => {
  const block = markSection('mechanism', ['## 8. Mechanism', '', 'new figures', '']);

  it('replaces what lies between the markers and nothing else', () => {
    const before = page(
      '# Benchmarks',
      '',
      '## 7. Demand',
      'demand from the full run',
      '',
      '<!-- section:mechanism -->',
      '## 8. Mechanism',
      'old figures',
      '<!-- /section:mechanism -->',
      '',
      '## Server cost',
      'planner from the full run',
      '',
    );
    const after = replaceSection(before, 'mechanism', block);
    expect(after).toBe(
      page(
        '# Benchmarks',
        '',
        '## 7. Demand',
        'demand from the full run',
        '',
        '<!-- section:mechanism -->',
        '## 8. Mechanism',
        '',
        'new figures',
        '<!-- /section:mechanism -->',
        '',
        '## Server cost',
        'planner from the full run',
        '',
      ),
    );
    // Replacing again changes nothing: the markers and the blank line after are not duplicated.
    expect(replaceSection(after, 'mechanism', block)).toBe(after);
  });

  it('on a page rendered before markers, replaces from the heading to the next heading', () => {
    const before = page(
      '## 7. Demand',
      'demand',
      '## 8. Mechanism',
      'old figures',
      '#### not a section boundary',
      'more old figures',
      '## Analysis',
      'hand-written',
    );
    expect(replaceSection(before, 'mechanism', block, { heading: '## 8. Mechanism' })).toBe(
      page(
        '## 7. Demand',
        'demand',
        '<!-- section:mechanism -->',
        '## 8. Mechanism',
        '',
        'new figures',
        '<!-- /section:mechanism -->',
        '',
        '## Analysis',
        'hand-written',
      ),
    );
  });

  it('replaces a last section up to the end of the page', () => {
    const before = page('## 7. Demand', 'demand', '## Analysis', 'old analysis', '');
    const analysis = markSection('analysis', ['## Analysis', '', 'new analysis']);
    expect(replaceSection(before, 'analysis', analysis, { heading: '## Analysis' })).toBe(
      page(
        '## 7. Demand',
        'demand',
        '<!-- section:analysis -->',
        '## Analysis',
        '',
        'new analysis',
        '<!-- /section:analysis -->',
        '',
      ),
    );
  });

  it('inserts a section the page does not have yet before the given heading, or at the end', () => {
    const before = page('## 7. Demand', 'demand', '## Server cost', 'planner', '');
    const inserted = replaceSection(before, 'mechanism', block, {
      heading: '## 8. Mechanism',
      insertBefore: '## Server cost',
    });
    expect(inserted.split('\n')).toEqual([
      '## 7. Demand',
      'demand',
      ...block,
      '## Server cost',
      'planner',
      '',
    ]);
    expect(replaceSection(page('# B', 'x', ''), 'mechanism', block).split('\n')).toEqual([
      '# B',
      'x',
      ...block,
    ]);
  });

  it('refuses a page whose section has lost its end marker', () => {
    expect(() =>
      replaceSection(page('<!-- section:mechanism -->', 'old'), 'mechanism', block),
    ).toThrow('no end marker');
  });
});

describe('mergeResults (docs/benchmarks.json keeps the full run, takes the partial run’s keys)', () => {
  it('replaces only the given keys', () => {
    const full = { meta: { command: 'npm run bench' }, lag: { p99: 5 }, mechanism: { old: true } };
    const partial = { meta: { command: 'npm run bench -- --only mechanism' }, mechanism: { v: 2 } };
    expect(mergeResults(full, partial, ['mechanism'])).toEqual({
      meta: { command: 'npm run bench' },
      lag: { p99: 5 },
      mechanism: { v: 2 },
    });
    expect(full.mechanism).toEqual({ old: true });
  });

  it('starts from nothing when there is no file yet, and skips keys the run lacks', () => {
    expect(mergeResults(undefined, { mechanism: { v: 1 } }, ['mechanism', 'fanin'])).toEqual({
      mechanism: { v: 1 },
    });
  });
});
