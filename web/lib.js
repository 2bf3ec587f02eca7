// lib.js - small helpers every dashboard page shares: building DOM without innerHTML
// (text is always text, never markup: task titles and agent output come from outside),
// formatting of times, durations, money and token counts, and a throttle for live refetches.

// h('div', {class: 'card', dataset: {taskId: id}, onclick: fn}, 'text', child, [more])
// Attributes: class, dataset (object), style (object, set through CSSOM so the page's
// Content-Security-Policy needs no 'unsafe-inline'), on<event> (listener), boolean
// attributes (true/false), anything else with setAttribute. null/undefined/false
// children are skipped; arrays are flattened; strings become text nodes.
export function h(tag, attrs, ...children) {
  const el = tag.startsWith('svg:')
    ? document.createElementNS('http://www.w3.org/2000/svg', tag.slice(4))
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.setAttribute('class', v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'style') Object.assign(el.style, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

// svg('rect', {x: 1}) - an SVG element (attributes as in h()).
export function svg(tag, attrs, ...children) {
  return h('svg:' + tag, attrs, ...children);
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

// Replace everything inside el with children.
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// "3 s", "2 min 5 s", "1 h 4 min"; '' for null.
export function duration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

// "$0.0123" below a dollar, "$12.34" above; '' for null.
export function money(usd) {
  if (usd === null || usd === undefined) return '';
  return usd < 1 ? `$${usd.toFixed(4)}` : `$${usd.toFixed(2)}`;
}

// 1234 -> "1.2k", 1234567 -> "1.2M".
export function tokens(n) {
  if (n === null || n === undefined) return '';
  if (n < 1000) return String(n);
  if (n < 1e6) return `${(n / 1000).toFixed(1)}k`;
  return `${(n / 1e6).toFixed(1)}M`;
}

// A ratio (0..1) as "87.5%"; '–' for null (no data).
export function pct(x) {
  return x === null || x === undefined ? '–' : `${Math.round(x * 1000) / 10}%`;
}

// "12 s ago", "5 min ago", "3 h ago", else the local date and time.
export function ago(iso) {
  if (!iso) return '';
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return '';
  const s = Math.round((Date.now() - t) / 1000);
  if (s < 5) return 'just now';
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return new Date(t).toLocaleString();
}

// The local date and time of an ISO timestamp, for title attributes.
export function when(iso) {
  return iso ? new Date(iso).toLocaleString() : '';
}

// Milliseconds between two ISO timestamps (the second defaults to now); null if unknown.
export function between(from, to) {
  if (!from) return null;
  const a = Date.parse(from);
  const b = to ? Date.parse(to) : Date.now();
  return Number.isNaN(a) || Number.isNaN(b) ? null : Math.max(0, b - a);
}

// throttle(fn, ms): a function that runs fn at most once per ms, later rather than never
// (calls in between are folded into one); .cancel() drops a pending run (at unmount).
export function throttle(fn, ms) {
  let last = 0;
  let timer = null;
  const call = () => {
    if (timer) return;
    timer = setTimeout(() => {
      timer = null;
      last = Date.now();
      fn();
    }, Math.max(0, last + ms - Date.now()));
  };
  call.cancel = () => clearTimeout(timer);
  return call;
}
