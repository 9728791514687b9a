// The health page: /metrics read every 2 s; counters shown as rates
// between two reads. Ingest, processor lag per stage and partition,
// ClickHouse sink and the executors.
import { api, h } from './api.js';

// parse reads the Prometheus text format into [{name, labels, value}].
export function parse(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (!line || line[0] === '#') continue;
    const m = line.match(/^([a-zA-Z_:][\w:]*)(\{(.*)\})?\s+(\S+)/);
    if (!m) continue;
    const labels = {};
    if (m[3]) for (const l of m[3].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    out.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return out;
}

const key = (s) => s.name + JSON.stringify(s.labels);
const lbl = (l) => Object.entries(l).map(([k, v]) => `${k}=${v}`).join(' ');

const sections = [
  ['Ingest', /^iotpipe_ingest_/],
  ['Processors (lag per stage and partition)', /^iotpipe_processor_/],
  ['Rules', /^iotpipe_rules_/],
  ['ClickHouse', /^iotpipe_clickhouse_/],
  ['Actions', /^iotpipe_(republish|webhook|kafka|command)/],
  ['API', /^iotpipe_api_/],
];

export function mount(main) {
  const ctl = new AbortController();
  const body = h('div', { id: 'health' });
  const summary = h('div', { class: 'cards', id: 'health-summary' });
  main.append(h('h1', {}, 'Health'), summary, body);
  let prev = null, prevAt = 0;

  async function load() {
    let text, ready;
    try {
      text = await api('/metrics', { signal: ctl.signal });
      ready = await fetch('/readyz').then((r) => r.text()).catch((e) => e.message);
    } catch (e) { body.replaceChildren(h('div', { class: 'error' }, e.message)); return; }
    const now = Date.now();
    const samples = parse(text).filter((s) => s.name.startsWith('iotpipe_') && !s.name.endsWith('_bucket'));
    const rate = (s) => {
      if (!prev || !/_total$|_count$|_sum$/.test(s.name)) return null;
      const p = prev.get(key(s));
      return p === undefined ? null : Math.max(0, (s.value - p) / ((now - prevAt) / 1000));
    };
    const sum = (re, f = (s) => s.value) => samples.filter((s) => re.test(s.name)).reduce((a, s) => a + (f(s) || 0), 0);
    const card = (title, v, id) => h('div', { class: 'card', id }, h('div', { class: 'muted' }, title), h('strong', {}, v));
    summary.replaceChildren(
      card('ready', ready.trim(), 'health-ready'),
      card('ingest: events logged/s', prev ? sum(/^iotpipe_ingest_logged_total$/, rate).toFixed(1) : '…', 'health-ingest'),
      card('processor lag (records, all partitions)', String(sum(/^iotpipe_processor_lag$/)), 'health-lag'),
      card('ClickHouse rows inserted/s', prev ? sum(/^iotpipe_clickhouse_rows_inserted_total$/, rate).toFixed(1) : '…', 'health-ch'),
      card('ClickHouse insert failures', String(sum(/^iotpipe_clickhouse_insert_failures_total$/)), 'health-ch-fail'));
    body.replaceChildren(...sections.map(([title, re]) => {
      const rows = samples.filter((s) => re.test(s.name));
      if (!rows.length) return null;
      return h('div', {}, h('h2', {}, title), h('table', {},
        h('thead', {}, h('tr', {}, h('th', {}, 'Metric'), h('th', {}, 'Labels'), h('th', { class: 'num' }, 'Value'), h('th', { class: 'num' }, 'Per second'))),
        h('tbody', {}, rows.map((s) => { const r = rate(s); return h('tr', {}, h('td', {}, s.name), h('td', {}, lbl(s.labels)), h('td', { class: 'num' }, String(+s.value.toFixed(3))), h('td', { class: 'num' }, r === null ? '' : r.toFixed(2))); }))));
    }).filter(Boolean));
    prev = new Map(samples.map((s) => [key(s), s.value]));
    prevAt = now;
  }
  load();
  const t = setInterval(load, 2000);
  return () => { ctl.abort(); clearInterval(t); };
}
