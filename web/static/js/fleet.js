// The fleet page: a page of things from GET /api/dashboard/fleet
// (filter, search, sort, paging over the server's index), kept current
// by the fleet stream's changed rows.
import { api, live, h, ago } from './api.js';

const cols = [
  ['thing', 'Thing'], ['connected', 'Status', false], ['last_seen', 'Last seen'],
  ['rate', 'Msg/s', true], ['messages', 'Messages', true], ['anomalies', 'Open anomalies', true],
];

export function mount(main) {
  const ctl = new AbortController();
  const q = { q: '', status: 'all', sort: 'thing', desc: false, offset: 0, limit: 100 };
  const search = h('input', { type: 'search', placeholder: 'search things', id: 'fleet-search' });
  const status = h('select', { id: 'fleet-status' }, ['all', 'connected', 'offline', 'anomalous'].map((s) => h('option', { value: s }, s)));
  const summary = h('span', { id: 'fleet-summary', class: 'muted' });
  const prev = h('button', { type: 'button' }, '‹ prev');
  const next = h('button', { type: 'button' }, 'next ›');
  const liveState = h('span', { class: 'muted', id: 'fleet-live' });
  const tbody = h('tbody', { id: 'fleet-rows' });
  const head = h('tr', {}, cols.map(([key, label, num]) => h('th', { 'data-sort': key === 'connected' ? null : key, class: num ? 'num' : '' }, label)));
  main.append(h('h1', {}, 'Fleet'),
    h('div', { class: 'toolbar' }, search, status, prev, next, summary, liveState),
    h('table', { id: 'fleet' }, h('thead', {}, head), tbody));

  const rows = new Map(); // thing -> {tr, cells, data}
  let loading = 0;

  function cellsOf(t) {
    return [
      h('a', { href: '#/thing/' + encodeURIComponent(t.thing) }, t.thing),
      h('span', { class: 'badge ' + (t.connected ? 'connected' : 'offline') }, t.connected ? 'connected' : 'offline'),
      ago(t.last_seen), t.rate.toFixed(2), String(t.messages),
      t.anomalies ? h('span', { class: 'badge anom' }, String(t.anomalies)) : '0',
    ];
  }
  function fill(tr, t) {
    const cs = cellsOf(t);
    tr.dataset.connected = t.connected;
    for (let i = 0; i < cs.length; i++) tr.children[i].replaceChildren(cs[i]);
  }
  function rowOf(t) {
    const tr = h('tr', { 'data-thing': t.thing }, cols.map(([, , num]) => h('td', { class: num ? 'num' : '' })));
    fill(tr, t);
    return tr;
  }

  async function load() {
    const n = ++loading;
    const p = new URLSearchParams({ q: q.q, status: q.status, sort: q.sort, desc: q.desc, offset: q.offset, limit: q.limit });
    const t0 = performance.now();
    let page;
    try {
      page = await api('/api/dashboard/fleet?' + p, { signal: ctl.signal });
    } catch (e) {
      if (!ctl.signal.aborted) summary.textContent = e.message;
      return;
    }
    if (n !== loading) return;
    rows.clear();
    const frag = document.createDocumentFragment();
    for (const t of page.things) {
      const tr = rowOf(t);
      rows.set(t.thing, { tr, data: t });
      frag.append(tr);
    }
    tbody.replaceChildren(frag);
    const last = Math.min(page.offset + page.things.length, page.matched);
    summary.textContent = `${page.total} things, ${page.connected} connected; showing ${page.matched ? page.offset + 1 : 0}–${last} of ${page.matched}` + (page.ready ? '' : ' (index still loading)');
    prev.disabled = q.offset === 0;
    next.disabled = last >= page.matched;
    performance.mark('fleet-rendered');
    window.__fleetRendered = { things: page.things.length, total: page.total, ms: performance.now() - t0 };
    main.dispatchEvent(new CustomEvent('fleet-rendered', { detail: { q: q.q } }));
  }

  // Live rows: update the rows shown; a new thing or a status change
  // under a filter reloads the page (at most every 300 ms).
  let reloadTimer = null;
  function reloadSoon() { if (!reloadTimer) reloadTimer = setTimeout(() => { reloadTimer = null; load(); }, 300); }
  function applyRows(list) {
    let needReload = false;
    for (const t of list) {
      const r = rows.get(t.thing);
      if (r) {
        if (q.status !== 'all' && r.data.connected !== t.connected) needReload = true;
        r.data = t;
        fill(r.tr, t);
      } else if (!q.q || t.thing.toLowerCase().includes(q.q.toLowerCase())) {
        needReload = true;
      }
    }
    window.__fleetUpdates = (window.__fleetUpdates || 0) + list.length;
    if (needReload) reloadSoon();
  }

  let searchTimer;
  search.addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => { q.q = search.value.trim(); q.offset = 0; load(); }, 200);
  });
  status.addEventListener('change', () => { q.status = status.value; q.offset = 0; load(); });
  prev.addEventListener('click', () => { q.offset = Math.max(0, q.offset - q.limit); load(); });
  next.addEventListener('click', () => { q.offset += q.limit; load(); });
  head.addEventListener('click', (e) => {
    const key = e.target.dataset && e.target.dataset.sort;
    if (!key) return;
    q.desc = q.sort === key ? !q.desc : key !== 'thing';
    q.sort = key;
    load();
  });
  // "Last seen" text ages: redraw it every 5 s from the data held.
  const tick = setInterval(() => { for (const r of rows.values()) r.tr.children[2].textContent = ago(r.data.last_seen); }, 5000);

  load();
  live('/api/dashboard/live', (ev, data) => {
    if (ev === 'rows') applyRows(data);
    else if (ev === 'reload' || ev === 'lost') reloadSoon();
  }, ctl.signal, (s) => { liveState.textContent = s; });
  return () => { ctl.abort(); clearInterval(tick); clearTimeout(reloadTimer); };
}
