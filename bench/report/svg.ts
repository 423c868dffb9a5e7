/** A small dependency-free SVG line chart with a logarithmic y axis. */

export interface Series {
  label: string;
  color: string;
  dashed?: boolean;
  /** [x, y]; y = Infinity is drawn as a cross at the top ("not delivered within the cap"). */
  points: [number, number][];
}

export interface ChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  width?: number;
  height?: number;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function lineChartSvg(series: Series[], o: ChartOptions): string {
  const W = o.width ?? 820;
  const H = o.height ?? 420;
  const m = { left: 70, right: 20, top: 40, bottom: 50 };
  const legendH = 18 * Math.ceil(series.length / 2);
  const plotW = W - m.left - m.right;
  const plotH = H - m.top - m.bottom - legendH;
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = series
    .flatMap((s) => s.points.map((p) => p[1]))
    .filter((y) => Number.isFinite(y) && y > 0);
  const xMin = Math.min(...xs, 0);
  const xMax = Math.max(...xs, 1);
  const yMinLog = Math.floor(Math.log10(Math.max(0.1, Math.min(...ys, 1))));
  const yMaxLog = Math.ceil(Math.log10(Math.max(...ys, 10)));
  const px = (x: number) => m.left + ((x - xMin) / (xMax - xMin || 1)) * plotW;
  const py = (y: number) =>
    m.top +
    plotH -
    ((Math.log10(Math.max(y, 10 ** yMinLog)) - yMinLog) / (yMaxLog - yMinLog || 1)) * plotH;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(o.title)}</text>`,
  ];
  for (let e = yMinLog; e <= yMaxLog; e++) {
    const y = py(10 ** e);
    const label = 10 ** e >= 1000 ? `${10 ** (e - 3)} s` : `${10 ** e} ms`;
    out.push(
      `<line x1="${m.left}" x2="${m.left + plotW}" y1="${y}" y2="${y}" stroke="#ddd"/>`,
      `<text x="${m.left - 6}" y="${y + 4}" text-anchor="end">${label}</text>`,
    );
  }
  const xStep = Math.max(1, Math.ceil((xMax - xMin) / 10));
  for (let x = Math.ceil(xMin); x <= xMax; x += xStep) {
    out.push(
      `<line x1="${px(x)}" x2="${px(x)}" y1="${m.top}" y2="${m.top + plotH}" stroke="#f0f0f0"/>`,
      `<text x="${px(x)}" y="${m.top + plotH + 16}" text-anchor="middle">${x}</text>`,
    );
  }
  out.push(
    `<rect x="${m.left}" y="${m.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#888"/>`,
    `<text x="${m.left + plotW / 2}" y="${m.top + plotH + 36}" text-anchor="middle">${esc(o.xLabel)}</text>`,
    `<text transform="translate(16 ${m.top + plotH / 2}) rotate(-90)" text-anchor="middle">${esc(o.yLabel)}</text>`,
  );
  for (const s of series) {
    const finite = s.points.filter((p) => Number.isFinite(p[1]));
    if (finite.length)
      out.push(
        `<polyline fill="none" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''} points="${finite
          .map((p) => `${px(p[0]).toFixed(1)},${py(p[1]).toFixed(1)}`)
          .join(' ')}"/>`,
      );
    if (!s.dashed || finite.length === 1)
      for (const p of finite)
        out.push(
          `<circle cx="${px(p[0]).toFixed(1)}" cy="${py(p[1]).toFixed(1)}" r="2.5" fill="${s.color}"/>`,
        );
    for (const p of s.points.filter((q) => !Number.isFinite(q[1]) && !Number.isNaN(q[1]))) {
      const x = px(p[0]);
      const y = m.top + 4;
      out.push(
        `<path d="M${x - 4},${y - 4}L${x + 4},${y + 4}M${x - 4},${y + 4}L${x + 4},${y - 4}" stroke="${s.color}" stroke-width="2"/>`,
      );
    }
  }
  series.forEach((s, i) => {
    const x = m.left + (i % 2) * (plotW / 2);
    const y = H - legendH - 4 + 18 * Math.floor(i / 2);
    out.push(
      `<line x1="${x}" x2="${x + 24}" y1="${y}" y2="${y}" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`,
      `<text x="${x + 30}" y="${y + 4}">${esc(s.label)}</text>`,
    );
  });
  out.push('</svg>');
  return out.join('\n');
}

const BARS = '▁▂▃▄▅▆▇█';

/** A one-line Unicode sparkline on a log scale; ✕ marks values beyond the cap. */
export function sparkline(values: number[], min: number, max: number): string {
  const lo = Math.log10(Math.max(min, 0.1));
  const hi = Math.log10(Math.max(max, min * 10));
  return values
    .map((v) => {
      if (Number.isNaN(v)) return ' ';
      if (!Number.isFinite(v)) return '✕';
      const f = (Math.log10(Math.max(v, min)) - lo) / (hi - lo || 1);
      return BARS[Math.min(BARS.length - 1, Math.max(0, Math.round(f * (BARS.length - 1))))];
    })
    .join('');
}
