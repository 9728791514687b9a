// The rules page: GET /api/rules (counters, last outputs, load errors
// with file:line:col), the rule files' text, and the DLQ's newest
// records with their reasons.
import { api, h, time, json } from './api.js';

export function mount(main) {
  const ctl = new AbortController();
  const body = h('div', { id: 'rules' });
  const dlq = h('tbody', { id: 'dlq' });
  main.append(h('h1', {}, 'Rules'), body,
    h('h2', {}, 'Dead letters (newest first)'),
    h('table', {}, h('thead', {}, h('tr', {}, ['Time', 'Stage', 'Reason', 'Key', 'Value', 'Headers'].map((t) => h('th', {}, t)))), dlq));

  async function load() {
    let st, files = { files: [] }, dl = { records: [] };
    try {
      [st, files, dl] = await Promise.all([
        api('/api/rules', { signal: ctl.signal }),
        api('/api/dashboard/rules/files', { signal: ctl.signal }).catch((e) => ({ files: [], error: e.message })),
        api('/api/dashboard/dlq', { signal: ctl.signal }).catch((e) => ({ records: [], error: e.message })),
      ]);
    } catch (e) { body.replaceChildren(h('div', { class: 'error' }, e.message)); return; }
    const text = new Map(files.files.map((f) => [f.path, f.text]));
    const parts = [h('div', { class: 'muted' }, `${st.rules.length} rules from ${st.dir || '?'}, loaded ${st.loaded_at}; ${st.errors} file errors`)];
    for (const f of st.files || []) {
      if (f.error) parts.push(h('div', { class: 'error file-error' }, f.error));
    }
    parts.push(h('table', { id: 'rules-table' },
      h('thead', {}, h('tr', {}, ['Rule', 'Kind', 'Topic', 'Actions', 'Matched', 'Fired', 'Errors', 'Last outputs'].map((t) => h('th', {}, t)))),
      h('tbody', {}, st.rules.map((r) => h('tr', { 'data-rule': r.name },
        h('td', {}, h('strong', {}, r.name), h('div', { class: 'muted' }, r.file || '')),
        h('td', {}, r.kind), h('td', {}, h('code', {}, r.topic)), h('td', {}, (r.actions || []).join(', ')),
        h('td', { class: 'num' }, r.matched), h('td', { class: 'num' }, r.fired),
        h('td', { class: 'num' }, r.errors, r.last_error ? h('div', { class: 'error' }, r.last_error) : null),
        h('td', {}, h('details', {}, h('summary', {}, `${(r.last_outputs || []).length} outputs`),
          (r.last_outputs || []).map((o) => h('pre', {}, time(o.time) + '\n' + json(o.output))))))))));
    for (const [path, t] of text) parts.push(h('details', {}, h('summary', {}, path), h('pre', { class: 'rule-text' }, t)));
    if (files.error) parts.push(h('div', { class: 'error' }, 'rule files: ' + files.error));
    body.replaceChildren(...parts);
    dlq.replaceChildren(...dl.records.map((d) => h('tr', {},
      h('td', {}, time(d.time)), h('td', {}, d.stage), h('td', { class: 'error' }, d.reason),
      h('td', {}, d.key || ''), h('td', {}, h('code', {}, d.value || '')), h('td', {}, h('code', {}, json(d.headers || {}))))));
  }
  load();
  const t = setInterval(load, 5000);
  return () => { ctl.abort(); clearInterval(t); };
}
