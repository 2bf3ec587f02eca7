// board.js - the task board (#/board): one column per task status, a card per task,
// live search and project/source filters, the create/edit dialog and the card actions
// (approve a draft, edit, cancel, retry). Live task.* events carry the whole task, so
// each one updates or moves just that card: hundreds of cards stay fast.

import { h, replace, ago, when } from './lib.js';

const STATUSES = ['draft', 'pending', 'in_progress', 'completed', 'failed', 'cancelled'];
const LABELS = { draft: 'Draft', pending: 'Pending', in_progress: 'In progress', completed: 'Completed', failed: 'Failed', cancelled: 'Cancelled' };
const FINISHED = 'completed,failed,cancelled';
const FINISHED_MAX = 500; // newest finished tasks shown

// Order inside a column: pending work by priority (null last) then age; everything
// else newest change first.
function compare(status, a, b) {
  if (status === 'pending' || status === 'draft') {
    const pa = a.priority ?? Infinity;
    const pb = b.priority ?? Infinity;
    if (pa !== pb) return pa - pb;
    return a.created_at < b.created_at ? -1 : a.created_at > b.created_at ? 1 : 0;
  }
  return a.updated_at > b.updated_at ? -1 : a.updated_at < b.updated_at ? 1 : 0;
}

function haystack(t) {
  return [t.title, t.identifier, t.body, (t.labels || []).join(' '), t.id].join('\n').toLowerCase();
}

export default {
  id: 'board',
  title: 'Board',
  nav: true,
  mount(el, ctx) {
    const cards = new Map(); // id -> {task, el, hay}
    const cols = {};
    const search = h('input', { type: 'search', 'data-testid': 'search', placeholder: 'Search title, id, body, labels', 'aria-label': 'Search tasks' });
    const fProject = h('select', { 'data-testid': 'filter-project', 'aria-label': 'Project' }, h('option', { value: '' }, 'All projects'));
    const fSource = h('select', { 'data-testid': 'filter-source', 'aria-label': 'Source' }, h('option', { value: '' }, 'All sources'));
    const boardEl = h('div', { class: 'board', 'data-testid': 'board', 'aria-busy': 'true' });
    for (const s of STATUSES) {
      const count = h('span', { class: 'badge', 'data-testid': 'column-count' }, '0');
      const list = h('div', { class: 'cards', role: 'list' });
      const empty = h('p', { class: 'column-empty' }, 'No tasks');
      const sec = h('section', { class: 'column', 'data-testid': 'column', 'data-status': s, 'aria-label': LABELS[s] },
        h('h2', null, LABELS[s], count), list, empty);
      cols[s] = { sec, list, count, empty };
      boardEl.append(sec);
    }
    const createBtn = ctx.can.write
      ? h('button', { class: 'btn primary', type: 'button', 'data-testid': 'create-task', onclick: () => openDialog(null) }, '+ New task')
      : null;
    el.append(
      h('div', { class: 'page-head' }, h('h1', null, 'Board'), h('div', { class: 'actions' }, createBtn)),
      h('div', { class: 'toolbar', role: 'search' }, search, fProject, fSource),
      boardEl);

    // ---- filters ----
    const projects = new Set();
    const sources = new Set();
    function addOption(sel, set, value) {
      if (!value || set.has(value)) return;
      set.add(value);
      const opts = [...sel.options].slice(1);
      const next = opts.find((o) => o.value.localeCompare(value) > 0);
      sel.insertBefore(h('option', { value }, value), next || null);
    }
    function matches(c) {
      const q = search.value.trim().toLowerCase();
      if (q && !c.hay.includes(q)) return false;
      if (fProject.value && c.task.project !== fProject.value) return false;
      if (fSource.value && c.task.source !== fSource.value) return false;
      return true;
    }
    function counts() {
      for (const s of STATUSES) {
        let n = 0;
        for (const node of cols[s].list.children) if (!node.hidden) n++;
        cols[s].count.textContent = String(n);
        cols[s].empty.hidden = n > 0;
      }
    }
    function applyFilters() {
      for (const c of cards.values()) c.el.hidden = !matches(c);
      counts();
    }
    let timer = 0;
    search.addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(applyFilters, 60); });
    fProject.addEventListener('change', applyFilters);
    fSource.addEventListener('change', applyFilters);

    // ---- cards ----
    function actionButtons(t) {
      if (!ctx.can.write) return null;
      const b = [];
      if (t.status === 'draft') b.push(h('button', { class: 'btn small primary', type: 'button', 'data-testid': 'approve-draft', onclick: () => act(t.id, 'approve') }, 'Approve'));
      if (t.status === 'draft' || t.status === 'pending') b.push(h('button', { class: 'btn small', type: 'button', 'data-testid': 'edit', onclick: () => openDialog(cards.get(t.id).task) }, 'Edit'));
      if (t.status === 'failed' || t.status === 'cancelled') b.push(h('button', { class: 'btn small', type: 'button', 'data-testid': 'retry', onclick: () => act(t.id, 'retry') }, 'Retry'));
      if (['draft', 'pending', 'in_progress'].includes(t.status)) b.push(h('button', { class: 'btn small danger', type: 'button', 'data-testid': 'cancel', onclick: () => act(t.id, 'cancel') }, 'Cancel'));
      return b.length ? h('div', { class: 'actions' }, b) : null;
    }
    function renderCard(t) {
      const stamp = t.finished_at || t.started_at || t.created_at;
      return h('article', { class: 'card', 'data-testid': 'card', 'data-task-id': t.id, 'data-status': t.status, role: 'listitem' },
        h('a', { class: 'card-title', 'data-testid': 'card-title', href: `#/task/${encodeURIComponent(t.id)}` }, t.title || '(untitled)'),
        h('div', { class: 'meta' },
          t.project ? h('span', { class: 'badge project', title: 'Project' }, t.project) : null,
          h('span', { class: 'badge', title: 'Source' }, t.source),
          t.workflow ? h('span', { class: 'badge', title: 'Workflow' }, t.workflow) : null,
          (t.labels || []).map((l) => h('span', { class: 'badge label' }, l))),
        t.error && (t.status === 'failed' || t.status === 'cancelled') ? h('div', { class: 'err', title: t.error }, t.error) : null,
        h('div', { class: 'foot' },
          t.identifier && t.identifier !== t.id ? h('span', null, t.identifier) : null,
          h('span', { title: 'Attempts' }, `${t.attempts}/${t.max_attempts} attempts`),
          t.priority !== null && t.priority !== undefined ? h('span', { title: 'Priority (lower runs first)' }, `P${t.priority}`) : null,
          h('span', { class: 'spacer' }),
          h('time', { class: 'age', datetime: stamp, title: when(stamp), 'data-ts': stamp }, ago(stamp))),
        actionButtons(t));
    }
    function place(c) {
      const { list } = cols[c.task.status] || cols.pending;
      let before = null;
      for (const node of list.children) {
        const other = cards.get(node.dataset.taskId);
        if (other && other !== c && compare(c.task.status, c.task, other.task) < 0) { before = node; break; }
      }
      if (c.el.parentNode !== list || c.el.nextSibling !== before) list.insertBefore(c.el, before);
    }
    function upsert(t, initial) {
      if (!t || !t.id || !STATUSES.includes(t.status)) return;
      const old = cards.get(t.id);
      if (old && old.task.updated_at > t.updated_at) return; // an older copy
      const c = { task: t, el: renderCard(t), hay: haystack(t) };
      const focused = old && old.el.contains(document.activeElement) ? document.activeElement.dataset.testid : null;
      if (old) old.el.replaceWith(c.el);
      cards.set(t.id, c);
      addOption(fProject, projects, t.project);
      addOption(fSource, sources, t.source);
      c.el.hidden = !matches(c);
      if (!initial) { place(c); counts(); }
      if (focused) (c.el.querySelector(`[data-testid=${focused}]`) || c.el.querySelector('a')).focus();
    }

    async function act(id, what) {
      const c = cards.get(id);
      if (!c) return;
      if (what === 'cancel' && !(await ctx.confirm(`Cancel “${c.task.title}”? A running agent is stopped.`))) return;
      const path = what === 'approve' ? `/api/tasks/${id}/approve` : `/api/tasks/${id}/${what}`;
      try {
        const t = await ctx.api(what === 'approve' ? 'PATCH' : 'POST', path, what === 'approve' ? undefined : {});
        upsert(t);
        ctx.toast({ approve: 'Draft approved: it is queued now.', cancel: 'Task cancelled.', retry: 'Task queued again.' }[what], 'ok');
      } catch (err) {
        ctx.toast(err.message, 'error');
      }
    }

    // ---- create / edit dialog ----
    const dlg = buildDialog(ctx, (t) => upsert(t));
    el.append(dlg.el);
    function openDialog(task) { dlg.open(task); }

    // ---- snapshot and live updates ----
    async function fetchAll(query, max) {
      const out = [];
      let cursor = null;
      do {
        const q = new URLSearchParams(query);
        q.set('limit', String(Math.min(1000, max - out.length)));
        if (cursor) q.set('cursor', cursor);
        const r = await ctx.api('GET', `/api/tasks?${q}`);
        out.push(...(r.tasks || []));
        cursor = r.next_cursor;
      } while (cursor && out.length < max);
      return out;
    }
    async function load() {
      const [open, done] = await Promise.all([
        fetchAll({ status: 'draft,pending,in_progress' }, 5000),
        fetchAll({ status: FINISHED, order: 'desc' }, FINISHED_MAX),
      ]);
      return open.concat(done);
    }
    function renderAll(tasks) {
      for (const t of tasks) upsert(t, true);
      const byStatus = {};
      for (const s of STATUSES) byStatus[s] = [];
      for (const c of cards.values()) byStatus[c.task.status].push(c);
      for (const s of STATUSES) {
        byStatus[s].sort((a, b) => compare(s, a.task, b.task));
        const frag = document.createDocumentFragment();
        for (const c of byStatus[s]) frag.append(c.el);
        cols[s].list.replaceChildren(frag);
      }
      counts();
    }

    ctx.on('task.', (ev) => upsert(ev.data && ev.data.task));
    ctx.onResync(() => { load().then((tasks) => { for (const t of tasks) upsert(t); }, () => {}); });
    const ages = setInterval(() => {
      for (const t of boardEl.querySelectorAll('time.age')) t.textContent = ago(t.dataset.ts);
    }, 30000);

    load().then((tasks) => {
      renderAll(tasks);
      boardEl.removeAttribute('aria-busy');
      boardEl.dataset.loaded = 'true';
      performance.mark('baton:board-rendered');
    }, (err) => {
      boardEl.removeAttribute('aria-busy');
      boardEl.before(h('p', { class: 'empty error-text', role: 'alert' }, `Tasks could not be loaded: ${err.message}`));
    });

    return () => { clearInterval(ages); clearTimeout(timer); dlg.el.remove(); };
  },
};

// The create/edit dialog: POST /api/tasks, or PATCH /api/tasks/{id} for a draft or
// pending task. onSaved(task) gets the stored task.
function buildDialog(ctx, onSaved) {
  const f = {
    title: h('input', { name: 'title', required: true, maxlength: '500', autocomplete: 'off' }),
    body: h('textarea', { name: 'body', rows: '5' }),
    workflow: h('select', { name: 'workflow' }, h('option', { value: '' }, 'Default')),
    project: h('input', { name: 'project', autocomplete: 'off' }),
    labels: h('input', { name: 'labels', placeholder: 'bug, backend', autocomplete: 'off' }),
    priority: h('input', { name: 'priority', type: 'number', step: '1', placeholder: 'none' }),
    draft: h('input', { name: 'draft', type: 'checkbox' }),
  };
  const heading = h('h2', { id: 'task-dialog-title' }, 'New task');
  const error = h('p', { class: 'form-error', 'data-testid': 'form-error', role: 'alert' });
  const submit = h('button', { class: 'btn primary', type: 'submit', 'data-testid': 'task-submit' }, 'Create');
  const cancel = h('button', { class: 'btn', type: 'button' }, 'Cancel');
  const draftRow = h('label', { class: 'check' }, f.draft, 'Save as a draft (it waits for approval before it runs)');
  const form = h('form', { 'data-testid': 'task-form', novalidate: true },
    heading,
    h('label', { class: 'field' }, 'Title', f.title),
    h('label', { class: 'field' }, 'Description', f.body),
    h('div', { class: 'row2' }, h('label', { class: 'field' }, 'Workflow', f.workflow), h('label', { class: 'field' }, 'Project', f.project)),
    h('div', { class: 'row2' }, h('label', { class: 'field' }, 'Labels (comma-separated)', f.labels), h('label', { class: 'field' }, 'Priority (lower runs first)', f.priority)),
    draftRow, error, h('div', { class: 'buttons' }, cancel, submit));
  const el = h('dialog', { 'data-testid': 'task-dialog', 'aria-labelledby': 'task-dialog-title' }, form);
  let editing = null;
  let workflowsLoaded = false;
  cancel.addEventListener('click', () => el.close());

  function loadWorkflows(selected) {
    if (workflowsLoaded) { f.workflow.value = selected || ''; return; }
    workflowsLoaded = true;
    ctx.api('GET', '/api/workflows').then((r) => {
      for (const w of r.workflows || []) {
        f.workflow.append(h('option', { value: w.id, disabled: w.available === false }, w.name && w.name !== w.id ? `${w.id} · ${w.name}` : w.id));
      }
      f.workflow.value = (editing && editing.workflow) || selected || '';
    }, () => { workflowsLoaded = false; });
  }

  // Fetched as soon as the board is shown, so the select is full when the dialog opens.
  loadWorkflows('');

  function open(task) {
    editing = task;
    replace(heading, task ? 'Edit task' : 'New task');
    replace(submit, task ? 'Save' : 'Create');
    replace(error);
    f.title.value = task ? task.title || '' : '';
    f.body.value = task ? task.body || '' : '';
    f.project.value = task ? task.project || '' : '';
    f.labels.value = task ? (task.labels || []).join(', ') : '';
    f.priority.value = task && task.priority !== null && task.priority !== undefined ? String(task.priority) : '';
    f.draft.checked = false;
    draftRow.hidden = !!task;
    if (task && task.workflow && ![...f.workflow.options].some((o) => o.value === task.workflow)) {
      f.workflow.append(h('option', { value: task.workflow }, task.workflow));
    }
    f.workflow.value = task ? task.workflow || '' : '';
    loadWorkflows(task ? task.workflow : '');
    el.showModal();
    f.title.focus();
  }

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    replace(error);
    const title = f.title.value.trim();
    if (!title) { replace(error, 'A title is required.'); f.title.focus(); return; }
    const pr = f.priority.value.trim();
    if (pr && !/^-?\d+$/.test(pr)) { replace(error, 'Priority must be a whole number.'); f.priority.focus(); return; }
    const labels = f.labels.value.split(',').map((s) => s.trim()).filter(Boolean);
    const body = { title, labels };
    const text = f.body.value.trim();
    const project = f.project.value.trim();
    const workflow = f.workflow.value;
    if (editing) {
      body.body = text;
      body.priority = pr ? Number(pr) : null;
      // baton cannot unset a task's project or workflow, only change it
      if (!project && editing.project) { replace(error, 'The project cannot be removed, only changed.'); f.project.focus(); return; }
      if (!workflow && editing.workflow) { replace(error, 'The workflow cannot be reset, only changed.'); f.workflow.focus(); return; }
      if (project && project !== editing.project) body.project = project;
      if (workflow && workflow !== editing.workflow) body.workflow = workflow;
    } else {
      if (text) body.body = text;
      if (pr) body.priority = Number(pr);
      if (project) body.project = project;
      if (workflow) body.workflow = workflow;
      if (f.draft.checked) body.draft = true;
    }
    submit.disabled = true;
    try {
      const t = editing
        ? await ctx.api('PATCH', `/api/tasks/${editing.id}`, body)
        : await ctx.api('POST', '/api/tasks', body);
      el.close();
      onSaved(t);
      ctx.toast(editing ? 'Task saved.' : `Task created${t.status === 'draft' ? ' as a draft' : ''}.`, 'ok');
    } catch (err) {
      replace(error, err.message);
    } finally {
      submit.disabled = false;
    }
  });
  return { el, open };
}
