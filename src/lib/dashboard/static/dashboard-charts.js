/* global uPlot */
/*
 * The dashboard's two charts (lag p50/p99 per direction, throughput) and the
 * history they draw: the last `historySeconds` of one-second samples.
 */
'use strict';

window.SyncDashboardCharts = {
  create(lagElement, throughputElement, historySeconds) {
    const HISTORY_SECONDS = historySeconds;
    const $ = (id) => (id === 'lag-chart' ? lagElement : throughputElement);
    const series = { t: [], lag: [[], [], [], []], throughput: [[], []] };
    let charts = null;

    function addSamples(samples) {
      for (const s of samples) {
        const t = s.t / 1000;
        if (series.t.length && t <= series.t[series.t.length - 1]) continue;
        series.t.push(t);
        series.lag[0].push(s.lag.localToAtlas.p50);
        series.lag[1].push(s.lag.localToAtlas.p99);
        series.lag[2].push(s.lag.atlasToLocal.p50);
        series.lag[3].push(s.lag.atlasToLocal.p99);
        series.throughput[0].push(s.throughput.localToAtlas);
        series.throughput[1].push(s.throughput.atlasToLocal);
      }
      const cutoff = series.t.length ? series.t[series.t.length - 1] - HISTORY_SECONDS : 0;
      let drop = 0;
      while (drop < series.t.length && series.t[drop] < cutoff) drop++;
      if (drop) {
        series.t.splice(0, drop);
        for (const s of [...series.lag, ...series.throughput]) s.splice(0, drop);
      }
      if (!charts && typeof uPlot === 'function') charts = createCharts();
      if (charts && samples.length) {
        charts.lag.setData([series.t, ...series.lag]);
        charts.throughput.setData([series.t, ...series.throughput]);
      }
    }

    function chartOptions(element, yLabel, lines) {
      return {
        width: Math.max(200, element.clientWidth),
        height: 240,
        scales: {
          x: {
            time: true,
            range: (u, min, max) => [
              (max || Date.now() / 1000) - HISTORY_SECONDS,
              max || Date.now() / 1000,
            ],
          },
          y: { range: (u, min, max) => [0, Math.max(1, (max || 0) * 1.15)] },
        },
        axes: [{}, { label: yLabel, size: 60 }],
        series: [
          { label: 'time' },
          ...lines.map((l) => ({ spanGaps: false, width: 2, points: { show: false }, ...l })),
        ],
      };
    }

    function createCharts() {
      const lagEl = $('lag-chart');
      const tpEl = $('throughput-chart');
      const blue = '#0b57d0';
      const orange = '#b35c00';
      const lag = new uPlot(
        chartOptions(lagEl, 'ms', [
          // Points too: a second with changes between quiet ones is a single value.
          { label: 'Local → Atlas p50', stroke: blue, points: { show: true, size: 5 } },
          {
            label: 'Local → Atlas p99',
            stroke: blue,
            dash: [6, 4],
            points: { show: true, size: 5 },
          },
          { label: 'Atlas → Local p50', stroke: orange, points: { show: true, size: 5 } },
          {
            label: 'Atlas → Local p99',
            stroke: orange,
            dash: [6, 4],
            points: { show: true, size: 5 },
          },
        ]),
        [series.t, ...series.lag],
        lagEl,
      );
      const throughput = new uPlot(
        chartOptions(tpEl, 'changes/s', [
          { label: 'Local → Atlas', stroke: blue, fill: 'rgba(11, 87, 208, 0.08)' },
          { label: 'Atlas → Local', stroke: orange, fill: 'rgba(179, 92, 0, 0.08)' },
        ]),
        [series.t, ...series.throughput],
        tpEl,
      );
      const resize = () => {
        lag.setSize({ width: Math.max(200, lagEl.clientWidth), height: 240 });
        throughput.setSize({ width: Math.max(200, tpEl.clientWidth), height: 240 });
      };
      if (typeof ResizeObserver === 'function')
        new ResizeObserver(resize).observe(lagEl.parentElement);
      else window.addEventListener('resize', resize);
      return { lag, throughput };
    }

    return { series, add: addSamples };
  },
};
