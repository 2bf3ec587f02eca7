// graph.js - the Workflows page (#/workflows, #/workflows/<id>): a list of every workflow,
// an overview graph of all of them with their sub-workflow calls (layered top-down:
// longest-path layers, dummy points for long edges, barycentre ordering against
// crossings) and, for the selected workflow, its steps drawn in order with their
// conditions, fallbacks, approval gates, loop and links to child workflows.
// Data: GET /api/workflow/structure (everything) and GET /api/workflows/{id} (details).

import { h, svg, replace, duration } from './lib.js';

const NODE_W = 146;
const NODE_H = 46;
const GAP_X = 24;
const GAP_Y = 72;
const DUMMY_W = 16;
const PAD = 16;
const STEP_W = 292;
const LINE = 17;

// Natural order: wf2 before wf10.
const natural = (a, b) => a.localeCompare(b, undefined, { numeric: true });

function clip(s, n) {
  s = String(s || '');
  return s.length > n ? s.slice(0, n - 1) + '…' : s;
}

// The focusable parts of a graph answer Enter and Space like a click.
function activate(fn) {
  return (e) => {
    if (e.type === 'click' || e.key === 'Enter' || e.key === ' ') {
      e.preventDefault();
      fn();
    }
  };
}

// Arrow heads for the edges of one SVG (ids must be unique within the document).
function arrowDefs(id) {
  return svg('defs', null,
    svg('marker', { id, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7,
      markerHeight: 7, orient: 'auto-start-reverse', class: 'wf-arrow' },
    svg('path', { d: 'M0,0 L10,5 L0,10 z' })));
}

// ---- layered layout of the overview ----

// nodes: [{id}], edges: [{from, to}] (deduplicated). Returns {layers: [[item]], width,
// height} where an item is {id, dummy, x, y, w} and every edge gets .points.
function layout(ids, edges) {
  const out = new Map(ids.map((id) => [id, []]));
  const inc = new Map(ids.map((id) => [id, []]));
  for (const e of edges) {
    out.get(e.from).push(e);
    inc.get(e.to).push(e);
  }
  // Longest-path layering in topological order; edges closing a cycle are ignored.
  const layer = new Map();
  const state = new Map();
  const visit = (id) => {
    if (state.get(id) === 2) return layer.get(id);
    if (state.get(id) === 1) return -1;
    state.set(id, 1);
    let l = 0;
    for (const e of inc.get(id)) {
      const p = visit(e.from);
      if (p >= 0) l = Math.max(l, p + 1);
      else e.back = true;
    }
    state.set(id, 2);
    layer.set(id, l);
    return l;
  };
  ids.forEach(visit);
  const nl = Math.max(0, ...layer.values()) + 1;
  const layers = Array.from({ length: nl }, () => []);
  const item = new Map();
  for (const id of ids) {
    const it = { id, dummy: false, up: [], down: [] };
    item.set(id, it);
    layers[layer.get(id)].push(it);
  }
  // Edges spanning several layers pass through one dummy item per layer in between.
  for (const e of edges) {
    if (e.back) continue;
    let prev = item.get(e.from);
    e.chain = [prev];
    for (let l = layer.get(e.from) + 1; l < layer.get(e.to); l++) {
      const d = { id: `${e.from}>${e.to}@${l}`, dummy: true, up: [], down: [] };
      layers[l].push(d);
      prev.down.push(d);
      d.up.push(prev);
      e.chain.push(d);
      prev = d;
    }
    const to = item.get(e.to);
    prev.down.push(to);
    to.up.push(prev);
    e.chain.push(to);
  }
  // Barycentre sweeps, down then up, keeping the order with the fewest crossings.
  const pos = () => layers.forEach((L) => L.forEach((it, i) => { it.i = i; }));
  pos();
  const crossings = () => {
    let c = 0;
    for (const L of layers) {
      const segs = [];
      for (const it of L) for (const d of it.down) segs.push([it.i, d.i]);
      for (let a = 0; a < segs.length; a++) {
        for (let b = a + 1; b < segs.length; b++) {
          if ((segs[a][0] - segs[b][0]) * (segs[a][1] - segs[b][1]) < 0) c++;
        }
      }
    }
    return c;
  };
  const sortBy = (L, key) => {
    const bc = new Map(L.map((it) => {
      const ns = it[key];
      return [it, ns.length ? ns.reduce((s, n) => s + n.i, 0) / ns.length : it.i];
    }));
    L.sort((a, b) => bc.get(a) - bc.get(b) || a.i - b.i);
    L.forEach((it, i) => { it.i = i; });
  };
  let best = layers.map((L) => L.slice());
  let bestC = crossings();
  for (let round = 0; round < 6 && bestC > 0; round++) {
    for (let l = 1; l < nl; l++) sortBy(layers[l], 'up');
    for (let l = nl - 2; l >= 0; l--) sortBy(layers[l], 'down');
    const c = crossings();
    if (c < bestC) {
      bestC = c;
      best = layers.map((L) => L.slice());
    }
  }
  best.forEach((L, l) => { layers[l] = L; });
  pos();
  // Coordinates: packed and centred first, then each item pulled towards the centre of
  // its neighbours in the layer above (down pass) or below (up pass) without overlaps:
  // the mean of a left-packed and a right-packed placement keeps the order and the gaps.
  const wOf = (it) => (it.dummy ? DUMMY_W : NODE_W);
  const widths = layers.map((L) => L.reduce((s, it) => s + wOf(it), 0) + GAP_X * (L.length - 1));
  const packed = Math.max(NODE_W, ...widths);
  layers.forEach((L, l) => {
    let x = (packed - widths[l]) / 2;
    for (const it of L) {
      it.w = wOf(it);
      it.x = x;
      it.y = l * (NODE_H + GAP_Y);
      x += it.w + GAP_X;
    }
  });
  const mid = (it) => it.x + it.w / 2;
  const pull = (L, key) => {
    const want = L.map((it) => (it[key].length
      ? it[key].reduce((s, n) => s + mid(n), 0) / it[key].length - it.w / 2 : it.x));
    const a = [];
    const b = [];
    L.forEach((it, i) => { a[i] = i ? Math.max(want[i], a[i - 1] + L[i - 1].w + GAP_X) : want[i]; });
    for (let i = L.length - 1; i >= 0; i--) {
      b[i] = i < L.length - 1 ? Math.min(want[i], b[i + 1] - L[i].w - GAP_X) : want[i];
    }
    L.forEach((it, i) => { it.x = (a[i] + b[i]) / 2; });
  };
  for (let round = 0; round < 2; round++) {
    for (let l = 1; l < nl; l++) pull(layers[l], 'up');
    for (let l = nl - 2; l >= 0; l--) pull(layers[l], 'down');
  }
  const all = layers.flat();
  const minX = Math.min(0, ...all.map((it) => it.x));
  all.forEach((it) => { it.x -= minX; });
  const width = Math.max(NODE_W, ...all.map((it) => it.x + it.w));
  // Ports: a node's outgoing (incoming) edges leave (enter) spread along its bottom (top).
  const spread = (it, list, key) => {
    list.sort((a, b) => a[key].x - b[key].x);
    list.forEach((e, k) => {
      const f = it.dummy ? 0.5 : (k + 1) / (list.length + 1);
      e[key === 'next' ? 'x0' : 'x1'] = it.x + 0.25 * it.w + f * 0.5 * it.w;
    });
  };
  for (const e of edges) {
    if (e.back) continue;
    e.next = e.chain[1];
    e.prev = e.chain[e.chain.length - 2];
  }
  for (const [id, it] of item) {
    spread(it, out.get(id).filter((e) => !e.back), 'next');
    spread(it, inc.get(id).filter((e) => !e.back), 'prev');
  }
  for (const e of edges) {
    if (e.back) continue;
    const pts = [[e.x0, e.chain[0].y + NODE_H]];
    for (const d of e.chain.slice(1, -1)) pts.push([mid(d), d.y], [mid(d), d.y + NODE_H]);
    const last = e.chain[e.chain.length - 1];
    pts.push([e.x1, last.y]);
    e.points = pts;
  }
  return { item, width, height: nl * (NODE_H + GAP_Y) - GAP_Y };
}

// A smooth path through points, vertical tangents at each end.
function curve(pts) {
  let d = `M${pts[0][0]},${pts[0][1]}`;
  for (let k = 1; k < pts.length; k++) {
    const [x0, y0] = pts[k - 1];
    const [x1, y1] = pts[k];
    const m = (y1 - y0) / 2;
    d += ` C${x0},${y0 + m} ${x1},${y1 - m} ${x1},${y1}`;
  }
  return d;
}

// ---- the overview ----

function overview(st, selected, ctx) {
  const byId = new Map(st.workflows.map((w) => [w.id, w]));
  const pairs = new Map();
  for (const e of st.edges || []) {
    if (e.from === e.to) continue;
    const k = `${e.from}\n${e.to}`;
    if (!pairs.has(k)) pairs.set(k, { from: e.from, to: e.to, steps: [] });
    pairs.get(k).steps.push(e.step);
  }
  const edges = [...pairs.values()];
  for (const e of edges) {
    for (const id of [e.from, e.to]) {
      if (!byId.has(id)) byId.set(id, { id, name: 'not loaded', missing: 'unknown workflow', ghost: true });
    }
  }
  const linked = new Set(edges.flatMap((e) => [e.from, e.to]));
  const ids = [...byId.keys()].sort(natural);
  const connected = ids.filter((id) => linked.has(id));
  const alone = ids.filter((id) => !linked.has(id));
  const lay = layout(connected, edges);

  // Stand-alone workflows wrap in rows below the hierarchy, as wide as it is.
  const cols = Math.max(1, Math.min(alone.length,
    Math.floor((Math.max(lay.width, 4 * NODE_W) + GAP_X) / (NODE_W + GAP_X))));
  const top = connected.length ? lay.height + 56 : 0;
  const aloneW = cols * NODE_W + (cols - 1) * GAP_X;
  const width = Math.max(connected.length ? lay.width : 0, alone.length ? aloneW : 0);
  const off = (width - lay.width) / 2;
  alone.forEach((id, k) => {
    lay.item.set(id, { id, x: (width - aloneW) / 2 + (k % cols) * (NODE_W + GAP_X) - off,
      y: top + 24 + Math.floor(k / cols) * (NODE_H + 18) });
  });
  const rows = Math.ceil(alone.length / cols);
  const height = alone.length ? top + 24 + rows * (NODE_H + 18) - 18 : lay.height;

  const edgeEls = new Map();
  const g = svg('g', { transform: `translate(${PAD + off},${PAD})` });
  for (const e of edges) {
    if (!e.points) continue;
    const title = `${e.from} calls ${e.to} (step ${e.steps.join(', ')})`;
    const p = svg('path', { d: curve(e.points), class: 'wf-edge', 'marker-end': 'url(#wf-ov-arrow)',
      dataset: { testid: 'wf-edge', from: e.from, to: e.to } }, svg('title', null, title));
    g.append(p);
    for (const id of [e.from, e.to]) {
      if (!edgeEls.has(id)) edgeEls.set(id, []);
      edgeEls.get(id).push(p);
    }
  }
  // Edges closing a cycle (the validator refuses them; drawn anyway, dashed, if present).
  for (const e of edges) {
    if (e.points) continue;
    const a = lay.item.get(e.from);
    const b = lay.item.get(e.to);
    const p = svg('path', { class: 'wf-edge back', 'marker-end': 'url(#wf-ov-arrow)',
      d: curve([[a.x + NODE_W, a.y + NODE_H / 2], [b.x + NODE_W, b.y + NODE_H / 2]]),
      dataset: { testid: 'wf-edge', from: e.from, to: e.to } });
    g.append(p);
  }
  if (connected.length && alone.length) {
    g.append(svg('text', { x: -off, y: top + 8, class: 'wf-caption' },
      'Workflows that call no other and are called by none'));
  }
  const light = (id, on) => (edgeEls.get(id) || []).forEach((p) => p.classList.toggle('hl', on));
  for (const id of ids) {
    const w = byId.get(id);
    const it = lay.item.get(id);
    const go = () => ctx.navigate(`#/workflows/${encodeURIComponent(id)}`);
    const calls = edges.filter((e) => e.from === id).length;
    const called = edges.filter((e) => e.to === id).length;
    const label = `${id}: ${w.name || ''}${w.available === false ? ' (unavailable)' : ''}` +
      `, calls ${calls}, called by ${called}`;
    const cls = ['wf-node', id === selected ? 'selected' : '', w.available === false ? 'unavail' : '',
      w.ghost ? 'ghost' : ''].filter(Boolean).join(' ');
    const node = svg('g', {
      class: cls, tabindex: 0, role: 'link', 'aria-label': label,
      'aria-current': id === selected ? 'page' : null,
      transform: `translate(${it.x},${it.y})`,
      dataset: { testid: 'wf-node', workflowId: id },
      onclick: activate(go), onkeydown: activate(go),
      onmouseenter: () => light(id, true), onmouseleave: () => light(id, false),
      onfocus: () => light(id, true), onblur: () => light(id, false),
    },
    svg('title', null, `${id} · ${w.name || ''}${w.description ? '\n' + w.description : ''}` +
      (w.missing ? `\nmissing: ${w.missing}` : '')),
    svg('rect', { width: NODE_W, height: NODE_H, rx: 8 }),
    svg('text', { x: 12, y: 19, class: 'wf-id' }, clip(id, 15),
      w.type && id.length < 10 ? svg('tspan', { class: 'wf-type', dx: 6 }, w.type) : null),
    svg('text', { x: 12, y: 36, class: 'wf-name' }, clip(w.name, 21)),
    w.available === false ? svg('circle', { cx: NODE_W - 12, cy: 12, r: 4, class: 'wf-warn' }) : null);
    g.append(node);
  }
  const W = width + 2 * PAD;
  const H = height + 2 * PAD;
  return svg('svg', {
    class: 'wf-svg', width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'group',
    'aria-label': `Workflow overview: ${ids.length} workflows, ${edges.length} sub-workflow calls`,
    dataset: { testid: 'wf-overview' },
  }, arrowDefs('wf-ov-arrow'), g);
}

// ---- the selected workflow's steps ----

const KIND_LABEL = {
  agent: 'agent', 'shell-command': 'shell', 'git-operation': 'git',
  'execute-workflow': 'workflow', approval: 'approval', http: 'http', tracker: 'tracker',
};

// The lines of a step node: [{text, cls}]
function stepLines(s, byId) {
  const lines = [];
  const kind = s.action || 'agent';
  if (kind === 'agent') {
    const who = [s.agent || (s.persona ? `persona ${s.persona}` : 'any agent'),
      s.role ? `role ${s.role}` : ''].filter(Boolean).join(' · ');
    lines.push({ text: who, cls: 'wf-l' });
    if (s.fallback && s.fallback.length) {
      lines.push({ text: `fallback → ${s.fallback.join(' → ')}`, cls: 'wf-l fb' });
    }
  } else if (kind === 'shell-command') {
    lines.push({ text: `$ ${(s.inputs && s.inputs.command) || ''}`, cls: 'wf-l mono' });
  } else if (kind === 'git-operation') {
    lines.push({ text: `git ${(s.inputs && s.inputs.operation) || ''}`, cls: 'wf-l mono' });
  } else if (kind === 'http') {
    lines.push({ text: `${(s.inputs && s.inputs.method) || 'GET'} ${(s.inputs && s.inputs.url) || ''}`,
      cls: 'wf-l mono' });
  } else if (kind === 'approval') {
    lines.push({ text: 'waits for a person to approve', cls: 'wf-l gate' });
  }
  if (s.when) lines.push({ text: `when ${s.when}`, cls: 'wf-l when' });
  const flags = [];
  if (s.review) flags.push('review');
  if (s.retries) flags.push(`${s.retries} retries`);
  if (s.timeout_ms) flags.push(`timeout ${duration(s.timeout_ms)}`);
  if (s.continue_on_error) flags.push('continues on error');
  if (s.locks && s.locks.length) flags.push(`locks ${s.locks.join(', ')}`);
  if (flags.length) lines.push({ text: flags.join(' · '), cls: 'wf-l flags' });
  if (kind === 'execute-workflow') {
    const child = byId.get(s.workflow);
    lines.push({ link: s.workflow, text: `→ ${s.workflow}${child && child.name ? ' · ' + child.name : ''}` });
  }
  return lines;
}

function stepGraph(w, byId, onStep, ctx) {
  const steps = w.steps || [];
  const loop = (w.max_iterations || 1) > 1;
  const left = loop ? 44 : 8;
  const width = left + STEP_W + 12;
  const g = svg('g', { transform: `translate(${PAD},${PAD})` });
  const cx = left + STEP_W / 2;
  let y = 0;
  const pill = (text, cls) => {
    g.append(svg('g', { class: `wf-term ${cls}`, transform: `translate(${cx - 40},${y})` },
      svg('rect', { width: 80, height: 24, rx: 12 }),
      svg('text', { x: 40, y: 16, 'text-anchor': 'middle' }, text)));
    y += 24;
  };
  const arrow = (cls) => {
    g.append(svg('path', { d: `M${cx},${y} L${cx},${y + 26}`, class: `wf-edge ${cls || ''}`,
      'marker-end': 'url(#wf-step-arrow)' }));
    y += 28;
  };
  pill('start', 'start');
  let firstY = 0;
  let lastBottom = 0;
  steps.forEach((s, k) => {
    arrow(s.when ? 'cond' : '');
    if (k === 0) firstY = y;
    const kind = s.action || 'agent';
    const lines = stepLines(s, byId);
    const title = s.name && s.name !== s.id ? s.name : '';
    const y0 = title ? 55 : 38;
    const hgt = y0 - 13 + lines.length * LINE;
    const desc = `Step ${k + 1} of ${steps.length}: ${s.id}${title ? ' (' + title + ')' : ''}, ` +
      `${KIND_LABEL[kind] || kind}` + lines.filter((l) => !l.link).map((l) => ', ' + l.text).join('');
    const box = svg('g', {
      class: 'wf-step-box', tabindex: 0, role: 'button', 'aria-label': desc,
      onclick: activate(() => onStep(s, box)), onkeydown: activate(() => onStep(s, box)),
    },
    svg('rect', { width: STEP_W, height: hgt, rx: kind === 'approval' ? 14 : 8 }),
    svg('rect', { width: 5, height: hgt, rx: 2, class: 'wf-stripe' }),
    svg('text', { x: 16, y: 20, class: 'wf-step-id' }, clip(s.id, 26)),
    svg('text', { x: STEP_W - 12, y: 20, class: 'wf-kind', 'text-anchor': 'end' }, KIND_LABEL[kind] || kind),
    title ? svg('text', { x: 16, y: 37, class: 'wf-name' }, clip(title, 40)) : null,
    lines.filter((l) => !l.link).map((l, i) => svg('text', { x: 16, y: y0 + i * LINE, class: l.cls },
      clip(l.text, 44))));
    const link = lines.find((l) => l.link);
    const node = svg('g', {
      class: `wf-step k-${kind}${s.when ? ' cond' : ''}`, transform: `translate(${left},${y})`,
      dataset: { testid: 'step-node', step: s.id, kind },
    }, svg('title', null, `${s.id}${title ? ' · ' + title : ''}`), box,
    link ? svg('a', {
      href: `#/workflows/${encodeURIComponent(link.link)}`, class: 'wf-sublink',
      'aria-label': `Open sub-workflow ${link.text.slice(2)}`,
      dataset: { testid: 'subworkflow-link', target: link.link },
      onclick: (e) => { e.preventDefault(); ctx.navigate(`#/workflows/${encodeURIComponent(link.link)}`); },
    }, svg('text', { x: 16, y: y0 + (lines.length - 1) * LINE }, clip(link.text, 42))) : null);
    g.append(node);
    y += hgt;
    lastBottom = y;
  });
  arrow('');
  pill('end', 'end');
  if (loop && steps.length) {
    const x = left - 26;
    g.append(svg('path', {
      class: 'wf-edge loop', 'marker-end': 'url(#wf-step-arrow)',
      d: `M${left},${lastBottom - 14} H${x + 8} Q${x},${lastBottom - 14} ${x},${lastBottom - 22} ` +
        `V${firstY + 22} Q${x},${firstY + 14} ${x + 8},${firstY + 14} H${left}`,
    }, svg('title', null, `repeats up to ${w.max_iterations} iterations`)));
    g.append(svg('text', { class: 'wf-loop-label', transform: `translate(${x - 6},${(firstY + lastBottom) / 2}) rotate(-90)`,
      'text-anchor': 'middle' }, `↻ up to ${w.max_iterations} iterations`));
  }
  const W = width + 2 * PAD;
  const H = y + 2 * PAD;
  return svg('svg', {
    class: 'wf-svg', width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'group',
    'aria-label': `Steps of workflow ${w.id}: ${steps.length} steps` +
      (loop ? `, repeated up to ${w.max_iterations} iterations` : ''),
    dataset: { testid: 'workflow-graph', workflowId: w.id },
  }, arrowDefs('wf-step-arrow'), g);
}

// ---- details ----

function kv(label, value) {
  if (value === null || value === undefined || value === '') return null;
  return [h('dt', null, label), h('dd', null, value)];
}

function params(title, list, out) {
  if (!list || !list.length) return null;
  return h('div', { class: 'wf-params' }, h('h3', null, title),
    h('table', { class: 'wf-table' },
      h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'name'),
        h('th', { scope: 'col' }, out ? 'value' : 'type'), out ? null : h('th', { scope: 'col' }, 'default'))),
      h('tbody', null, list.map((p) => h('tr', null,
        h('td', null, h('code', null, p.name), p.required ? h('span', { class: 'wf-req', title: 'required' }, ' *') : null),
        out ? h('td', null, h('code', null, p.value || ''))
          : h('td', null, p.type || 'string', p.values ? h('span', { class: 'muted' }, ` (${p.values.join(', ')})`) : null),
        out ? null : h('td', null, p.default === null || p.default === undefined ? '' : h('code', null, JSON.stringify(p.default))))))));
}

function details(w) {
  const stop = w.review_step
    ? `after an iteration whose review step '${w.review_step}' lists at most ${w.max_suggestions} suggestions`
    : null;
  return h('div', { class: 'wf-details' },
    w.description ? h('p', { class: 'wf-desc' }, w.description) : null,
    w.available === false
      ? h('p', { class: 'wf-missing', role: 'note' }, 'Cannot run here: ', w.missing || 'agents missing')
      : null,
    h('dl', { class: 'wf-kv' },
      kv('version', w.version), kv('type', w.type),
      kv('iterations', (w.max_iterations || 1) > 1 ? `up to ${w.max_iterations}` : '1'),
      kv('stops', stop), kv('offline variant', w.offline),
      kv('agents', w.agents && w.agents.length ? w.agents.join(', ') : null),
      kv('source', w.source)),
    params('Inputs', w.inputs, false), params('Outputs', w.outputs, true));
}

function stepDetails(s) {
  return h('div', { class: 'wf-stepinfo' },
    h('h3', null, `Step ${s.id}`, s.name && s.name !== s.id ? h('span', { class: 'muted' }, ` · ${s.name}`) : null),
    h('dl', { class: 'wf-kv' },
      kv('action', s.action), kv('agent', s.agent), kv('persona', s.persona), kv('role', s.role),
      kv('fallback', s.fallback && s.fallback.length ? s.fallback.join(' → ') : null),
      kv('sub-workflow', s.workflow), kv('when', s.when),
      kv('timeout', s.timeout_ms ? duration(s.timeout_ms) : null),
      kv('retries', s.retries || null), kv('on error', s.continue_on_error ? 'continue' : null)),
    s.inputs && Object.keys(s.inputs).length
      ? [h('h4', null, 'Inputs'), h('pre', { class: 'wf-pre' }, JSON.stringify(s.inputs, null, 2))] : null,
    s.prompt ? [h('h4', null, 'Prompt'), h('pre', { class: 'wf-pre' }, s.prompt)] : null);
}

// Drag with the mouse to pan a scrolling graph panel (touch scrolls natively).
function pannable(el) {
  let drag = null;
  el.addEventListener('pointerdown', (e) => {
    if (e.pointerType !== 'mouse' || e.button !== 0 || e.target.closest('a,[tabindex]')) return;
    drag = { x: e.clientX, y: e.clientY, l: el.scrollLeft, t: el.scrollTop };
    el.classList.add('panning');
  });
  el.addEventListener('pointermove', (e) => {
    if (!drag) return;
    el.scrollLeft = drag.l - (e.clientX - drag.x);
    el.scrollTop = drag.t - (e.clientY - drag.y);
  });
  const end = () => { drag = null; el.classList.remove('panning'); };
  el.addEventListener('pointerup', end);
  el.addEventListener('pointerleave', end);
  return el;
}

export default {
  id: 'workflows',
  title: 'Workflows',
  nav: true,
  mount(el, ctx, arg) {
    let want = arg ? arg.split('/')[0] : '';
    try { want = decodeURIComponent(want); } catch { /* the shell decoded it already */ }
    const root = h('div', { class: 'wf-page', dataset: { testid: 'workflows' } });
    const status = h('p', { class: 'muted', role: 'status' }, 'Loading workflows…');
    replace(el, h('h1', { tabindex: -1 }, 'Workflows'), root);
    root.append(status);

    const render = (st, sel) => {
      const byId = new Map(st.workflows.map((w) => [w.id, w]));
      const list = h('nav', { class: 'wf-list panel', 'aria-label': 'Workflows' },
        h('h2', null, 'All workflows ', h('span', { class: 'badge' }, st.workflows.length)),
        h('ul', null, st.workflows.slice().sort((a, b) => natural(a.id, b.id)).map((w) => h('li', null,
          h('a', {
            href: `#/workflows/${encodeURIComponent(w.id)}`, class: w.id === (sel && sel.id) ? 'active' : null,
            'aria-current': w.id === (sel && sel.id) ? 'page' : null,
            dataset: { testid: 'wf-item', workflowId: w.id },
          }, h('span', { class: 'wf-item-id' }, w.id), h('span', { class: 'wf-item-name' }, w.name || ''),
          w.available === false ? h('span', { class: 'wf-unavail', title: `unavailable: ${w.missing || ''}` },
            h('span', { class: 'sr-only' }, '(unavailable)')) : null)))));
      const main = h('div', { class: 'wf-main' });
      if (sel) {
        const info = h('div', { class: 'wf-stepinfo-slot', 'aria-live': 'polite' },
          h('p', { class: 'muted' }, 'Select a step to see its prompt and inputs.'));
        let pressed = null;
        const onStep = (s, box) => {
          if (pressed) pressed.setAttribute('aria-pressed', 'false');
          pressed = box;
          box.setAttribute('aria-pressed', 'true');
          replace(info, stepDetails(s));
        };
        main.append(h('section', { class: 'panel wf-selected', 'aria-labelledby': 'wf-sel-h' },
          h('h2', { id: 'wf-sel-h' }, h('code', null, sel.id), ' ', sel.name || ''),
          h('div', { class: 'wf-sel-body' },
            pannable(h('div', { class: 'wf-scroll wf-steps-scroll' }, stepGraph(sel, byId, onStep, ctx))),
            h('div', { class: 'wf-side' }, details(sel), info))));
      }
      main.append(h('section', { class: 'panel wf-ov', 'aria-labelledby': 'wf-ov-h' },
        h('h2', { id: 'wf-ov-h' }, 'Sub-workflow calls'),
        h('p', { class: 'muted wf-hint' }, sel ? '' : 'Select a workflow to see its steps. ',
          'An arrow points from a workflow to the sub-workflow one of its steps runs.'),
        pannable(h('div', { class: 'wf-scroll' }, overview(st, sel && sel.id, ctx)))));
      replace(root, h('div', { class: 'wf-layout' }, list, main));
      // Bring the selected workflow into view inside the scrolling overview.
      const node = sel && main.querySelector(`.wf-ov [data-workflow-id="${CSS.escape(sel.id)}"]`);
      if (node) {
        const box = node.closest('.wf-scroll');
        const r = node.getBoundingClientRect();
        const b = box.getBoundingClientRect();
        box.scrollLeft += r.left - b.left - (b.width - r.width) / 2;
        box.scrollTop += r.top - b.top - (b.height - r.height) / 2;
      }
    };

    (async () => {
      try {
        const st = await ctx.api('GET', '/api/workflow/structure');
        st.workflows = st.workflows || [];
        let sel = null;
        if (want) {
          try {
            sel = await ctx.api('GET', `/api/workflows/${encodeURIComponent(want)}`);
          } catch (err) {
            if (err.name === 'AbortError') return;
            if (err.status !== 404) throw err;
            render(st, null);
            root.prepend(h('p', { class: 'wf-missing', role: 'alert' }, `No workflow "${want}". `,
              'Pick one from the list.'));
            return;
          }
        }
        render(st, sel);
      } catch (err) {
        if (err.name === 'AbortError' || (ctx.signal && ctx.signal.aborted)) return;
        replace(root, h('p', { class: 'empty', role: 'alert' }, `Could not load the workflows: ${err.message}`));
      }
    })();
  },
};
