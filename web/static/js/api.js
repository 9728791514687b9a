// The API client: the token (sessionStorage), fetch with
// Authorization: Bearer, and server-sent events read over fetch (so the
// token goes in the header, never in a URL).

const KEY = 'iotpipe.token';

export const token = {
  get: () => sessionStorage.getItem(KEY) || '',
  set: (t) => sessionStorage.setItem(KEY, t),
  clear: () => sessionStorage.removeItem(KEY),
};

// ApiError carries the HTTP status and the server's message.
export class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

let onUnauthorized = () => {};
export function setUnauthorizedHandler(fn) { onUnauthorized = fn; }

function headers(extra) {
  const h = { ...extra };
  const t = token.get();
  if (t) h.Authorization = 'Bearer ' + t;
  return h;
}

async function errorOf(res) {
  let msg = res.statusText;
  try {
    const text = await res.text();
    try {
      const j = JSON.parse(text);
      msg = j.error || j.message || text;
    } catch { msg = text || msg; }
  } catch { /* keep statusText */ }
  if (res.status === 401) onUnauthorized(msg);
  return new ApiError(res.status, `HTTP ${res.status}: ${msg}`.trim());
}

// api fetches path; JSON in and out. opts.raw returns the Response.
export async function api(path, opts = {}) {
  const init = { method: opts.method || 'GET', headers: headers(opts.headers), signal: opts.signal };
  if (opts.body !== undefined) {
    init.body = typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
    init.headers['Content-Type'] = 'application/json';
  }
  const res = await fetch(path, init);
  if (!res.ok) throw await errorOf(res);
  if (opts.raw) return res;
  const ct = res.headers.get('Content-Type') || '';
  return ct.includes('json') ? res.json() : res.text();
}

// live reads the server-sent events of path, calling on(event, data)
// for each, reconnecting after a pause until signal aborts.
// status(text) reports the connection's state.
export async function live(path, on, signal, status = () => {}) {
  while (!signal.aborted) {
    try {
      const res = await fetch(path, { headers: headers({ Accept: 'text/event-stream' }), signal });
      if (!res.ok) throw await errorOf(res);
      status('live');
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          let event = 'message';
          const data = [];
          for (const line of block.split('\n')) {
            if (line.startsWith('event: ')) event = line.slice(7);
            else if (line.startsWith('data: ')) data.push(line.slice(6));
          }
          if (data.length) {
            try { on(event, JSON.parse(data.join('\n'))); } catch (e) { console.error('live', event, e); }
          }
        }
      }
    } catch (e) {
      if (signal.aborted) return;
      status('reconnecting: ' + e.message);
      if (e.status === 401 || e.status === 403) return;
    }
    if (signal.aborted) return;
    status('reconnecting');
    await new Promise((r) => setTimeout(r, 2000));
  }
}

// h builds an element: h('td', {class: 'num'}, 'text', child, ...).
export function h(tag, attrs = {}, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const k of kids.flat()) {
    if (k === undefined || k === null || k === false) continue;
    el.append(k instanceof Node ? k : String(k));
  }
  return el;
}

export function ago(ms) {
  if (!ms) return '—';
  const s = Math.max(0, (Date.now() - ms) / 1000);
  if (s < 60) return `${s.toFixed(0)} s ago`;
  if (s < 3600) return `${(s / 60).toFixed(0)} min ago`;
  if (s < 86400) return `${(s / 3600).toFixed(1)} h ago`;
  return new Date(ms).toISOString().replace('T', ' ').slice(0, 19);
}

export function time(ms) { return new Date(ms).toISOString().replace('T', ' ').slice(0, 23); }

export function json(v) { return JSON.stringify(v, null, 2); }
