// The dashboard's browser driver for cmd/iotpipe's TestDashboard:
// Debian's chromium (headless) driven by playwright-core, one command a
// line on stdin (JSON), one answer a line on stdout (JSON: {ok, ...} or
// {ok: false, error}).
//
// Environment: PLAYWRIGHT_CORE (the playwright-core package directory),
// CHROMIUM (the browser, default /usr/bin/chromium), BASE (the
// dashboard's URL), TOKEN (the API token), OUT (screenshots' folder).
import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';
import { join } from 'node:path';

const require = createRequire(import.meta.url);
const { chromium } = require(process.env.PLAYWRIGHT_CORE);
const base = process.env.BASE;
const out = process.env.OUT || '.';

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  // As the machine's notes say: no sandbox as root, no GPU, and no
  // background connections (the network is closed).
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'], // playwright gives it a new empty profile
});
const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
const page = await context.newPage();
const consoleErrors = [];
const pageErrors = [];
page.on('pageerror', (e) => pageErrors.push(String(e)));
page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });

const ops = {
  // login opens the dashboard without a token, checks the page asks
  // for one, gives it, and waits for the fleet page.
  async login() {
    await page.goto(base + '/#/fleet');
    await page.waitForSelector('#token-dialog[open]');
    await page.fill('#token-input', process.env.TOKEN);
    await page.click('#token-form button[type=submit]');
    await page.waitForSelector('#fleet-summary:not(:empty)');
    const stored = await page.evaluate(() => sessionStorage.getItem('iotpipe.token') === null ? 'none' : 'set');
    return { token: stored, summary: await page.textContent('#fleet-summary') };
  },
  async goto({ hash, wait }) {
    await page.evaluate((h) => { location.hash = h; }, hash);
    if (wait) await page.waitForSelector(wait, { timeout: 30000 });
    return {};
  },
  // waitRow waits until the fleet page shows thing (and, when given,
  // with that connection state); at is the browser's clock then.
  async waitRow({ thing, connected, timeout = 30000 }) {
    const h = await page.waitForFunction(({ thing, connected }) => {
      const tr = document.querySelector(`#fleet-rows tr[data-thing="${CSS.escape(thing)}"]`);
      if (!tr) return false;
      if (connected !== undefined && connected !== null && tr.dataset.connected !== String(connected)) return false;
      return { at: Date.now(), status: tr.children[1].textContent };
    }, { thing, connected }, { timeout, polling: 20 });
    return h.jsonValue();
  },
  // waitChart waits until the thing page's chart of field has its band
  // and at least one anomaly marker.
  async waitChart({ field, timeout = 60000 }) {
    const h = await page.waitForFunction((field) => {
      const c = document.querySelector(`.chart[data-field="${CSS.escape(field)}"]`);
      if (!c || !(+c.dataset.band > 0) || !(+c.dataset.anomalies > 0) || !c.querySelector('canvas')) return false;
      return { points: +c.dataset.points, band: +c.dataset.band, anomalies: +c.dataset.anomalies };
    }, field, { timeout, polling: 200 });
    return h.jsonValue();
  },
  async screenshot({ name }) {
    const path = join(out, name);
    await page.screenshot({ path, fullPage: true });
    return { path };
  },
  // editDesired sets the desired state in the thing page's editor.
  async editDesired({ desired, shadow = '' }) {
    await page.click('#desired-editor summary');
    await page.selectOption('#desired-shadow', shadow);
    await page.fill('#desired-text', desired);
    await page.click('#desired-send');
    await page.waitForFunction(() => /accepted|HTTP|not JSON/.test(document.querySelector('#desired-result').textContent), null, { timeout: 30000 });
    return { result: await page.textContent('#desired-result') };
  },
  // waitText waits until selector's text contains text.
  async waitText({ selector, text, timeout = 30000 }) {
    await page.waitForFunction(({ selector, text }) => (document.querySelector(selector)?.textContent || '').includes(text), { selector, text }, { timeout, polling: 100 });
    return { text: await page.textContent(selector) };
  },
  // sql runs query in the console and answers its message and rows.
  async sql({ query }) {
    await page.fill('#sql-text', query);
    await page.waitForTimeout(1100); // the console runs at most once a second
    await page.click('#sql-run');
    await page.waitForFunction(() => !/running/.test(document.querySelector('#sql-message').textContent), null, { timeout: 60000, polling: 50 });
    return page.evaluate(() => ({
      message: document.querySelector('#sql-message').textContent,
      error: document.querySelector('#sql-message').className === 'error',
      rows: [...document.querySelectorAll('#sql-table tbody tr')].map((tr) => [...tr.children].map((td) => td.textContent)),
    }));
  },
  // fleetRender loads the fleet page afresh and times it in the
  // browser: from navigation start to the first page of rows drawn.
  async fleetRender() {
    // A new document (not a hash change), so the timing starts at zero.
    await page.goto(`${base}/?load=${Date.now()}#/fleet`);
    await page.waitForFunction(() => window.__fleetRendered, null, { timeout: 30000, polling: 10 });
    return page.evaluate(() => {
      const nav = performance.getEntriesByType('navigation')[0];
      const rendered = performance.getEntriesByName('fleet-rendered')[0];
      return { ...window.__fleetRendered, sinceNavigation: rendered ? rendered.startTime : null, domContentLoaded: nav.domContentLoadedEventEnd };
    });
  },
  // responsiveness watches the fleet page for ms: the live row updates
  // applied, the frames' gaps (a long gap is a frozen page), and how
  // long a search takes to show its rows while the updates arrive.
  async responsiveness({ ms = 10000, search }) {
    return page.evaluate(async ({ ms, search }) => {
      const u0 = window.__fleetUpdates || 0;
      const gaps = [];
      let last = performance.now();
      let running = true;
      const frame = (t) => { gaps.push(t - last); last = t; if (running) requestAnimationFrame(frame); };
      requestAnimationFrame(frame);
      await new Promise((r) => setTimeout(r, ms / 2));
      // A search while updates arrive: input to rows drawn.
      const main = document.getElementById('main');
      const done = new Promise((r) => {
        const on = (e) => { if (e.detail.q === search) { main.removeEventListener('fleet-rendered', on); r(); } };
        main.addEventListener('fleet-rendered', on);
      });
      const t0 = performance.now();
      const input = document.getElementById('fleet-search');
      input.value = search;
      input.dispatchEvent(new Event('input'));
      await done;
      const searchMs = performance.now() - t0; // with the page's 200 ms input debounce
      const shown = document.querySelectorAll('#fleet-rows tr').length;
      await new Promise((r) => setTimeout(r, ms / 2));
      running = false;
      gaps.sort((a, b) => a - b);
      const updates = (window.__fleetUpdates || 0) - u0;
      return {
        updatesPerSecond: updates / (ms / 1000), frames: gaps.length, maxFrameGapMs: gaps[gaps.length - 1],
        p95FrameGapMs: gaps[Math.floor(gaps.length * 0.95)], searchMs, searchRows: shown,
      };
    }, { ms, search });
  },
  async errors() { return { pageErrors, consoleErrors }; },
  async close() { await browser.close(); return {}; },
};

const rl = createInterface({ input: process.stdin });
process.stdout.write(JSON.stringify({ ok: true, ready: true }) + '\n');
for await (const line of rl) {
  let cmd;
  try { cmd = JSON.parse(line); } catch (e) { process.stdout.write(JSON.stringify({ ok: false, error: 'bad command: ' + e.message }) + '\n'); continue; }
  try {
    const res = await ops[cmd.op](cmd);
    process.stdout.write(JSON.stringify({ ok: true, ...res }) + '\n');
  } catch (e) {
    process.stdout.write(JSON.stringify({ ok: false, error: String(e && e.stack || e) }) + '\n');
  }
  if (cmd.op === 'close') break;
}
process.exit(0);
