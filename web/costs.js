// costs.js - the Cost & throughput page (#/costs): tokens and spend per day, spend per
// project and per agent, runs per hour by outcome and the success rate, from GET
// /api/stats?days=N. Charts are inline SVG drawn at the width of their panel (redrawn on
// resize); each has an accessible name and a visually hidden table of its numbers.
// Live: step.finished and run.updated events refetch, at most every 5 seconds.

import { h, svg, replace, money as money4, tokens, throttle, pct } from './lib.js';

const RANGES = [7, 14, 30];
const CHART_H = 200;
const M = { top: 12, right: 8, bottom: 26, left: 46 };

const money = (v) => (v ? money4(v) : '$0');

let uid = 0; // ids tying each chart to its caption

// A "nice" axis: [max, step] with max >= v and step one of 1, 2, 2.5, 5 x 10^k.
function niceAxis(v, ticks = 4) {
  if (!(v > 0)) return [ticks, 1];
  const raw = v / ticks;
  const p = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * p).find((s) => s >= raw);
  return [step * Math.ceil(v / step), step];
}

const shortDay = (d) => new Date(`${d}T00:00:00Z`).toLocaleDateString(undefined, { month: 'short', day: 'numeric', timeZone: 'UTC' });
const shortHour = (t) => new Date(t).toLocaleTimeString(undefined, { hour: 'numeric' });
const usd = (v) => (v >= 100 ? `$${Math.round(v)}` : v >= 1 ? `$${v.toFixed(v >= 10 ? 0 : 1)}` : v > 0 ? `$${v.toFixed(2)}` : '$0');

// The visually hidden table behind a chart.
function dataTable(caption, head, rows) {
  // In a div: a table ignores the 1px box of .sr-only and would widen the page.
  return h('div', { class: 'sr-only' }, h('table', null, h('caption', null, caption),
    h('thead', null, h('tr', null, head.map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', null, rows.map((r) => h('tr', null, r.map((c, i) => (i ? h('td', null, c) : h('th', { scope: 'row' }, c))))))));
}

function legend(series) {
  return h('ul', { class: 'co-legend', 'aria-hidden': 'true' },
    series.map((s) => h('li', null, h('span', { class: `co-sw ${s.cls}` }), s.label)));
}

// Vertical (stacked) bars over a category axis.
// cats: [{label, title, values: [n per series]}]; series: [{label, cls}]; fmt: axis text.
// line: optional {cls, label, values} drawn over the bars.
function columns(width, cats, series, fmt, line) {
  const w = Math.max(120, width);
  const iw = w - M.left - M.right;
  const ih = CHART_H - M.top - M.bottom;
  const tot = cats.map((c) => c.values.reduce((a, b) => a + b, 0));
  const top = Math.max(0, ...tot, ...(line ? line.values : []));
  const [max, step] = niceAxis(top);
  const y = (v) => M.top + ih - (v / max) * ih;
  const bw = iw / Math.max(1, cats.length);
  const g = [];
  for (let v = 0; v <= max + step / 2; v += step) {
    g.push(svg('line', { x1: M.left, x2: w - M.right, y1: y(v), y2: y(v), class: v ? 'co-grid' : 'co-axis' }),
      svg('text', { x: M.left - 6, y: y(v) + 4, 'text-anchor': 'end', class: 'co-tick' }, fmt(v)));
  }
  const every = Math.max(1, Math.ceil(cats.length / Math.max(1, Math.floor(iw / 58))));
  cats.forEach((c, i) => {
    const x = M.left + i * bw;
    let acc = 0;
    const pad = Math.min(6, bw * 0.18);
    const parts = c.values.map((v, k) => {
      const y0 = y(acc);
      acc += v;
      return v > 0 ? svg('rect', { x: x + pad, width: Math.max(1, bw - 2 * pad), y: y(acc), height: Math.max(0.5, y0 - y(acc)),
        class: series[k].cls }) : null;
    });
    g.push(svg('g', { class: 'co-col' }, svg('title', null, c.title), parts,
      svg('rect', { x, width: bw, y: M.top, height: ih, class: 'co-hit' })));
    if (i % every === 0) {
      g.push(svg('text', { x: x + bw / 2, y: CHART_H - 8, 'text-anchor': 'middle', class: 'co-tick' }, c.label));
    }
  });
  if (line) {
    const pts = line.values.map((v, i) => `${M.left + (i + 0.5) * bw},${y(v)}`);
    g.push(svg('polyline', { points: pts.join(' '), class: `co-line ${line.cls}` }));
  }
  if (top === 0) {
    g.push(svg('text', { x: M.left + iw / 2, y: M.top + ih / 2, 'text-anchor': 'middle', class: 'co-none' }, 'nothing in this range'));
  }
  return { w, g };
}

// A line with a soft area under it (spend per day).
function area(width, cats, values, cls, fmt) {
  const w = Math.max(120, width);
  const iw = w - M.left - M.right;
  const ih = CHART_H - M.top - M.bottom;
  const top = Math.max(0, ...values);
  const [max, step] = niceAxis(top);
  const y = (v) => M.top + ih - (v / max) * ih;
  const bw = iw / Math.max(1, cats.length);
  const x = (i) => M.left + (i + 0.5) * bw;
  const g = [];
  for (let v = 0; v <= max + step / 2; v += step) {
    g.push(svg('line', { x1: M.left, x2: w - M.right, y1: y(v), y2: y(v), class: v ? 'co-grid' : 'co-axis' }),
      svg('text', { x: M.left - 6, y: y(v) + 4, 'text-anchor': 'end', class: 'co-tick' }, fmt(v)));
  }
  if (values.length) {
    const pts = values.map((v, i) => `${x(i)},${y(v)}`);
    g.push(svg('path', { d: `M${x(0)},${y(0)} L${pts.join(' L')} L${x(values.length - 1)},${y(0)} Z`, class: `co-area ${cls}` }),
      svg('polyline', { points: pts.join(' '), class: `co-line ${cls}` }));
  }
  const every = Math.max(1, Math.ceil(cats.length / Math.max(1, Math.floor(iw / 58))));
  cats.forEach((c, i) => {
    g.push(svg('g', { class: 'co-col' }, svg('title', null, c.title),
      svg('circle', { cx: x(i), cy: y(values[i]), r: cats.length > 20 ? 2.5 : 3.5, class: `co-dot ${cls}` }),
      svg('rect', { x: x(i) - bw / 2, width: bw, y: M.top, height: ih, class: 'co-hit' })));
    if (i % every === 0) g.push(svg('text', { x: x(i), y: CHART_H - 8, 'text-anchor': 'middle', class: 'co-tick' }, c.label));
  });
  if (top === 0) {
    g.push(svg('text', { x: M.left + iw / 2, y: M.top + ih / 2 - 10, 'text-anchor': 'middle', class: 'co-none' }, 'no spend in this range'));
  }
  return { w, g };
}

// Horizontal bars, one per row (spend per project / agent).
function hbars(width, rows, cls) {
  const w = Math.max(160, width);
  const rh = 30;
  const lw = Math.min(150, Math.max(80, w * 0.3));
  const vw = 64;
  const H = Math.max(1, rows.length) * rh + 8;
  const max = Math.max(0, ...rows.map((r) => r.value));
  const bw = w - lw - vw - 8;
  const g = [];
  rows.forEach((r, i) => {
    const y = 4 + i * rh;
    const len = max > 0 ? Math.max(r.value > 0 ? 2 : 0, (r.value / max) * bw) : 0;
    const name = r.label.length > lw / 7 ? `${r.label.slice(0, Math.floor(lw / 7) - 1)}…` : r.label;
    g.push(svg('g', { class: 'co-col' }, svg('title', null, r.title),
      svg('text', { x: lw - 8, y: y + 19, 'text-anchor': 'end', class: `co-label${r.none ? ' co-muted' : ''}` }, name),
      svg('rect', { x: lw, y: y + 6, width: bw, height: rh - 12, rx: 3, class: 'co-track' }),
      svg('rect', { x: lw, y: y + 6, width: len, height: rh - 12, rx: 3, class: cls }),
      svg('text', { x: w - 4, y: y + 19, 'text-anchor': 'end', class: 'co-val' }, money(r.value))));
  });
  if (!rows.length) g.push(svg('text', { x: w / 2, y: 22, 'text-anchor': 'middle', class: 'co-none' }, 'no spend in this range'));
  return { w, h: H, g };
}

// One chart card: a heading naming it, the SVG (role img, named by the heading plus a
// one-line summary), a legend and the hidden table. draw(width) -> {w, h?, g}.
function chartCard(testid, title, summary, draw, table, legendEl, wide) {
  const id = `co-c${++uid}`;
  const body = h('div', { class: 'co-body' });
  const card = h('figure', { class: `panel co-card${wide ? ' wide' : ''}` },
    h('figcaption', null, h('h2', { id }, title), h('span', { class: 'co-sum' }, summary)),
    body, legendEl, table);
  card.redraw = () => {
    const width = Math.floor(body.clientWidth) || 320;
    const c = draw(width);
    const H = c.h || CHART_H;
    replace(body, svg('svg', { width: c.w, height: H, viewBox: `0 0 ${c.w} ${H}`, role: 'img',
      'aria-labelledby': id, 'aria-description': summary, class: 'co-svg', dataset: { testid } }, c.g));
  };
  return card;
}

function tile(value, label, testid, cls) {
  return h('div', { class: `ag-tile co-tile ${cls || ''}` },
    h('strong', { dataset: testid ? { testid } : undefined }, value), h('span', null, label));
}

function render(root, st, ctx) {
  const t = st.totals || {};
  const days = st.by_day || [];
  const hours = st.runs_by_hour || [];
  const n = st.days || days.length;
  const dayCats = (f) => days.map((d) => ({ label: shortDay(d.day), title: `${d.day}: ${f(d)}` }));
  const cards = [];

  const tokCats = days.map((d) => ({ label: shortDay(d.day), values: [d.tokens_in || 0, d.tokens_out || 0],
    title: `${d.day}: ${tokens(d.tokens_in || 0)} tokens in, ${tokens(d.tokens_out || 0)} out` }));
  cards.push(chartCard('chart-tokens-day', 'Tokens per day',
    `${tokens(t.tokens_in || 0)} in, ${tokens(t.tokens_out || 0)} out over ${n} days`,
    (w) => columns(w, tokCats, [{ cls: 'co-s1' }, { cls: 'co-s3' }], tokens),
    dataTable('Tokens per day', ['Day', 'Tokens in', 'Tokens out'], days.map((d) => [d.day, d.tokens_in || 0, d.tokens_out || 0])),
    legend([{ label: 'in (prompt)', cls: 'co-s1' }, { label: 'out (completion)', cls: 'co-s3' }])));

  cards.push(chartCard('chart-spend-day', 'Spend per day', `${money(t.cost_usd || 0)} over ${n} days`,
    (w) => area(w, dayCats((d) => money(d.cost_usd || 0)), days.map((d) => d.cost_usd || 0), 'co-s1', usd),
    dataTable('Spend per day (USD)', ['Day', 'Spend (USD)'], days.map((d) => [d.day, (d.cost_usd || 0).toFixed(4)])), null));

  const proj = (st.by_project || []).map((p) => ({ label: p.project === null ? '(no project)' : p.project, none: p.project === null,
    value: p.cost_usd || 0, title: `${p.project === null ? 'no project' : p.project}: ${money(p.cost_usd || 0)}, ${tokens(p.tokens_in || 0)} in, ${tokens(p.tokens_out || 0)} out, ${p.runs || 0} runs` }));
  cards.push(chartCard('chart-spend-project', 'Spend per project', `${proj.length} project${proj.length === 1 ? '' : 's'}`,
    (w) => hbars(w, proj, 'co-s1'),
    dataTable('Spend per project', ['Project', 'Spend (USD)', 'Tokens in', 'Tokens out', 'Runs'],
      (st.by_project || []).map((p) => [p.project === null ? '(no project)' : p.project, (p.cost_usd || 0).toFixed(4), p.tokens_in || 0, p.tokens_out || 0, p.runs || 0])), null));

  const ag = (st.by_agent || []).map((a) => ({ label: a.agent, value: a.cost_usd || 0,
    title: `${a.agent}: ${money(a.cost_usd || 0)}, ${a.steps || 0} steps (${a.failed_steps || 0} failed), ${tokens(a.tokens_in || 0)} in, ${tokens(a.tokens_out || 0)} out` }));
  cards.push(chartCard('chart-spend-agent', 'Spend per agent', `${ag.length} agent${ag.length === 1 ? '' : 's'}`,
    (w) => hbars(w, ag, 'co-s2'),
    dataTable('Spend per agent', ['Agent', 'Spend (USD)', 'Steps', 'Failed steps', 'Tokens in', 'Tokens out'],
      (st.by_agent || []).map((a) => [a.agent, (a.cost_usd || 0).toFixed(4), a.steps || 0, a.failed_steps || 0, a.tokens_in || 0, a.tokens_out || 0])), null));

  const started = hours.reduce((s, x) => s + (x.started || 0), 0);
  const hourCats = hours.map((x) => ({ label: shortHour(x.hour), values: [x.completed || 0, x.failed || 0, x.cancelled || 0],
    title: `${new Date(x.hour).toLocaleString()}: ${x.started || 0} started, ${x.completed || 0} completed, ${x.failed || 0} failed, ${x.cancelled || 0} cancelled` }));
  cards.push(chartCard('chart-runs-hour', 'Runs per hour (last 48 h)', `${started} started in the last 48 hours`,
    (w) => columns(w, hourCats, [{ cls: 'co-ok' }, { cls: 'co-err' }, { cls: 'co-cancel' }], (v) => String(v),
      { cls: 'co-started', values: hours.map((x) => x.started || 0) }),
    dataTable('Runs per hour', ['Hour', 'Started', 'Completed', 'Failed', 'Cancelled'],
      hours.map((x) => [x.hour, x.started || 0, x.completed || 0, x.failed || 0, x.cancelled || 0])),
    legend([{ label: 'completed', cls: 'co-ok' }, { label: 'failed', cls: 'co-err' }, { label: 'cancelled', cls: 'co-cancel' },
      { label: 'started', cls: 'co-started' }]), true));

  const rate = t.success_rate;
  const tiles = h('div', { class: 'ag-tiles' },
    tile(money(t.cost_usd || 0), `spent in ${n} days`),
    tile(tokens((t.tokens_in || 0) + (t.tokens_out || 0)), 'tokens used'),
    tile(String(t.runs || 0), `runs (${t.completed || 0} completed, ${t.failed || 0} failed)`),
    tile(pct(rate), rate === null || rate === undefined ? 'success rate (no finished runs)' : 'success rate (completed / finished)',
      'success-rate', rate === null || rate === undefined ? '' : rate >= 0.8 ? 'ok' : rate >= 0.5 ? 'warn' : 'err'));
  const quiet = !(t.runs || t.steps || t.completed || t.failed || t.cancelled);
  replace(root,
    tiles,
    quiet ? h('p', { class: 'empty co-empty' }, `Nothing ran in the last ${n} days. Charts fill in as runs finish; `,
      h('a', { href: '#/board' }, 'start a task on the board'), '.') : null,
    h('div', { class: 'co-grid' }, cards));
  cards.forEach((c) => c.redraw());
  return () => cards.forEach((c) => c.redraw());
}

export default {
  id: 'costs',
  title: 'Costs',
  nav: true,
  mount(el, ctx) {
    let days = Number(sessionStorage.getItem('baton.costs.days')) || 14;
    if (!RANGES.includes(days)) days = 14;
    const range = h('select', { dataset: { testid: 'range' }, id: 'co-range',
      onchange: () => {
        days = Number(range.value);
        sessionStorage.setItem('baton.costs.days', String(days));
        load();
      } }, RANGES.map((d) => h('option', { value: d, selected: d === days }, `last ${d} days`)));
    const root = h('div', { class: 'co-main', 'aria-live': 'off' }, h('p', { class: 'muted', role: 'status' }, 'Loading statistics…'));
    const upd = h('span', { class: 'muted co-upd', role: 'status' });
    replace(el, h('div', { class: 'co-page', dataset: { testid: 'costs' } },
      h('div', { class: 'co-head' }, h('h1', { tabindex: -1 }, 'Cost & throughput'),
        h('div', { class: 'co-tools' }, upd, h('label', { for: 'co-range', class: 'sr-only' }, 'Time range'), range)),
      root));
    let redraw = null;
    let stopped = false;
    let seq = 0;

    const load = async () => {
      const my = ++seq;
      try {
        const st = await ctx.api('GET', `/api/stats?days=${days}`);
        if (stopped || my !== seq) return;
        redraw = render(root, st || {}, ctx);
        upd.textContent = `updated ${new Date().toLocaleTimeString()}`;
      } catch (err) {
        if (stopped || err.name === 'AbortError') return;
        redraw = null;
        replace(root, h('p', { class: 'empty', role: 'alert' }, err.status === 404
          ? 'This server does not report statistics yet (GET /api/stats is missing).'
          : `Could not load statistics: ${err.message}`));
      }
    };
    const refetch = throttle(load, 5000);
    ctx.on('step.finished', refetch);
    ctx.on('run.updated', refetch);
    ctx.onResync(refetch);
    let rt = null;
    const onResize = () => {
      clearTimeout(rt);
      rt = setTimeout(() => redraw && redraw(), 120);
    };
    window.addEventListener('resize', onResize);
    load();
    return () => {
      stopped = true;
      refetch.cancel();
      clearTimeout(rt);
      window.removeEventListener('resize', onResize);
    };
  },
};
