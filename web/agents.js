// agents.js - the Agents & workers page (#/agents): every configured agent with its
// availability, circuit breaker, success rate, latency, rate limit and spend (GET
// /api/agents, GET /api/stats), and every worker with its health, current item and last
// contact (GET /workers). Live: breaker, status, rate-limit and worker events refetch (at
// most once a second), finished steps at most every 10 s.

import { h, replace, ago, when, money, tokens, duration, throttle, pct } from './lib.js';

const BREAKER_LABEL = { closed: 'closed', open: 'open', half_open: 'half-open' };

// epoch milliseconds or an ISO string (seed 002's "YYYY-MM-DDTHH:MM:SS" is UTC) -> ISO
function iso(t) {
  if (t === null || t === undefined || t === '') return null;
  if (typeof t === 'number') return new Date(t).toISOString();
  return /[zZ]|[+-]\d\d:?\d\d$/.test(t) ? t : `${t}Z`;
}

function th(text, cls) {
  return h('th', { scope: 'col', class: cls }, text);
}

function breakerCell(a) {
  const b = a.breaker || { state: 'closed' };
  const st = b.state || 'closed';
  const extra = [];
  if (b.failure_threshold) extra.push(`${b.consecutive_failures || 0}/${b.failure_threshold} failures`);
  if (st !== 'closed' && b.retry_at) {
    const left = b.retry_at - Date.now();
    extra.push(left > 0 ? `retry in ${duration(left)}` : 'probing');
  }
  return h('td', null,
    h('span', { class: `ag-breaker ag-br-${st}`, dataset: { testid: 'breaker', state: st },
      title: b.opened_at ? `opened ${when(iso(b.opened_at))}` : null }, BREAKER_LABEL[st] || st),
    extra.length ? h('div', { class: 'ag-sub' }, extra.join(' · ')) : null);
}

function rateCell(a) {
  const rl = a.rate_limit;
  if (!rl) return h('td', null, '–');
  const per = rl.per_ms ? duration(rl.per_ms).replace(/ 0 s$/, '') : '';
  const parts = [];
  if (rl.requests) parts.push(`${rl.requests} req`);
  if (rl.tokens) parts.push(`${tokens(rl.tokens)} tok`);
  const blocked = rl.blocked_until && rl.blocked_until > Date.now();
  return h('td', null,
    parts.length ? `${parts.join(', ')} / ${per}` : h('span', { class: 'muted' }, 'no limit'),
    rl.waiting ? h('div', { class: 'ag-sub' }, `${rl.waiting} waiting`) : null,
    blocked ? h('div', { class: 'ag-sub ag-warn' }, `blocked until ${new Date(rl.blocked_until).toLocaleTimeString()}`) : null);
}

function agentRow(a, spend) {
  const s = a.stats || {};
  const lat = s.latency_ms;
  const model = a.model || a.preset || '';
  const sp = spend && spend.get(a.name);
  return h('tr', { dataset: { testid: 'agent-row', agent: a.name } },
    h('th', { scope: 'row' },
      h('div', { class: 'ag-name' }, a.name, a.local ? h('span', { class: 'badge' }, 'local') : null),
      h('div', { class: 'ag-sub' }, [a.type, model, a.provider ? `via ${a.provider}` : ''].filter(Boolean).join(' · '))),
    h('td', null, a.role || h('span', { class: 'muted' }, '–'),
      a.fallback && a.fallback.length ? h('div', { class: 'ag-sub' }, `fallback → ${a.fallback.join(', ')}`) : null),
    h('td', null,
      h('span', { class: `ag-avail ${a.available ? 'yes' : 'no'}`, dataset: { testid: 'agent-available', available: String(!!a.available) } },
        a.available ? 'available' : 'unavailable'),
      a.detail ? h('div', { class: 'ag-sub ag-detail', title: a.detail }, a.detail) : null),
    breakerCell(a),
    h('td', { class: 'num' }, pct(s.success_rate),
      h('div', { class: 'ag-sub' }, s.calls ? `${s.successes}/${s.calls} calls` : 'no calls yet')),
    h('td', { class: 'num' }, lat ? duration(lat.p50) : '–',
      lat ? h('div', { class: 'ag-sub' }, `p90 ${duration(lat.p90)} · max ${duration(lat.max)}`) : null),
    rateCell(a),
    spend ? h('td', { class: 'num' }, sp ? money(sp.cost_usd) : money(0),
      sp ? h('div', { class: 'ag-sub' }, `${tokens(sp.tokens_in)} in · ${tokens(sp.tokens_out)} out`) : null) : null,
    h('td', { class: 'ag-sub' }, s.last_call_at ? h('span', { title: when(iso(s.last_call_at)) }, ago(iso(s.last_call_at))) : '–'));
}

function agentsTable(list, spend, days) {
  if (!list.length) {
    return h('p', { class: 'empty' }, 'No agents are configured. Add some under agents: in baton.yaml.');
  }
  return h('div', { class: 'ag-wrap', tabindex: 0, role: 'region', 'aria-label': 'Agents table' },
    h('table', { class: 'ag-table' },
      h('thead', null, h('tr', null, th('Agent'), th('Role'), th('Availability'), th('Breaker'),
        th('Success', 'num'), th('Latency p50', 'num'), th('Rate limit'),
        spend ? th(`Spend (${days} d)`, 'num') : null, th('Last call'))),
      h('tbody', null, list.map((a) => agentRow(a, spend)))));
}

function workerRow(w) {
  const seen = iso(w.last_seen);
  const cur = w.current_task;
  const isTask = typeof cur === 'string' && /^[0-9A-Z]{26}$/.test(cur);
  return h('tr', { dataset: { testid: 'worker-row', worker: w.id } },
    h('th', { scope: 'row' }, h('span', { class: 'ag-name' }, w.id)),
    h('td', null, h('span', { class: `ag-health ${w.health === 'healthy' ? 'yes' : 'no'}` }, w.health || 'unknown')),
    h('td', null, w.status || '–'),
    h('td', null, cur === null || cur === undefined ? h('span', { class: 'muted' }, 'idle')
      : isTask ? h('a', { href: `#/task/${encodeURIComponent(cur)}` }, cur) : `#${cur}`),
    h('td', null, h('code', null, w.ip || '')),
    h('td', null, h('span', { title: when(seen) }, ago(seen))));
}

function workersTable(list) {
  if (!list.length) {
    return h('p', { class: 'empty', dataset: { testid: 'workers-empty' } },
      'No worker has called in yet. Workers take items with GET /work/next and show up here.');
  }
  return h('div', { class: 'ag-wrap', tabindex: 0, role: 'region', 'aria-label': 'Workers table' },
    h('table', { class: 'ag-table' },
      h('thead', null, h('tr', null, th('Worker'), th('Health'), th('Status'), th('Current item'),
        th('Address'), th('Last seen'))),
      h('tbody', null, list.map(workerRow))));
}

function summary(agents, workers) {
  const avail = agents.filter((a) => a.available).length;
  const open = agents.filter((a) => a.breaker && a.breaker.state !== 'closed').length;
  const healthy = workers.filter((w) => w.health === 'healthy').length;
  const tile = (n, label, cls) => h('div', { class: `ag-tile ${cls || ''}` }, h('strong', null, n), h('span', null, label));
  return h('div', { class: 'ag-tiles' },
    tile(`${avail}/${agents.length}`, 'agents available', avail < agents.length ? 'warn' : 'ok'),
    tile(open, open === 1 ? 'breaker open' : 'breakers open', open ? 'err' : 'ok'),
    tile(`${healthy}/${workers.length}`, 'workers healthy', healthy < workers.length ? 'warn' : ''));
}

export default {
  id: 'agents',
  title: 'Agents',
  nav: true,
  mount(el, ctx) {
    const days = 14;
    const root = h('div', { class: 'ag-page', dataset: { testid: 'agents' }, 'aria-busy': 'true' },
      h('p', { class: 'muted', role: 'status' }, 'Loading agents…'));
    replace(el, h('h1', { tabindex: -1 }, 'Agents & workers'), root);
    let data = null;
    let stopped = false;

    const draw = () => {
      if (!data) return;
      const { agents, workers, spend } = data;
      replace(root,
        summary(agents, workers),
        h('section', { class: 'panel', 'aria-labelledby': 'ag-h-agents' },
          h('h2', { id: 'ag-h-agents' }, 'Agents'),
          agentsTable(agents, spend, days)),
        h('section', { class: 'panel', 'aria-labelledby': 'ag-h-workers' },
          h('h2', { id: 'ag-h-workers' }, 'Workers'),
          workersTable(workers)));
      root.setAttribute('aria-busy', 'false');
    };

    const load = async () => {
      try {
        const [ag, wk, st] = await Promise.all([
          ctx.api('GET', '/api/agents'),
          ctx.api('GET', '/workers'),
          ctx.api('GET', `/api/stats?days=${days}`).catch((err) => {
            if (err.name === 'AbortError') throw err;
            return null; // not served yet (404) or failing: the table goes without spend
          }),
        ]);
        if (stopped) return;
        const spend = st && Array.isArray(st.by_agent) ? new Map(st.by_agent.map((r) => [r.agent, r])) : null;
        data = {
          agents: (ag && ag.agents) || [],
          workers: ((wk && wk.workers) || []).slice().sort((a, b) => String(a.id).localeCompare(String(b.id))),
          spend,
        };
        draw();
      } catch (err) {
        if (stopped || err.name === 'AbortError') return;
        if (!data) replace(root, h('p', { class: 'empty', role: 'alert' }, `Could not load agents: ${err.message}`));
        else ctx.toast(`Could not refresh agents: ${err.message}`, 'error');
      }
    };

    const refetch = throttle(load, 1000);
    // Not 'agent.' as a whole: agent.output streams every line an agent prints, and each
    // GET /api/agents probes every agent. Finished steps move success rates and spend:
    // those refetch at most every 10 s.
    ctx.on('agent.breaker', refetch);
    ctx.on('agent.status', refetch);
    ctx.on('agent.rate_limited', refetch);
    ctx.on('worker.updated', refetch);
    const slow = throttle(load, 10000);
    ctx.on('step.finished', slow);
    ctx.onResync(refetch);
    const tick = setInterval(draw, 15000); // relative times and breaker countdowns
    load();
    return () => {
      stopped = true;
      refetch.cancel();
      slow.cancel();
      clearInterval(tick);
    };
  },
};
