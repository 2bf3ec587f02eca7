// app.js - the dashboard shell: asks who the token is (GET /api/whoami, login dialog when
// refused), draws the header and nav, routes #/<page>/<arg> to a page module, keeps ONE
// live EventSource on /api/events (resumed from the last seq after a drop) and hands each
// page a ctx (api, live events, toasts, confirm, navigate) whose subscriptions and
// requests end when the page is left. The contract is docs/dashboard.md.

import { h, replace } from './lib.js';
import board from './board.js';
import taskPage, { runPage } from './run.js';
import approvals from './approvals.js';
import workflows from './graph.js';
import agents from './agents.js';
import costs from './costs.js';

const TOKEN_KEY = 'baton.token';
const NAV = [board, approvals, workflows, agents, costs];
const PAGES = new Map([board, taskPage, runPage, approvals, workflows, agents, costs].map((p) => [p.id, p]));
const S = {
  token: sessionStorage.getItem(TOKEN_KEY) || '',
  who: null,
  es: null,
  lastSeq: 0,
  retryMs: 500,
  retryTimer: 0,
  offlineTimer: 0,
  routed: false, // the first page shown leaves focus alone (Tab starts at the skip link)
  everOpen: false,
  dropped: false,
  listeners: new Set(), // {prefix, fn}
  resyncs: new Set(),
  pending: new Set(), // pending approval ids (the nav badge)
  page: null, // {dispose}
  els: {},
  started: false,
};

// ---- HTTP ----

function authHeaders() {
  return S.token ? { Authorization: `Bearer ${S.token}` } : {};
}

async function request(method, path, body, signal, token) {
  const headers = token !== undefined ? (token ? { Authorization: `Bearer ${token}` } : {}) : authHeaders();
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, {
    method, headers, signal, cache: 'no-store',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let json = null;
  if (text) {
    try { json = JSON.parse(text); } catch { json = null; }
  }
  if (!res.ok) {
    const e = (json && json.error) || {};
    const err = new Error(e.message || `${method} ${path}: HTTP ${res.status}`);
    err.status = res.status;
    err.code = e.code || 'http_error';
    throw err;
  }
  return json;
}

// An aborted request (the page was left) never settles, so pages need no AbortError
// handling and nothing reaches the console.
function api(method, path, body, signal) {
  return new Promise((resolve, reject) => {
    request(method, path, body, signal).then(resolve, (err) => {
      if (signal && signal.aborted) return;
      if (err.status === 401) showLogin('Your token was refused: sign in again.');
      reject(err);
    });
  });
}

window.addEventListener('unhandledrejection', (ev) => {
  if (ev.reason && ev.reason.name === 'AbortError') ev.preventDefault();
});

// ---- toasts and confirm ----

function toast(text, kind = 'info') {
  const close = h('button', { type: 'button', 'aria-label': 'Dismiss' }, '×');
  const t = h('div', { class: `toast ${kind}`, 'data-testid': 'toast', role: kind === 'error' ? 'alert' : 'status' },
    h('span', null, text), close);
  const drop = () => t.remove();
  close.addEventListener('click', drop);
  S.els.toasts.append(t);
  setTimeout(drop, kind === 'error' ? 9000 : 5000);
  while (S.els.toasts.children.length > 5) S.els.toasts.firstChild.remove();
}

function confirmDialog(text) {
  const d = S.els.confirm;
  replace(d.querySelector('p'), text);
  return new Promise((resolve) => {
    const back = document.activeElement;
    const done = () => {
      d.removeEventListener('close', done);
      resolve(d.returnValue === 'yes');
      if (back && back.isConnected) back.focus();
    };
    d.returnValue = '';
    d.addEventListener('close', done);
    d.showModal();
    d.querySelector('[data-testid=confirm-no]').focus();
  });
}

function buildConfirm() {
  const yes = h('button', { class: 'btn primary', 'data-testid': 'confirm-yes', value: 'yes' }, 'Yes');
  const no = h('button', { class: 'btn', 'data-testid': 'confirm-no', value: 'no' }, 'No');
  return h('dialog', { 'data-testid': 'confirm', 'aria-labelledby': 'confirm-title' },
    h('form', { method: 'dialog' },
      h('h2', { id: 'confirm-title' }, 'Are you sure?'), h('p', null), h('div', { class: 'buttons' }, no, yes)));
}

// ---- login ----

function buildLogin() {
  const input = h('input', { name: 'token', type: 'password', autocomplete: 'current-password', required: true, 'aria-describedby': 'login-error' });
  const error = h('p', { class: 'form-error', id: 'login-error', 'data-testid': 'login-error', role: 'alert' });
  const submit = h('button', { class: 'btn primary', type: 'submit', 'data-testid': 'login-submit' }, 'Sign in');
  const form = h('form', null,
    h('h2', null, 'Sign in to baton'),
    h('p', { class: 'muted' }, 'Paste an API token from server.tokens in baton.yaml. It is kept in this tab only.'),
    h('label', { class: 'field' }, 'Token', input), error, h('div', { class: 'buttons' }, submit));
  const d = h('dialog', { 'data-testid': 'login', 'aria-labelledby': 'login-title' }, form);
  form.querySelector('h2').id = 'login-title';
  d.addEventListener('cancel', (ev) => ev.preventDefault()); // nothing works without a token
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const tok = input.value.trim();
    if (!tok) return;
    submit.disabled = true;
    replace(error);
    try {
      const who = await request('GET', '/api/whoami', undefined, undefined, tok);
      const refused = refusal(who);
      if (refused) {
        replace(error, refused);
        input.select();
        return;
      }
      S.token = tok;
      sessionStorage.setItem(TOKEN_KEY, tok);
      input.value = '';
      d.close();
      signedIn(who);
    } catch (err) {
      replace(error, `baton did not answer: ${err.message}`);
      input.select();
    } finally {
      submit.disabled = false;
    }
  });
  return d;
}

// Why GET /api/whoami's answer cannot sign in (null when it can).
function refusal(who) {
  if (!who.authenticated) return 'That token was refused. Check it and try again.';
  if (!who.can_read) return 'That token cannot read the API (a worker token?): use one with the read scope.';
  return null;
}

function showLogin(message) {
  stopEvents();
  unmount();
  const d = S.els.login;
  replace(d.querySelector('[data-testid=login-error]'), message || '');
  if (!d.open) d.showModal();
  d.querySelector('input[name=token]').focus();
}

function logout() {
  sessionStorage.removeItem(TOKEN_KEY);
  S.token = '';
  S.who = null;
  showLogin('');
}

// ---- live events ----

function setConn(state) {
  const c = S.els.conn;
  c.dataset.state = state;
  replace(c, { live: 'Live', connecting: 'Connecting…', offline: 'Offline' }[state]);
  c.title = { live: 'Receiving live updates', connecting: 'Connecting to the live event stream', offline: 'Live updates lost: reconnecting' }[state];
}

function dispatch(ev) {
  for (const l of [...S.listeners]) {
    if (!ev.type.startsWith(l.prefix)) continue;
    try { l.fn(ev); } catch (err) { console.warn('baton: event handler failed', err); } // eslint-disable-line no-console
  }
}

function onFrame(msg) {
  let ev;
  try { ev = JSON.parse(msg.data); } catch { return; }
  if (!ev || typeof ev.seq !== 'number') return;
  if (ev.seq <= S.lastSeq) return; // replayed twice across a reconnect
  S.lastSeq = ev.seq;
  dispatch(ev);
}

function startEvents() {
  stopEvents();
  const q = new URLSearchParams();
  if (S.token) q.set('token', S.token);
  if (S.lastSeq > 0) q.set('after', String(S.lastSeq));
  // unnamed=1: every event arrives as a plain message, whatever its type.
  q.set('unnamed', '1');
  const es = new EventSource(`/api/events?${q}`);
  S.es = es;
  setConn('connecting');
  es.addEventListener('message', onFrame);
  es.addEventListener('open', () => {
    if (S.es !== es) return;
    clearTimeout(S.offlineTimer);
    S.retryMs = 500;
    setConn('live');
    const wasDropped = S.dropped;
    S.dropped = false;
    S.everOpen = true;
    if (wasDropped) resync();
    S.onOpen?.();
  });
  es.addEventListener('error', () => {
    if (S.es !== es) return;
    S.dropped = true;
    if (es.readyState === EventSource.CLOSED) {
      setConn('offline');
      es.close();
      S.es = null;
      scheduleReconnect();
    } else {
      // The browser retries by itself; say "offline" when that has not worked for 2 s.
      setConn('connecting');
      clearTimeout(S.offlineTimer);
      S.offlineTimer = setTimeout(() => {
        if (S.es === es && es.readyState !== EventSource.OPEN) setConn('offline');
      }, 2000);
    }
  });
}

function scheduleReconnect() {
  clearTimeout(S.retryTimer);
  const wait = S.retryMs;
  S.retryMs = Math.min(S.retryMs * 2, 10000);
  S.retryTimer = setTimeout(async () => {
    // A closed stream may mean the token stopped working: ask before reconnecting.
    try {
      const who = await request('GET', '/api/whoami');
      if (refusal(who)) { showLogin('Your token was refused: sign in again.'); return; }
    } catch (err) {
      if (!err.status || err.status >= 500) { scheduleReconnect(); return; }
    }
    startEvents();
  }, wait);
}

function stopEvents() {
  clearTimeout(S.retryTimer);
  clearTimeout(S.offlineTimer);
  if (S.es) S.es.close();
  S.es = null;
}

function resync() {
  loadApprovals();
  for (const fn of [...S.resyncs]) {
    try { fn(); } catch (err) { console.warn('baton: resync handler failed', err); } // eslint-disable-line no-console
  }
}

// ---- approvals badge ----

function drawBadge() {
  const n = S.pending.size;
  const b = S.els.badge;
  b.textContent = String(n);
  b.classList.toggle('zero', n === 0);
  b.setAttribute('aria-label', `${n} pending approval${n === 1 ? '' : 's'}`);
}

async function loadApprovals() {
  try {
    const r = await request('GET', '/api/approvals?status=pending');
    S.pending = new Set((r.approvals || []).map((a) => a.id));
    drawBadge();
  } catch {
    // the badge keeps its last value; the next resync tries again
  }
}

function onApproval(ev) {
  const a = ev.data && ev.data.approval;
  if (!a) return;
  if (a.status === 'pending') S.pending.add(a.id);
  else S.pending.delete(a.id);
  drawBadge();
}

// ---- shell and router ----

function buildShell() {
  const links = NAV.map((p) => h('li', null, h('a', { href: `#/${p.id}`, dataset: { page: p.id } }, p.title,
    p.id === 'approvals' ? (S.els.badge = h('span', { class: 'count zero', 'data-testid': 'approvals-count' }, '0')) : null)));
  S.els.conn = h('span', { class: 'conn', 'data-testid': 'conn', 'data-state': 'connecting', role: 'status' }, 'Connecting…');
  S.els.who = h('span', { class: 'who' });
  S.els.logout = h('button', { class: 'btn small', type: 'button', 'data-testid': 'logout', onclick: logout }, 'Log out');
  S.els.nav = h('nav', { class: 'main', 'aria-label': 'Main' }, h('ul', null, links));
  S.els.main = h('main', { id: 'main', tabindex: '-1' });
  S.els.toasts = h('div', { class: 'toasts', 'aria-live': 'polite' });
  S.els.confirm = buildConfirm();
  S.els.login = buildLogin();
  replace(document.getElementById('app'),
    h('a', { class: 'skip', href: '#main', onclick: (ev) => { ev.preventDefault(); S.els.main.focus(); } }, 'Skip to main content'),
    h('header', { class: 'top' },
      h('a', { class: 'brand', href: '#/board' }, h('img', { src: '/ui/favicon.svg', alt: '' }), 'baton'),
      S.els.nav,
      h('div', { class: 'top-right' }, S.els.conn, S.els.who, S.els.logout)),
    S.els.main, S.els.toasts, S.els.confirm, S.els.login);
}

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const parts = raw.split('/');
  const id = parts[0] || 'board';
  let arg = parts.slice(1).join('/');
  try { arg = decodeURIComponent(arg); } catch { /* keep it raw */ }
  return { id, arg };
}

function unmount() {
  if (!S.page) return;
  const p = S.page;
  S.page = null;
  p.dispose();
}

function makeCtx() {
  const ac = new AbortController();
  const mine = new Set();
  const myResyncs = new Set();
  const ctx = {
    who: S.who,
    can: { write: !!S.who.can_write, admin: !!S.who.can_admin },
    signal: ac.signal,
    api: (method, path, body) => api(method, path, body, ac.signal),
    on(prefix, fn) {
      const l = { prefix, fn };
      if (ac.signal.aborted) return () => {};
      S.listeners.add(l);
      mine.add(l);
      return () => { S.listeners.delete(l); mine.delete(l); };
    },
    onResync(fn) {
      if (ac.signal.aborted) return () => {};
      S.resyncs.add(fn);
      myResyncs.add(fn);
      return () => { S.resyncs.delete(fn); myResyncs.delete(fn); };
    },
    navigate: (hash) => { location.hash = hash; },
    toast,
    confirm: confirmDialog,
  };
  const dispose = () => {
    ac.abort();
    for (const l of mine) S.listeners.delete(l);
    for (const fn of myResyncs) S.resyncs.delete(fn);
  };
  return { ctx, dispose };
}

function notFound(el, id) {
  el.append(h('h1', { tabindex: '-1' }, 'Not found'),
    h('p', { class: 'empty' }, `There is no page “${id}”. `, h('a', { href: '#/board' }, 'Back to the board')));
}

function focusHeading(el) {
  const h1 = el.querySelector('h1');
  if (!h1) return false;
  if (!h1.hasAttribute('tabindex')) h1.setAttribute('tabindex', '-1');
  h1.focus({ preventScroll: true });
  return true;
}

function route() {
  if (!S.who) return;
  unmount();
  const { id, arg } = parseHash();
  const page = PAGES.get(id);
  for (const a of S.els.nav.querySelectorAll('a')) {
    if (a.dataset.page === id) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  document.title = `${page ? page.title : 'Not found'} · baton`;
  // The first page after loading leaves focus alone, so Tab starts at the skip link.
  const focusHeadingOf = S.routed ? focusHeading : () => true;
  S.routed = true;
  const el = h('div', { class: `page page-${id}` });
  replace(S.els.main, el);
  window.scrollTo(0, 0);
  if (!page) { notFound(el, id); focusHeadingOf(el); return; }
  const { ctx, dispose } = makeCtx();
  let cleanup = null;
  S.page = {
    dispose() {
      dispose();
      if (typeof cleanup === 'function') {
        try { cleanup(); } catch (err) { console.warn('baton: page cleanup failed', err); } // eslint-disable-line no-console
      }
    },
  };
  const mine = S.page;
  const failed = (err) => {
    if (ctx.signal.aborted) return;
    el.append(h('p', { class: 'empty error-text', role: 'alert' }, `This page could not be shown: ${err.message}`));
  };
  try {
    const r = page.mount(el, ctx, arg);
    if (r && typeof r.then === 'function') {
      const focused = focusHeadingOf(el);
      r.then((fn) => {
        if (S.page !== mine) { if (typeof fn === 'function') fn(); return; }
        cleanup = fn;
        if (!focused) focusHeadingOf(el);
      }, failed);
    } else {
      cleanup = r;
      focusHeadingOf(el);
    }
  } catch (err) {
    failed(err);
  }
}

function signedIn(who) {
  S.who = who;
  S.els.who.textContent = who.identity || (who.auth ? '' : 'open access');
  S.els.who.title = `scopes: ${(who.scopes || []).join(', ') || 'none'}`;
  S.els.logout.hidden = !who.auth;
  loadApprovals();
  // The first page mounts once the stream is open (or after 1.5 s) so its snapshot
  // cannot miss an event.
  let mounted = false;
  const go = () => {
    if (mounted) return;
    mounted = true;
    S.onOpen = null;
    route();
  };
  S.onOpen = go;
  S.lastSeq = 0;
  S.dropped = false;
  startEvents();
  setTimeout(go, 1500);
}

async function start() {
  buildShell();
  S.listeners.add({ prefix: 'approval.', fn: onApproval });
  window.addEventListener('hashchange', route);
  try {
    const who = await request('GET', '/api/whoami');
    if (!who.authenticated) showLogin(S.token ? 'Your token was refused: sign in again.' : '');
    else if (!who.can_read) showLogin(refusal(who));
    else signedIn(who);
  } catch (err) {
    replace(S.els.main, h('div', { class: 'empty error-text', role: 'alert' },
      `baton did not answer (${err.message}). Reload the page to try again.`));
    setConn('offline');
  }
}

start();
