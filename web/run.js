// run.js - the run view: #/task/<id> shows the task's newest run (a selector picks older
// ones) and follows new runs live; #/run/<id> shows one run. A timeline of step
// attempts (agent, role, attempt, iteration, status, duration, tokens, cost; an agent that
// failed and handed its step to a fallback keeps its own failed item), callouts
// for fallbacks, circuit breakers and pending approval gates, the agent's output as it
// streams (bounded, auto-scrolled only while the reader is at the bottom), and the
// final output and pull request once the run has ended.

import { h, replace, duration, money, tokens, ago, when, between } from './lib.js';
import { decisionControls, contextText } from './approvals.js';

const OUTPUT_MAX = 200 * 1024; // characters of output kept in the page
const ENDED = new Set(['completed', 'failed', 'cancelled']);

function statusEl(testid, status) {
  return h('span', { class: `status st-${status}`, 'data-testid': testid }, status);
}

function setStatus(el, status) {
  el.className = `status st-${status}`;
  el.textContent = status;
}

function view(el, ctx, taskId, runId) {
  const S = {
    task: null, runs: [], run: null, following: !runId, outSeq: 0,
    steps: new Map(), // step id -> {step, li}
    handed: new Set(), // seqs of step.fallback events already drawn
    streamed: new Set(), // step ids whose output is shown (streamed or stored)
    stored: new Set(), // step ids whose stored output is shown
    lastOutStep: null, outLen: 0, loadToken: 0, queue: null,
  };
  const title = h('h1', null, 'Task');
  const actions = h('div', { class: 'actions' });
  const taskStatus = statusEl('task-status', '…');
  const meta = h('div', { class: 'run-head' });
  const callouts = h('div', { class: 'callouts' });
  const body = h('div', { class: 'run-body' });
  const root = h('div', { 'data-testid': 'run-view', 'aria-busy': 'true' },
    h('div', { class: 'page-head' }, title, actions), meta, callouts, body);
  el.append(root);

  // ---- task header ----
  function drawActions() {
    const t = S.task;
    if (!t || !ctx.can.write) { replace(actions); return; }
    const b = [];
    if (t.status === 'failed' || t.status === 'cancelled') b.push(h('button', { class: 'btn', type: 'button', 'data-testid': 'retry', onclick: () => act('retry') }, 'Retry'));
    if (['draft', 'pending', 'in_progress'].includes(t.status)) b.push(h('button', { class: 'btn danger', type: 'button', 'data-testid': 'cancel', onclick: () => act('cancel') }, 'Cancel'));
    replace(actions, b);
  }
  async function act(what) {
    if (what === 'cancel' && !(await ctx.confirm(`Cancel “${S.task.title}”? A running agent is stopped.`))) return;
    try {
      const t = await ctx.api('POST', `/api/tasks/${taskId}/${what}`, {});
      setTask(t);
      ctx.toast(what === 'cancel' ? 'Task cancelled.' : 'Task queued again: a new run starts soon.', 'ok');
    } catch (err) {
      ctx.toast(err.message, 'error');
    }
  }
  function setTask(t) {
    if (!t || (S.task && S.task.updated_at > t.updated_at)) return;
    S.task = t;
    replace(title, t.title || t.id);
    document.title = `${t.title || 'Task'} · baton`;
    setStatus(taskStatus, t.status);
    drawActions();
    drawMeta();
  }

  // ---- run header ----
  const runStatus = statusEl('run-status', 'none');
  const iteration = h('span', { 'data-testid': 'iteration' }, '0');
  const iterMax = h('span');
  const figures = h('span', { class: 'figures' });
  let select = null;
  function drawMeta() {
    const t = S.task;
    const r = S.run;
    const parts = [h('span', null, 'Task ', taskStatus)];
    if (r) {
      parts.push(h('span', null, 'Run ', runStatus));
      parts.push(h('span', null, 'Iteration ', iteration, iterMax));
      parts.push(h('span', { class: 'badge', title: 'Workflow' }, r.workflow));
      parts.push(figures);
      drawFigures();
    }
    if (t) {
      if (t.project) parts.push(h('span', { class: 'badge project' }, t.project));
      parts.push(h('span', { title: 'Attempts' }, `${t.attempts}/${t.max_attempts} attempts`));
      if (t.identifier && t.identifier !== t.id) parts.push(h('span', null, t.identifier));
    }
    select = null;
    if (S.runs.length > 1) {
      select = h('select', { 'data-testid': 'run-select', 'aria-label': 'Run' },
        S.runs.map((x, i) => h('option', { value: x.id, selected: r && x.id === r.id },
          `Run ${S.runs.length - i} · ${x.status} · ${ago(x.created_at)}`)));
      select.addEventListener('change', () => {
        S.following = select.value === S.runs[0].id;
        loadRun(select.value);
      });
      parts.push(h('label', { class: 'muted' }, 'Run ', select));
    }
    const hadFocus = meta.contains(document.activeElement);
    replace(meta, parts);
    if (hadFocus && select) select.focus();
  }
  function drawFigures() {
    const r = S.run;
    if (!r) return;
    const ms = between(r.created_at, r.finished_at);
    replace(figures,
      h('span', { title: 'Tokens in / out' }, `${tokens(r.tokens_in)} in · ${tokens(r.tokens_out)} out`), ' · ',
      h('span', { title: 'Cost' }, money(r.cost_usd) || '$0'), ' · ',
      h('span', { title: when(r.created_at) }, ENDED.has(r.status) ? `took ${duration(ms)}` : `started ${ago(r.created_at)}`));
  }
  function setRun(r) {
    if (!r) return;
    S.run = r;
    setStatus(runStatus, r.status);
    iteration.textContent = String(r.iteration || 0);
    const max = r.state && r.state.max_iterations;
    iterMax.textContent = max ? ` of ${max}` : '';
    const i = S.runs.findIndex((x) => x.id === r.id);
    if (i >= 0) S.runs[i] = r;
    drawFigures();
    if (select) {
      const o = [...select.options].find((x) => x.value === r.id);
      if (o) o.textContent = `Run ${S.runs.length - i} · ${r.status} · ${ago(r.created_at)}`;
    }
  }

  // ---- body: timeline, output, result ----
  let timeline;
  let output;
  let result;
  function drawBody() {
    timeline = h('ol', { class: 'timeline', 'data-testid': 'timeline', 'aria-label': 'Steps' });
    output = h('pre', { class: 'output', 'data-testid': 'output', tabindex: '0', 'aria-label': 'Agent output' });
    result = h('section', { class: 'panel', hidden: true, 'aria-label': 'Result' });
    replace(body, h('div', { class: 'run-layout' },
      h('section', { class: 'panel', 'aria-label': 'Steps' }, h('h2', null, 'Steps'), timeline),
      h('div', { class: 'stack' },
        h('section', { class: 'panel', 'aria-label': 'Output' }, h('h2', null, 'Output'), output),
        result)));
    S.steps.clear();
    S.handed.clear();
    S.streamed.clear();
    S.stored.clear();
    S.placeholder = null;
    S.lastOutStep = null;
    S.lastOutAgent = null;
    S.outLen = 0;
  }
  function waiting() {
    replace(body, h('p', { class: 'empty', 'data-testid': 'run-waiting' },
      S.task && ENDED.has(S.task.status) ? 'This task ended without a run.' : 'Waiting to start: the run appears here as soon as the executor picks the task up.'));
    setStatus(runStatus, 'none');
  }

  function stepLi(s) {
    const ms = between(s.started_at, s.finished_at);
    const who = [s.agent, s.role].filter(Boolean).join(' · ');
    return h('li', {
      'data-testid': 'step', 'data-step-key': s.step_key, 'data-status': s.status, 'data-step-id': s.id,
      'data-fallback-from': s.fallback_from || null,
    },
    h('div', { class: 'step-name' }, s.step_key, who ? h('span', { class: 'badge' }, who) : null,
      h('span', { class: `status st-${s.status}` }, s.status)),
    h('div', { class: 'step-sub' },
      h('span', null, `iteration ${s.iteration}`), h('span', null, `attempt ${s.attempt}`),
      h('span', { class: 'dur', 'data-start': s.finished_at ? null : s.started_at, title: when(s.started_at) }, duration(ms)),
      s.tokens_in || s.tokens_out ? h('span', { title: 'Tokens in / out' }, `${tokens(s.tokens_in)} / ${tokens(s.tokens_out)} tok`) : null,
      s.cost_usd ? h('span', null, money(s.cost_usd)) : null),
    s.fallback_from ? h('div', { class: 'step-sub' }, `fallback from ${s.fallback_from}`) : null,
    s.error ? h('div', { class: 'step-err' }, s.error) : null);
  }
  function upsertStep(s) {
    if (!timeline || !S.run || s.run_id !== S.run.id) return;
    const old = S.steps.get(s.id);
    // After a hand-over seen live the row shows the fallback agent's attempt, from then on.
    if (old && old.step.handedAt) {
      s = { ...s, started_at: old.step.handedAt, handedAt: old.step.handedAt };
      if (!s.fallback_from) s = { ...s, agent: old.step.agent, fallback_from: old.step.fallback_from };
    }
    const li = stepLi(s);
    if (old) old.li.replaceWith(li);
    else timeline.append(li);
    S.steps.set(s.id, { step: s, li });
  }

  // A hand-over (step.fallback) keeps the failed agent's attempt in the timeline as its own
  // item; the step's row goes on as the fallback agent's attempt. at: when it failed (null
  // when unknown: a stored step only names the primary it replaced).
  function failedAttempt(s, agent, at, reason) {
    const primary = s.fallback_from || s.agent;
    const li = stepLi({
      ...s, id: null, agent, status: 'failed', finished_at: at || s.started_at, error: reason || null,
      fallback_from: agent === primary ? null : primary, tokens_in: 0, tokens_out: 0, cost_usd: 0,
    });
    if (!at) li.querySelector('.dur').remove();
    return li;
  }
  function handOver(ev) {
    const d = ev.data || {};
    if (S.handed.has(ev.seq)) return;
    S.handed.add(ev.seq);
    fallbackCallout(d.step, d.from, d.to, d.reason);
    const e = [...S.steps.values()].reverse().find((x) => x.step.step_key === d.step && x.step.status === 'running');
    if (!e || e.step.agent !== d.from) return;
    e.li.before(failedAttempt(e.step, d.from, ev.ts, d.reason));
    const primary = e.step.fallback_from || e.step.agent;
    const s = { ...e.step, agent: d.to, fallback_from: primary, started_at: ev.ts, handedAt: ev.ts };
    const li = stepLi(s);
    e.li.replaceWith(li);
    S.steps.set(s.id, { step: s, li });
  }

  // Output: text nodes appended, the oldest dropped past OUTPUT_MAX.
  function appendOut(text, cls) {
    if (!output || !text) return;
    if (S.placeholder) { S.placeholder.remove(); S.placeholder = null; }
    const atBottom = output.scrollTop + output.clientHeight >= output.scrollHeight - 24;
    output.append(cls ? h('span', { class: cls }, text) : document.createTextNode(text));
    S.outLen += text.length;
    while (S.outLen > OUTPUT_MAX && output.firstChild) {
      const first = output.firstChild;
      const over = S.outLen - OUTPUT_MAX;
      const len = first.textContent.length;
      if (len <= over || first.nodeType !== Node.TEXT_NODE) { S.outLen -= len; first.remove(); } else { first.textContent = first.textContent.slice(over); S.outLen -= over; }
    }
    if (atBottom) output.scrollTop = output.scrollHeight;
  }
  function separator(stepKey, agent, iter) {
    const label = [stepKey, agent].filter(Boolean).join(' · ');
    appendOut(`${S.outLen ? '\n' : ''}── ${label}${iter > 1 ? ` (iteration ${iter})` : ''} ──\n`, 'sep');
  }
  function onOutput(ev) {
    const d = ev.data || {};
    if (ev.seq <= S.outSeq || S.stored.has(d.step_id)) return; // already shown
    if (d.step_id !== S.lastOutStep || (d.agent && d.agent !== S.lastOutAgent)) {
      separator(d.step, d.agent, d.iteration);
      S.lastOutStep = d.step_id;
      S.lastOutAgent = d.agent;
    }
    S.streamed.add(d.step_id);
    appendOut(d.text || '');
  }
  function storedOutput(s) {
    if (S.streamed.has(s.id) || !s.output) return;
    S.streamed.add(s.id);
    S.stored.add(s.id);
    separator(s.step_key, s.agent, s.iteration);
    S.lastOutStep = s.id;
    S.lastOutAgent = s.agent;
    appendOut(s.output.endsWith('\n') ? s.output : `${s.output}\n`);
  }

  function drawResult(res) {
    const r = S.run;
    if (!result || !r || !ENDED.has(r.status)) { if (result) result.hidden = true; return; }
    const final = (res && res.final_output) || r.output || '';
    const pr = res && res.pr_url;
    const err = (res && res.error) || r.error;
    replace(result,
      h('h2', null, r.status === 'completed' ? 'Result' : `Run ${r.status}`),
      err ? h('p', { class: 'error-text' }, err) : null,
      pr ? h('p', null, 'Pull request: ', h('a', { href: pr, 'data-testid': 'pr-link', target: '_blank', rel: 'noopener noreferrer' }, pr)) : null,
      h('pre', { class: 'final', 'data-testid': 'final-output' }, final || '(no output)'),
      res && res.stop_reason ? h('p', { class: 'muted' }, `Stopped: ${res.stop_reason.replace(/_/g, ' ')}`) : null);
    result.hidden = false;
  }

  // ---- callouts ----
  const approvalCallouts = new Map();
  function callout(testid, kind, ...children) {
    const c = h('div', { class: `callout ${kind}`, 'data-testid': testid, role: 'status' }, children);
    callouts.append(c);
    return c;
  }
  function fallbackCallout(step, from, to, reason) {
    const key = `${step}\n${from}\n${to}`;
    if ([...callouts.children].some((c) => c.dataset.key === key)) return;
    callout('callout-fallback', 'warn', h('strong', null, `Fallback on ${step}`),
      h('span', null, `${from} → ${to}${reason ? `: ${reason}` : ''}`)).dataset.key = key;
  }
  function breakerCallout(ev) {
    const d = ev.data || {};
    const used = [...S.steps.values()].some((x) => x.step.agent === d.agent || x.step.fallback_from === d.agent);
    if ((ev.run_id && S.run && ev.run_id === S.run.id) || (!ev.run_id && used)) {
      callout('callout-breaker', d.to === 'closed' ? '' : 'err', h('strong', null, `Circuit breaker of ${d.agent}: ${String(d.to).replace('_', '-')}`),
        h('span', null, d.reason || ''));
    }
  }
  function approvalCallout(a) {
    if (a.status !== 'pending') {
      const c = approvalCallouts.get(a.id);
      if (c) { c.remove(); approvalCallouts.delete(a.id); }
      return;
    }
    if (approvalCallouts.has(a.id)) return;
    const text = contextText(a.context);
    const c = callout('callout-approval', 'approval',
      h('strong', null, `Waiting for approval at ${a.step_key}`),
      h('span', null, a.prompt || 'Approve this step?'),
      text ? h('details', null, h('summary', { class: 'muted' }, 'Context'), h('pre', { class: 'final' }, text)) : null,
      h('a', { href: '#/approvals' }, 'Open the approvals inbox'),
      decisionControls(ctx, a, (d) => approvalCallout({ ...a, ...d, status: d.status || 'approved' })));
    c.dataset.approvalId = a.id;
    approvalCallouts.set(a.id, c);
  }

  // ---- loading ----
  // Live step and output events wait in S.queue while a snapshot loads.
  function live(fn) {
    if (S.queue) S.queue.push(fn);
    else fn();
  }
  async function loadRun(id) {
    const token = ++S.loadToken;
    S.queue = [];
    try {
      await snapshot(id, token);
    } finally {
      if (token === S.loadToken) {
        const q = S.queue;
        S.queue = null;
        for (const fn of q) fn();
      }
    }
  }
  async function snapshot(id, token) {
    const r = await ctx.api('GET', `/api/runs/${id}`);
    if (token !== S.loadToken) return;
    replace(callouts);
    approvalCallouts.clear();
    drawBody();
    setRun(r.run);
    drawMeta();
    for (const s of r.steps || []) {
      upsertStep(s);
      if (s.fallback_from && s.status !== 'running') {
        S.steps.get(s.id).li.before(failedAttempt(s, s.fallback_from, null, ''));
        fallbackCallout(s.step_key, s.fallback_from, s.agent, '');
      }
    }
    for (const a of r.approvals || []) approvalCallout(a);
    // Finished steps' stored output; the running step's output so far comes from the log.
    const running = (r.steps || []).filter((s) => s.status === 'running');
    S.outSeq = 0;
    if (running.length) {
      try {
        const evs = await ctx.api('GET', `/api/tasks/${taskId}/events?after=0&limit=5000`);
        if (token !== S.loadToken) return;
        S.outSeq = evs.last_seq || 0;
        const ids = new Set(running.map((s) => s.id));
        for (const s of r.steps) if (!ids.has(s.id)) storedOutput(s);
        for (const ev of evs.events || []) {
          if (ev.type === 'step.fallback' && ev.run_id === id) handOver(ev);
          if (ev.type === 'agent.output' && ev.run_id === id && ids.has(ev.data.step_id)) onOutput({ ...ev, seq: Infinity });
        }
      } catch {
        for (const s of r.steps) storedOutput(s);
      }
    } else {
      for (const s of r.steps || []) storedOutput(s);
    }
    if (!output.childNodes.length && !ENDED.has(r.run.status)) {
      S.placeholder = h('span', { class: 'muted' }, 'Waiting for output…');
      output.append(S.placeholder);
    }
    output.scrollTop = output.scrollHeight;
    drawResult(r.result);
  }

  async function loadAll() {
    if (runId) {
      const r = await ctx.api('GET', `/api/runs/${runId}`);
      taskId = r.run.task_id;
    }
    const [t, list] = await Promise.all([
      ctx.api('GET', `/api/tasks/${taskId}`),
      ctx.api('GET', `/api/runs?task_id=${encodeURIComponent(taskId)}&limit=200`),
    ]);
    setTask(t);
    S.runs = list.runs || [];
    const pick = runId || (S.following && S.runs[0] && S.runs[0].id) || (S.run && S.run.id) || (S.runs[0] && S.runs[0].id);
    if (pick) await loadRun(pick);
    else { S.run = null; drawMeta(); waiting(); }
  }

  // ---- live ----
  function mine(ev) {
    return ev.task_id === taskId;
  }
  ctx.on('task.', (ev) => { if (mine(ev)) setTask(ev.data && ev.data.task); });
  ctx.on('run.', (ev) => {
    if (!mine(ev)) return;
    const r = ev.data && ev.data.run;
    if (ev.type === 'run.created' && r) {
      if (!S.runs.some((x) => x.id === r.id)) S.runs.unshift(r);
      if (S.following) { loadRun(r.id).catch(() => {}); return; }
      drawMeta();
      return;
    }
    if (!S.run || ev.run_id !== S.run.id) return;
    if (ev.type === 'run.updated' && r) {
      const was = S.run.status;
      setRun(r);
      if (ENDED.has(r.status) && !ENDED.has(was)) {
        ctx.api('GET', `/api/runs/${r.id}`).then((x) => {
          if (!S.run || S.run.id !== r.id) return;
          for (const s of x.steps || []) { upsertStep(s); storedOutput(s); }
          drawResult(x.result);
        }, () => drawResult(null));
      }
    } else if (ev.type === 'run.iteration' && ev.data && typeof ev.data.iteration === 'number') {
      iteration.textContent = String(ev.data.iteration);
    }
  });
  ctx.on('step.', (ev) => { if (mine(ev)) live(() => stepEvent(ev)); });
  function stepEvent(ev) {
    if (!S.run || ev.run_id !== S.run.id) return;
    const d = ev.data || {};
    if (d.step && d.step.id) {
      upsertStep(d.step);
      if (ev.type === 'step.finished') storedOutput(d.step);
    } else if (ev.type === 'step.fallback') {
      handOver(ev);
    } else if (ev.type === 'step.waiting') {
      callout('callout-waiting', 'warn', h('strong', null, `${d.step}: waiting`),
        h('span', null, `${d.agent || 'the agent'} is rate limited${d.wait_ms ? `; it goes on in ${duration(d.wait_ms)}` : ''}.`));
    }
  }
  ctx.on('agent.', (ev) => {
    if (ev.type === 'agent.output') {
      if (mine(ev)) live(() => { if (S.run && ev.run_id === S.run.id) onOutput(ev); });
    } else if (ev.type === 'agent.breaker') {
      live(() => breakerCallout(ev));
    }
  });
  ctx.on('approval.', (ev) => {
    const a = ev.data && ev.data.approval;
    if (a && mine(ev)) live(() => { if (S.run && a.run_id === S.run.id) approvalCallout(a); });
  });
  ctx.onResync(() => { loadAll().catch(() => {}); });
  const tick = setInterval(() => {
    for (const d of el.querySelectorAll('.dur[data-start]')) d.textContent = duration(between(d.dataset.start));
    if (S.run && !ENDED.has(S.run.status)) drawFigures();
  }, 1000);

  drawMeta();
  return {
    cleanup: () => clearInterval(tick),
    ready: loadAll().then(() => root.removeAttribute('aria-busy'), (err) => {
      root.removeAttribute('aria-busy');
      replace(title, err.status === 404 || err.status === 400 ? 'Not found' : 'Task');
      replace(meta);
      replace(body, h('p', { class: 'empty error-text', role: 'alert' },
        err.status === 404 || err.status === 400 ? `There is no ${runId ? 'run' : 'task'} ${runId || taskId}.` : `This run could not be loaded: ${err.message}`));
    }),
  };
}

function page(id) {
  return {
    id,
    title: id === 'task' ? 'Task' : 'Run',
    nav: false,
    mount(el, ctx, arg) {
      const v = view(el, ctx, id === 'task' ? arg : null, id === 'run' ? arg : null);
      return v.ready.then(() => v.cleanup);
    },
  };
}

export default page('task');
export const runPage = page('run');
