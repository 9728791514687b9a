// The dashboard's router: #/fleet, #/thing/<name>, #/rules, #/sql,
// #/health. Each page is a module whose mount(main, arg) returns a
// function that stops its timers and streams.
import { token, setUnauthorizedHandler } from './api.js';
import * as fleet from './fleet.js';
import * as thing from './thing.js';
import * as rules from './rules.js';
import * as sql from './sql.js';
import * as health from './health.js';

const pages = { fleet, thing, rules, sql, health };
const main = document.getElementById('main');
const dialog = document.getElementById('token-dialog');
let unmount = () => {};

function askToken(message) {
  document.getElementById('token-error').textContent = message || '';
  if (!dialog.open) dialog.showModal();
}

document.getElementById('token-form').addEventListener('submit', () => {
  token.set(document.getElementById('token-input').value.trim());
  document.getElementById('token-input').value = '';
  route();
});
document.getElementById('logout').addEventListener('click', () => { token.clear(); route(); });
setUnauthorizedHandler((msg) => { token.clear(); unmount(); unmount = () => {}; askToken('The API refused the token: ' + msg); });

function route() {
  unmount();
  unmount = () => {};
  main.replaceChildren();
  if (!token.get()) { askToken(); return; }
  document.getElementById('logout').hidden = false;
  const [, name = 'fleet', ...rest] = (location.hash || '#/fleet').split('/');
  const page = pages[name] || fleet;
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.dataset.page === name);
  const stop = page.mount(main, decodeURIComponent(rest.join('/')));
  unmount = typeof stop === 'function' ? stop : () => {};
}

window.addEventListener('hashchange', route);
route();
