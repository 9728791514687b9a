// The thing page: its row, shadows (GET /things/{thing}/shadow, classic
// and named) with a desired-state editor (POST through the log), a
// chart per numeric field with the PEWMA mean and band and anomaly
// markers, recent events and commands; live by the thing's stream.
import { api, live, h, ago, time, json } from './api.js';

const MAX_CHARTS = 8;
const SERIES_EVERY = 10000; // ms: charts re-read from ClickHouse at most this often

export function mount(main, name) {
  const ctl = new AbortController();
  const enc = encodeURIComponent(name);
  const info = h('div', { id: 'thing-info', class: 'muted' });
  const errors = h('div', { class: 'error', id: 'thing-errors' });
  const shadows = h('div', { id: 'shadows', class: 'cards' });
  const charts = h('div', { id: 'charts' });
  const events = h('tbody', { id: 'events' });
  const commands = h('tbody', { id: 'commands' });
  const liveState = h('span', { class: 'muted' });
  const editor = desiredEditor(name, enc, () => loadShadows());
  main.append(h('h1', {}, 'Thing ', h('span', { id: 'thing-name' }, name), ' ', liveState), info, errors,
    h('h2', {}, 'Shadows'), shadows, editor.el,
    h('h2', {}, 'Telemetry'), charts,
    h('div', { class: 'grid2' },
      h('div', {}, h('h2', {}, 'Recent events'), h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'Received'), h('th', {}, 'Type'), h('th', {}, 'Topic'), h('th', {}, 'Payload'))), events)),
      h('div', {}, h('h2', {}, 'Commands'), h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'Id'), h('th', {}, 'Rule'), h('th', {}, 'Fired'), h('th', {}, 'Status'))), commands))));

  let shadowNames = [''];
  const chartsByField = new Map();

  function showInfo(t, known) {
    info.replaceChildren(known
      ? h('span', {}, h('span', { class: 'badge ' + (t.connected ? 'connected' : 'offline'), id: 'thing-status' }, t.connected ? 'connected' : 'offline'),
        ` last seen ${ago(t.last_seen)} · ${t.messages} messages · ${t.rate.toFixed(2)} msg/s · ${t.anomalies} open anomalies`)
      : 'not seen yet');
  }

  function addEvent(ev) {
    events.prepend(h('tr', {}, h('td', {}, time(ev.received)), h('td', {}, ev.type), h('td', {}, ev.topic || ''), h('td', {}, h('code', {}, ev.payload || ''))));
    while (events.children.length > 50) events.lastChild.remove();
  }

  async function addCommand(c) {
    const tr = h('tr', { 'data-command': c.id }, h('td', {}, c.id), h('td', {}, c.rule), h('td', {}, time(c.fired_at)), h('td', {}, '…'));
    commands.prepend(tr);
    try {
      const st = await api('/api/commands/' + encodeURIComponent(c.id), { signal: ctl.signal });
      tr.lastChild.textContent = st.status || json(st);
    } catch (e) { tr.lastChild.textContent = e.message; }
  }

  async function loadShadows() {
    const cards = await Promise.all(shadowNames.map(async (sn) => {
      const path = `/things/${enc}/shadow` + (sn ? '?name=' + encodeURIComponent(sn) : '');
      const title = sn ? `named shadow "${sn}"` : 'classic shadow';
      try {
        const doc = await api(path, { signal: ctl.signal });
        const st = doc.state || {};
        if (sn === editor.shadow()) editor.prefill(st.desired);
        return h('div', { class: 'card', 'data-shadow': sn },
          h('strong', {}, title), ` version ${doc.version}`,
          h('div', {}, 'desired'), h('pre', { class: 'desired' }, json(st.desired ?? null)),
          h('div', {}, 'reported'), h('pre', { class: 'reported' }, json(st.reported ?? null)),
          h('div', {}, 'delta'), h('pre', { class: 'delta' }, json(st.delta ?? null)),
          h('details', {}, h('summary', {}, 'metadata'), h('pre', {}, json(doc.metadata ?? null))));
      } catch (e) {
        return h('div', { class: 'card', 'data-shadow': sn }, h('strong', {}, title), h('div', { class: 'muted' }, e.status === 404 ? 'no shadow yet' : e.message));
      }
    }));
    if (!ctl.signal.aborted) shadows.replaceChildren(...cards);
    editor.names(shadowNames);
  }

  let lastSeries = 0;
  let seriesTimer = null;
  function loadSeriesSoon() {
    if (seriesTimer) return;
    const wait = Math.max(0, lastSeries + SERIES_EVERY - Date.now());
    seriesTimer = setTimeout(() => { seriesTimer = null; loadSeries(); }, wait);
  }
  async function loadSeries() {
    lastSeries = Date.now();
    for (const [field, c] of chartsByField) {
      try {
        const s = await api(`/api/dashboard/things/${enc}/series?field=${encodeURIComponent(field)}&minutes=60`, { signal: ctl.signal });
        c.set(s);
      } catch (e) { c.error(e.message); }
    }
  }

  function ensureCharts(fields) {
    for (const f of fields) {
      if (chartsByField.has(f) || chartsByField.size >= MAX_CHARTS) continue;
      const c = chart(f);
      chartsByField.set(f, c);
      charts.append(c.el);
    }
  }

  async function load() {
    let v;
    try {
      v = await api(`/api/dashboard/things/${enc}`, { signal: ctl.signal });
    } catch (e) { errors.textContent = e.message; return; }
    showInfo(v.thing, v.known);
    errors.textContent = (v.errors || []).join('\n');
    shadowNames = v.shadows;
    loadShadows();
    events.replaceChildren();
    for (const r of [...v.recent].reverse()) addEvent(r);
    commands.replaceChildren();
    for (const c of [...v.commands].reverse()) addCommand(c);
    ensureCharts(v.fields);
    loadSeries();
  }

  load();
  async function refreshInfo() {
    try { const v = await api(`/api/dashboard/things/${enc}`, { signal: ctl.signal }); showInfo(v.thing, v.known); } catch { /* shown on next load */ }
  }
  const refresh = setInterval(() => {
    loadSeriesSoon(); // ClickHouse catches up with the log: read the charts again
    refreshInfo();
  }, 5000);
  live('/api/dashboard/live?thing=' + enc, (ev, data) => {
    switch (ev) {
      case 'event':
        addEvent(data);
        if (data.type === 'connected' || data.type === 'disconnected') setTimeout(refreshInfo, 300);
        if (data.metrics) {
          ensureCharts(Object.keys(data.metrics));
          for (const [f, v] of Object.entries(data.metrics)) chartsByField.get(f)?.point(data.received, v);
          loadSeriesSoon();
        }
        break;
      case 'shadow':
        if (!shadowNames.includes(data.shadow)) shadowNames.push(data.shadow);
        loadShadows();
        break;
      case 'anomaly':
        chartsByField.get(data.metric)?.anomaly(data.time, data.value);
        loadSeriesSoon();
        break;
      case 'command':
        addCommand(data);
        break;
      case 'lost':
        load();
        break;
    }
  }, ctl.signal, (s) => { liveState.textContent = s; });
  return () => { ctl.abort(); clearInterval(refresh); clearTimeout(seriesTimer); for (const c of chartsByField.values()) c.destroy(); };
}

// desiredEditor edits a shadow's desired state: POST
// /things/{thing}/shadow[?name=] with {"state":{"desired":...}}, which
// goes through the log like a device's update.
function desiredEditor(name, enc, after) {
  const sel = h('select', { id: 'desired-shadow' }, h('option', { value: '' }, 'classic'));
  const text = h('textarea', { id: 'desired-text', rows: 5, spellcheck: 'false' }, '{}');
  const msg = h('div', { id: 'desired-result', class: 'muted' });
  let touched = false;
  text.addEventListener('input', () => { touched = true; });
  sel.addEventListener('change', () => { touched = false; after(); });
  const button = h('button', { type: 'button', id: 'desired-send' }, 'Update desired');
  button.addEventListener('click', async () => {
    let desired;
    try { desired = JSON.parse(text.value); } catch (e) { msg.className = 'error'; msg.textContent = 'not JSON: ' + e.message; return; }
    const q = sel.value ? '?name=' + encodeURIComponent(sel.value) : '';
    try {
      const res = await api(`/things/${enc}/shadow${q}`, { method: 'POST', body: { state: { desired } } });
      msg.className = 'ok';
      msg.textContent = `accepted: version ${res.version}`;
      touched = false;
      after();
    } catch (e) { msg.className = 'error'; msg.textContent = e.message; }
  });
  const el = h('details', { class: 'card', id: 'desired-editor' }, h('summary', {}, 'Edit desired state'),
    h('div', { class: 'toolbar' }, 'shadow', sel, button), text, msg);
  return {
    el,
    shadow: () => sel.value,
    prefill(d) { if (!touched) text.value = JSON.stringify(d ?? {}, null, 2); },
    names(ns) {
      for (const n of ns) {
        if (n && ![...sel.options].some((o) => o.value === n)) sel.append(h('option', { value: n }, n));
      }
    },
  };
}

// chart draws one field with uPlot: the value, the PEWMA mean and band
// (lower..upper), and anomaly markers.
function chart(field) {
  const el = h('div', { class: 'chart', 'data-field': field }, h('div', {}, h('strong', {}, field), ' ', h('span', { class: 'muted status' })));
  const box = h('div');
  el.append(box);
  let data = { points: [], band: [], anomalies: [] };
  let plot = null;
  let drawTimer = null;
  const status = el.querySelector('.status');

  function aligned() {
    const xs = new Map();
    const row = (t) => { let r = xs.get(t); if (!r) { r = [null, null, null, null, null]; xs.set(t, r); } return r; };
    for (const [t, v] of data.points) row(t)[0] = v;
    for (const [t, m, lo, hi] of data.band) { const r = row(t); r[1] = m; r[2] = lo; r[3] = hi; }
    for (const [t, v] of data.anomalies) row(t)[4] = v;
    const ts = [...xs.keys()].sort((a, b) => a - b);
    const out = [ts.map((t) => t / 1000), [], [], [], [], []];
    for (const t of ts) { const r = xs.get(t); for (let i = 0; i < 5; i++) out[i + 1].push(r[i]); }
    return out;
  }

  function draw() {
    drawTimer = null;
    const d = aligned();
    el.dataset.points = data.points.length;
    el.dataset.band = data.band.length;
    el.dataset.anomalies = data.anomalies.length;
    status.textContent = `${data.points.length} points · band ${data.band.length ? 'from the PEWMA rule' : 'none (no rule stores pewma(' + field + ') with clickhouse())'} · ${data.anomalies.length} anomalies`;
    if (plot) { plot.setData(d); return; }
    const width = Math.max(400, (el.clientWidth || 900) - 12);
    plot = new uPlot({
      width, height: 220,
      scales: { x: { time: true } },
      series: [
        {},
        { label: field, stroke: '#2b6cb0', width: 1.5, spanGaps: true },
        { label: 'PEWMA mean', stroke: '#38a169', dash: [4, 3], spanGaps: true },
        { label: 'lower', stroke: 'rgba(56,161,105,.4)', spanGaps: true },
        { label: 'upper', stroke: 'rgba(56,161,105,.4)', spanGaps: true },
        { label: 'anomaly', stroke: '#e53e3e', fill: '#e53e3e', width: 0, paths: () => null, points: { show: true, size: 10, fill: '#e53e3e', stroke: '#e53e3e' } },
      ],
      bands: [{ series: [4, 3], fill: 'rgba(56,161,105,.12)' }],
    }, d, box);
  }
  function drawSoon() { if (!drawTimer) drawTimer = setTimeout(draw, 250); }

  return {
    el,
    set(s) { data = { points: s.points, band: s.band, anomalies: s.anomalies }; draw(); },
    point(t, v) { data.points.push([t, v]); drawSoon(); },
    anomaly(t, v) { data.anomalies.push([t, v, 0]); drawSoon(); },
    error(m) { status.textContent = m; },
    destroy() { clearTimeout(drawTimer); plot?.destroy(); },
  };
}
