// approvals.js - the approvals inbox (#/approvals): every pending human gate with its
// task, step, prompt and context, a comment box and approve/reject buttons (write
// tokens only). approval.requested adds a gate live, approval.decided removes it.
// approvalCard() is shared with the run view's approval callout. A context.diff (the
// workspace's uncommitted changes, from the engine) shows as a file list above the output.

import { h, replace, ago, when } from './lib.js';

function contextText(ctxv) {
  if (ctxv === null || ctxv === undefined || ctxv === '') return '';
  if (typeof ctxv === 'string') return ctxv;
  if (typeof ctxv === 'object' && !Array.isArray(ctxv)) {
    // the engine's context: previous_output is the part a person reads (diff has its own summary)
    const { previous_output: out, diff, ...rest } = ctxv;
    const lines = Object.entries(rest).map(([k, v]) => `${k}: ${typeof v === 'string' ? v : JSON.stringify(v)}`);
    if (out) lines.push('', String(out));
    return lines.join('\n');
  }
  return JSON.stringify(ctxv, null, 2);
}

const plural = (n, one) => `${n} ${one}${n === 1 ? '' : 's'}`;
const counts = (f) => (typeof f.added === 'number' || typeof f.removed === 'number'
  ? `+${f.added ?? 0} \u2212${f.removed ?? 0}` : (f.status === '??' ? 'new' : 'binary'));

// context.diff as "N files changed, +I −D" over one line per file: status, +added
// −removed, path (untracked and binary files have no line counts).
function diffSummary(d) {
  if (!d || typeof d !== 'object' || !Array.isArray(d.files)) return null;
  const head = `${plural(d.files_changed ?? d.files.length, 'file')} changed, +${d.insertions ?? 0} \u2212${d.deletions ?? 0}`;
  const lines = d.files.map((f) => `${String(f.status).padEnd(3)}${counts(f).padEnd(12)}${f.path}`);
  if (d.truncated) lines.push(`\u2026 and ${Math.max(0, (d.files_changed || 0) - d.files.length)} more`);
  return h('details', { 'data-testid': 'approval-diff', open: d.files.length <= 10 },
    h('summary', null, head, d.base ? h('span', { class: 'muted' }, ` against ${d.base}`) : null),
    lines.length ? h('pre', null, lines.join('\n')) : null);
}

// The approve/reject controls of one approval; onDecided(approval) after success.
export function decisionControls(ctx, a, onDecided) {
  if (!ctx.can.write) return null;
  const comment = h('textarea', { name: 'comment', rows: '2', placeholder: 'Comment (optional)', 'aria-label': 'Comment' });
  const approve = h('button', { class: 'btn primary', type: 'button', 'data-testid': 'approve' }, 'Approve');
  const reject = h('button', { class: 'btn danger', type: 'button', 'data-testid': 'reject' }, 'Reject');
  async function decide(what) {
    approve.disabled = true;
    reject.disabled = true;
    const body = {};
    if (comment.value.trim()) body.comment = comment.value.trim();
    if (ctx.who && ctx.who.identity) body.by = ctx.who.identity;
    try {
      const r = await ctx.api('POST', `/api/approvals/${a.id}/${what}`, body);
      ctx.toast(what === 'approve' ? 'Approved: the run goes on.' : 'Rejected: the step fails.', 'ok');
      onDecided(r || { ...a, status: what === 'approve' ? 'approved' : 'rejected' });
    } catch (err) {
      ctx.toast(err.message, 'error');
      approve.disabled = false;
      reject.disabled = false;
    }
  }
  approve.addEventListener('click', () => decide('approve'));
  reject.addEventListener('click', () => decide('reject'));
  return [comment, h('div', { class: 'actions' }, approve, reject)];
}

function approvalCard(ctx, a, task, onDecided) {
  const ctxText = contextText(a.context);
  const title = task ? task.title : a.task_id;
  return h('article', { class: 'panel approval', 'data-testid': 'approval', 'data-approval-id': a.id },
    h('div', { class: 'head' },
      h('a', { href: `#/task/${encodeURIComponent(a.task_id)}`, class: 'card-title' }, title || a.task_id),
      h('span', { class: 'badge' }, `step ${a.step_key}`),
      h('time', { class: 'muted', datetime: a.created_at, title: when(a.created_at) }, `asked ${ago(a.created_at)}`),
      a.expires_at ? h('span', { class: 'muted', title: when(a.expires_at) }, `expires ${when(a.expires_at)}`) : null),
    h('p', { class: 'prompt' }, a.prompt || 'Approve this step?'),
    diffSummary(a.context && a.context.diff),
    ctxText ? h('details', { open: true }, h('summary', { class: 'muted' }, 'Context'), h('pre', null, ctxText)) : null,
    decisionControls(ctx, a, onDecided));
}

export default {
  id: 'approvals',
  title: 'Approvals',
  nav: true,
  mount(el, ctx) {
    const list = h('div', { class: 'approvals-list', 'data-testid': 'approvals', 'aria-busy': 'true' });
    const empty = h('p', { class: 'empty', 'data-testid': 'approvals-empty', hidden: true }, 'Nothing is waiting for a decision.');
    el.append(h('div', { class: 'page-head' }, h('h1', null, 'Approvals')), list, empty);
    const shown = new Map(); // approval id -> element
    const tasks = new Map(); // task id -> Promise<task|null>

    function taskOf(id) {
      if (!tasks.has(id)) tasks.set(id, ctx.api('GET', `/api/tasks/${id}`).catch(() => null));
      return tasks.get(id);
    }
    function refresh() {
      empty.hidden = shown.size > 0;
    }
    function remove(id) {
      const node = shown.get(id);
      if (!node) return;
      const next = node.nextElementSibling || node.previousElementSibling;
      const hadFocus = node.contains(document.activeElement);
      node.remove();
      shown.delete(id);
      refresh();
      if (hadFocus) (next ? next.querySelector('a') : el.querySelector('h1')).focus();
    }
    async function add(a) {
      if (a.status !== 'pending' || shown.has(a.id)) return;
      shown.set(a.id, null);
      const task = await taskOf(a.task_id);
      if (!shown.has(a.id)) return; // decided meanwhile
      const card = approvalCard(ctx, a, task, (d) => remove(d.id || a.id));
      shown.set(a.id, card);
      // oldest first: the one waiting longest is at the top
      const after = [...list.children].find((n) => n.dataset.created > a.created_at);
      card.dataset.created = a.created_at;
      list.insertBefore(card, after || null);
      refresh();
    }
    async function load() {
      const r = await ctx.api('GET', '/api/approvals?status=pending');
      const items = (r.approvals || []).slice().sort((x, y) => (x.created_at < y.created_at ? -1 : 1));
      const ids = new Set(items.map((a) => a.id));
      for (const id of [...shown.keys()]) if (!ids.has(id)) remove(id);
      await Promise.all(items.map(add));
    }

    ctx.on('approval.', (ev) => {
      const a = ev.data && ev.data.approval;
      if (!a) return;
      if (a.status === 'pending') add(a);
      else remove(a.id);
    });
    ctx.onResync(() => { load().catch(() => {}); });
    return load().then(() => {
      list.removeAttribute('aria-busy');
      refresh();
    }, (err) => {
      list.removeAttribute('aria-busy');
      replace(empty, `Approvals could not be loaded: ${err.message}`);
      empty.hidden = false;
    });
  },
};

export { approvalCard, contextText };
