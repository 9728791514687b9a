// The SQL console: POST /api/sql (ClickHouse as the restricted user),
// the result as a table and a chart, saved queries in localStorage.
import { api, h } from './api.js';

const SAVED = 'iotpipe.savedQueries';
const saved = () => { try { return JSON.parse(localStorage.getItem(SAVED) || '{}'); } catch { return {}; } };

export function mount(main) {
  const ctl = new AbortController();
  const text = h('textarea', { id: 'sql-text', rows: 6, spellcheck: 'false' }, 'SELECT thing, count() FROM telemetry GROUP BY thing ORDER BY thing');
  const run = h('button', { type: 'button', id: 'sql-run' }, 'Run (Ctrl+Enter)');
  const save = h('button', { type: 'button', id: 'sql-save' }, 'Save…');
  const list = h('select', { id: 'sql-saved' });
  const del = h('button', { type: 'button' }, 'Delete saved');
  const msg = h('div', { id: 'sql-message', class: 'muted' });
  const result = h('div', { id: 'sql-result' });
  const chartBox = h('div', { id: 'sql-chart', class: 'chart' });
  main.append(h('h1', {}, 'SQL'), text, h('div', { class: 'toolbar' }, run, save, list, del), msg, chartBox, result);
  let plot = null;

  function fillSaved() {
    const s = saved();
    list.replaceChildren(h('option', { value: '' }, 'saved queries…'), ...Object.keys(s).sort().map((k) => h('option', { value: k }, k)));
  }
  fillSaved();
  list.addEventListener('change', () => { const s = saved(); if (s[list.value]) text.value = s[list.value]; });
  save.addEventListener('click', () => {
    const name = prompt('Save the query as');
    if (!name) return;
    const s = saved(); s[name] = text.value; localStorage.setItem(SAVED, JSON.stringify(s)); fillSaved(); list.value = name;
  });
  del.addEventListener('click', () => { const s = saved(); delete s[list.value]; localStorage.setItem(SAVED, JSON.stringify(s)); fillSaved(); });

  let last = 0;
  async function exec() {
    if (Date.now() - last < 1000) return; // never more than once a second
    last = Date.now();
    msg.className = 'muted'; msg.textContent = 'running…';
    run.disabled = true;
    try {
      const r = await api('/api/sql', { method: 'POST', body: { query: text.value }, signal: ctl.signal });
      msg.textContent = `${r.rows.length} rows${r.truncated ? ' (truncated)' : ''}` + (r.elapsed_ms !== undefined ? ` in ${r.elapsed_ms} ms` : '');
      result.replaceChildren(h('table', { id: 'sql-table' },
        h('thead', {}, h('tr', {}, r.columns.map((c) => h('th', { title: c.type }, c.name)))),
        h('tbody', {}, r.rows.map((row) => h('tr', {}, row.map((v) => h('td', {}, typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v))))))));
      drawChart(r);
    } catch (e) {
      msg.className = 'error'; msg.textContent = e.message;
      result.replaceChildren();
    } finally { run.disabled = false; }
  }
  // The chart: the first column as x (time or number, else the row
  // number) and every numeric column as a line.
  function drawChart(r) {
    plot?.destroy(); plot = null; chartBox.replaceChildren();
    if (!r.rows.length || r.columns.length < 2) return;
    const num = (v) => (v === null || v === '' || isNaN(Number(v)) ? null : Number(v));
    const c0 = r.columns[0];
    const isTime = /DateTime|Date/.test(c0.type);
    const isNum = !isTime && r.rows.every((row) => num(row[0]) !== null);
    const xs = r.rows.map((row, i) => (isTime ? Date.parse(String(row[0]).replace(' ', 'T') + (String(row[0]).endsWith('Z') ? '' : 'Z')) / 1000 : isNum ? num(row[0]) : i));
    const ys = r.columns.map((c, i) => i).filter((i) => i > 0 && r.rows.some((row) => num(row[i]) !== null));
    if (!ys.length) return;
    const order = xs.map((x, i) => i).sort((a, b) => xs[a] - xs[b]);
    const data = [order.map((i) => xs[i]), ...ys.map((j) => order.map((i) => num(r.rows[i][j])))];
    const colors = ['#2b6cb0', '#dd6b20', '#38a169', '#805ad5', '#d53f8c'];
    plot = new uPlot({
      width: Math.max(400, main.clientWidth - 24), height: 220,
      scales: { x: { time: isTime } },
      axes: [{ values: isTime || isNum ? undefined : (u, vals) => vals.map((v) => String(r.rows[order[v]]?.[0] ?? '')) }, {}],
      series: [{ label: c0.name }, ...ys.map((j, k) => ({ label: r.columns[j].name, stroke: colors[k % colors.length], points: { show: true } }))],
    }, data, chartBox);
  }
  run.addEventListener('click', exec);
  text.addEventListener('keydown', (e) => { if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) exec(); });
  return () => { ctl.abort(); plot?.destroy(); };
}
