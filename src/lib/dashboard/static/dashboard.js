/*
 * The operator dashboard's script. Reads the live stream (server-sent events
 * read with fetch, so the API key can be sent when reads are protected),
 * draws the charts with uPlot and calls the sync API for the switch,
 * conflicts and dead letters. No framework, no network beyond this service.
 */
'use strict';

(function dashboard() {
  const API = new URL('../', window.location.href); // /api/sync/bidirectional/
  const PAGE_SIZE = 10;
  const HISTORY_SECONDS = 15 * 60;
  const DIRECTIONS = { localToAtlas: 'Local → Atlas', atlasToLocal: 'Atlas → Local' };

  const $ = (id) => document.getElementById(id);
  let apiKey = '';
  let state = null;
  let lastAlerts = '';
  let streamAbort = null;
  let keyNeededForReads = false;
  const conflicts = { offset: 0, collection: '', total: 0, seenStored: null };
  const deadLetters = { offset: 0, total: 0, seenStored: null };
  let history = null;

  // ---- helpers -------------------------------------------------------------

  function headers(extra) {
    const h = Object.assign({ Accept: 'application/json' }, extra);
    if (apiKey) h['x-api-key'] = apiKey;
    return h;
  }

  async function api(path, options) {
    const res = await fetch(new URL(path, API), {
      cache: 'no-store',
      ...options,
      headers: headers(options && options.headers),
    });
    let body = null;
    try {
      body = await res.json();
    } catch {
      body = null;
    }
    return { ok: res.ok, status: res.status, body };
  }

  function errorText(result) {
    const m = result.body && result.body.message;
    const text = Array.isArray(m) ? m.join('; ') : m;
    return `${text || 'Request failed'} (HTTP ${result.status})`;
  }

  function duration(ms) {
    if (ms === null || ms === undefined) return '–';
    if (ms < 1000) return `${Math.round(ms)} ms`;
    if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
    const s = Math.round(ms / 1000);
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    return h ? `${h} h ${m} min` : `${m} min ${s % 60} s`;
  }

  function time(iso) {
    if (!iso) return '–';
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString();
  }

  function setText(id, text) {
    const el = $(id);
    if (el.textContent !== text) el.textContent = text;
  }

  function cell(row, text, className) {
    const td = document.createElement('td');
    td.textContent = text === null || text === undefined || text === '' ? '–' : String(text);
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  }

  function emptyRow(body, columns, text) {
    const row = document.createElement('tr');
    const td = cell(row, text);
    td.colSpan = columns;
    body.replaceChildren(row);
  }

  function showMessage(id, text, isError) {
    const el = $(id);
    el.textContent = text;
    el.classList.toggle('error', !!isError);
  }

  // ---- live stream ---------------------------------------------------------

  async function connect() {
    if (streamAbort) streamAbort.abort();
    const abort = new AbortController();
    streamAbort = abort;
    try {
      const res = await fetch(new URL('dashboard/events', API), {
        headers: headers({ Accept: 'text/event-stream' }),
        cache: 'no-store',
        signal: abort.signal,
      });
      if (res.status === 401 || res.status === 403) {
        keyNeededForReads = true;
        setText('connection', 'Reads need the API key here: enter it under Controls.');
        return; // reconnects when a key is entered
      }
      if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
      setText('connection', '');
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, '\n');
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = block
            .split('\n')
            .filter((line) => line.startsWith('data:'))
            .map((line) => line.slice(5).replace(/^ /, ''))
            .join('\n');
          if (data) render(JSON.parse(data));
        }
      }
    } catch (err) {
      if (abort.signal.aborted) return;
      setText('connection', `Live updates interrupted (${err.message}); reconnecting…`);
    }
    if (abort.signal.aborted) return;
    if (!$('connection').textContent)
      setText('connection', 'Live updates interrupted; reconnecting…');
    setTimeout(() => streamAbort === abort && connect(), 2000);
  }

  // ---- rendering -----------------------------------------------------------

  function render(next) {
    state = next;
    setText('updated-at', new Date(next.at).toLocaleTimeString());
    $('updated-at').dateTime = next.at;
    const h = next.health;
    const overall = $('overall');
    const health = h ? h.health : 'unknown';
    overall.textContent = h ? health : `unknown: ${next.healthError || 'no report'}`;
    overall.className = `badge badge-${h ? health : 'unknown'}`;
    if (h) renderHealth(h);
    renderQueue(next);
    renderAlerts(next.alerts || []);
    history ??= window.SyncDashboardCharts.create(
      $('lag-chart'),
      $('throughput-chart'),
      HISTORY_SECONDS,
    );
    history.add(next.samples || []);
    renderSummaries(next);
    if (next.totals.conflictsStored !== conflicts.seenStored) {
      conflicts.seenStored = next.totals.conflictsStored;
      loadConflicts();
    }
    if (next.totals.deadLetters !== deadLetters.seenStored) {
      deadLetters.seenStored = next.totals.deadLetters;
      loadDeadLetters();
    }
  }

  function renderHealth(h) {
    setText('instance-id', h.instanceId || '–');
    setText('state-enabled', h.enabled ? 'on' : 'off');
    const l = h.atlasListener;
    let listener;
    if (!l.running) listener = 'stopped';
    else if (l.connected) listener = 'connected';
    else
      listener = `disconnected${l.disconnectedSince ? ` since ${time(l.disconnectedSince)}` : ''}`;
    if (l.lastError && !l.connected) listener += ` (${l.lastError})`;
    setText('state-listener', listener);
    const c = h.localCapture || {};
    setText(
      'state-capture',
      `${c.mode || 'not started'}, ${c.connected ? 'connected' : c.running ? 'not connected' : 'stopped'}`,
    );
    const lease = h.lease || {};
    setText(
      'state-role',
      h.role === 'standby'
        ? `standby (holder ${lease.currentHolder || 'unknown'})`
        : `${h.role || '–'}${lease.term !== null && lease.term !== undefined ? ` (lease term ${lease.term})` : ''}`,
    );
    const transport = h.transport;
    setText(
      'state-transport',
      !transport
        ? 'direct to Atlas (MongoDB driver)'
        : typeof transport === 'string'
          ? transport
          : transport.mode || transport.kind || JSON.stringify(transport),
    );
    setText('state-health', `${h.health}${h.reasons.length ? `: ${h.reasons.join('; ')}` : ''}`);
    const toggle = $('toggle');
    toggle.setAttribute('aria-checked', String(!!h.enabled));
    setText('toggle-label', `Atlas → Local sync ${h.enabled ? 'on' : 'off'}`);
    toggle.disabled = false;
  }

  function renderQueue(next) {
    const h = next.health;
    const w = h && h.syncWorker;
    setText('queue-depth', w ? String(w.queueSize) : '–');
    setText(
      'queue-oldest',
      w ? (w.oldestPendingAgeMs === null ? 'empty' : duration(w.oldestPendingAgeMs)) : '–',
    );
    setText('queue-token', h ? duration(h.atlasListener.resumeTokenAgeMs) : '–');
    setText(
      'queue-conflicts',
      h ? `${h.conflictsLastHour} (alert above ${h.thresholds.maxConflictsPerHour})` : '–',
    );
    setText(
      'queue-dead-letters',
      next.totals.deadLetters === null ? '–' : String(next.totals.deadLetters),
    );
    const r = h && h.rebaseline;
    setText('queue-rebaseline', r ? String(r.state || 'idle') : '–');
  }

  function renderAlerts(alerts) {
    const key = JSON.stringify(
      alerts.map((a) => [a.id, a.severity, a.message.replace(/[\d.]+/g, '')]),
    );
    const list = $('alert-list');
    if (key === lastAlerts && list.childElementCount === alerts.length) {
      // Same alerts: refresh the figures without announcing them again.
      alerts.forEach((a, i) => (list.children[i].lastChild.textContent = ` ${a.message}`));
      return;
    }
    lastAlerts = key;
    list.replaceChildren(
      ...alerts.map((a) => {
        const p = document.createElement('p');
        p.className = `banner banner-${a.severity}`;
        p.dataset.alert = a.id;
        const label = document.createElement('strong');
        label.textContent = a.severity === 'critical' ? 'Critical:' : 'Warning:';
        p.append(label, document.createTextNode(` ${a.message}`));
        return p;
      }),
    );
  }

  // ---- charts --------------------------------------------------------------

  function lastValue(values) {
    for (let i = values.length - 1; i >= 0; i--) if (values[i] !== null) return values[i];
    return null;
  }

  function renderSummaries(next) {
    const series = history.series;
    const lagParts = Object.values(DIRECTIONS).map((name, i) => {
      const p50 = lastValue(series.lag[i * 2]);
      const p99 = lastValue(series.lag[i * 2 + 1]);
      return p50 === null ? `${name}: no changes` : `${name}: p50 ${p50} ms, p99 ${p99} ms`;
    });
    setText('lag-summary', `Latest: ${lagParts.join('; ')}.`);
    const n = series.t.length;
    const tp = Object.entries(DIRECTIONS).map(([key, name], i) => {
      const now = n ? series.throughput[i][n - 1] : 0;
      return `${name} ${now}/s now, ${next.totals.successful[key]} since start`;
    });
    setText('throughput-summary', `${tp.join('; ')}.`);
  }

  // ---- switch --------------------------------------------------------------

  async function toggle() {
    if (!state || !state.health) return;
    const enable = !state.health.enabled;
    if (!apiKey) {
      showMessage('toggle-message', 'Enter the API key first.', true);
      $('api-key').focus();
      return;
    }
    const button = $('toggle');
    button.disabled = true;
    try {
      const result = await api('toggle', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ enabled: enable }),
      });
      if (!result.ok) {
        showMessage('toggle-message', `Not switched: ${errorText(result)}`, true);
        return;
      }
      state.health.enabled = result.body.enabled;
      renderHealth(state.health);
      showMessage('toggle-message', result.body.message);
    } catch (err) {
      showMessage('toggle-message', `Not switched: ${err.message}`, true);
    } finally {
      button.disabled = false;
    }
  }

  // ---- conflicts -----------------------------------------------------------

  async function loadConflicts() {
    const query = new URLSearchParams({
      limit: String(PAGE_SIZE),
      offset: String(conflicts.offset),
    });
    if (conflicts.collection) query.set('collection', conflicts.collection);
    const body = $('conflicts-body');
    try {
      const result = await api(`conflicts?${query}`);
      if (!result.ok) {
        emptyRow(body, 7, `Could not load conflicts: ${errorText(result)}`);
        return;
      }
      conflicts.total = result.body.totalConflicts;
      const rows = result.body.recentConflicts.map((c) => {
        const row = document.createElement('tr');
        cell(row, time(c.resolvedAt));
        cell(row, c.collection);
        cell(row, c.documentId, 'mono');
        cell(row, c.winner);
        cell(row, c.strategy);
        cell(row, c.localVersion, 'mono');
        cell(row, c.atlasVersion, 'mono');
        return row;
      });
      if (rows.length) body.replaceChildren(...rows);
      else
        emptyRow(
          body,
          7,
          conflicts.collection ? `No conflicts in ${conflicts.collection}.` : 'No conflicts.',
        );
      pager('conflicts', conflicts, rows.length);
    } catch (err) {
      emptyRow(body, 7, `Could not load conflicts: ${err.message}`);
    }
  }

  function pager(prefix, page, shown) {
    const first = shown ? page.offset + 1 : 0;
    setText(`${prefix}-page`, `${first}–${page.offset + shown} of ${page.total}`);
    $(`${prefix}-prev`).disabled = page.offset === 0;
    $(`${prefix}-next`).disabled = page.offset + shown >= page.total;
  }

  // ---- dead letters --------------------------------------------------------

  async function loadDeadLetters() {
    const query = new URLSearchParams({
      limit: String(PAGE_SIZE),
      offset: String(deadLetters.offset),
    });
    const body = $('dead-letters-body');
    try {
      const result = await api(`dead-letters?${query}`);
      if (!result.ok) {
        emptyRow(body, 6, `Could not load dead letters: ${errorText(result)}`);
        return;
      }
      deadLetters.total = result.body.totalDeadLetters;
      const rows = result.body.deadLetters.map((d) => {
        const row = document.createElement('tr');
        cell(row, time(d.at));
        cell(row, d.collection);
        cell(row, d.documentId, 'mono');
        cell(row, d.operation);
        cell(row, d.error);
        const actions = cell(row, '', 'actions');
        actions.textContent = '';
        const what = `${d.collection || '?'} ${d.documentId}`;
        if (d.retryable)
          actions.appendChild(
            actionButton('Retry', `Retry dead letter of ${what}`, () =>
              deadLetterAction(d.id, 'retry'),
            ),
          );
        actions.appendChild(
          actionButton('Discard', `Discard dead letter of ${what}`, () =>
            deadLetterAction(d.id, 'discard'),
          ),
        );
        return row;
      });
      if (rows.length) body.replaceChildren(...rows);
      else emptyRow(body, 6, 'No dead letters.');
      pager('dead-letters', deadLetters, rows.length);
    } catch (err) {
      emptyRow(body, 6, `Could not load dead letters: ${err.message}`);
    }
  }

  function actionButton(text, label, onClick) {
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = text;
    b.setAttribute('aria-label', label);
    b.addEventListener('click', onClick);
    return b;
  }

  async function deadLetterAction(id, action) {
    if (!apiKey) {
      showMessage('dead-letters-message', 'Enter the API key first (under Controls).', true);
      $('api-key').focus();
      return;
    }
    try {
      const result =
        action === 'retry'
          ? await api(`dead-letters/${encodeURIComponent(id)}/retry`, { method: 'POST' })
          : await api(`dead-letters/${encodeURIComponent(id)}`, { method: 'DELETE' });
      if (result.ok) showMessage('dead-letters-message', result.body.message);
      else
        showMessage(
          'dead-letters-message',
          `${action === 'retry' ? 'Retry' : 'Discard'} failed: ${errorText(result)}`,
          true,
        );
    } catch (err) {
      showMessage('dead-letters-message', `${action} failed: ${err.message}`, true);
    }
    loadDeadLetters();
  }

  // ---- wiring --------------------------------------------------------------

  function start() {
    $('key-form').addEventListener('submit', (e) => e.preventDefault());
    $('api-key').addEventListener('change', (e) => {
      apiKey = e.target.value.trim();
      if (keyNeededForReads) {
        keyNeededForReads = false;
        connect();
        loadConflicts();
        loadDeadLetters();
      }
    });
    $('api-key').addEventListener('input', (e) => (apiKey = e.target.value.trim()));
    $('toggle').addEventListener('click', toggle);
    $('conflict-filter').addEventListener('submit', (e) => {
      e.preventDefault();
      conflicts.collection = $('conflict-collection').value.trim();
      conflicts.offset = 0;
      loadConflicts();
    });
    $('conflicts-prev').addEventListener('click', () => {
      conflicts.offset = Math.max(0, conflicts.offset - PAGE_SIZE);
      loadConflicts();
    });
    $('conflicts-next').addEventListener('click', () => {
      conflicts.offset += PAGE_SIZE;
      loadConflicts();
    });
    $('dead-letters-prev').addEventListener('click', () => {
      deadLetters.offset = Math.max(0, deadLetters.offset - PAGE_SIZE);
      loadDeadLetters();
    });
    $('dead-letters-next').addEventListener('click', () => {
      deadLetters.offset += PAGE_SIZE;
      loadDeadLetters();
    });
    connect();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
