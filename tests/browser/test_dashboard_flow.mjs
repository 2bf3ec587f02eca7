// test_dashboard_flow.mjs - issue 9's first acceptance bullet, end to end in one tab with no
// reload: log in with the write token, create a task in the UI on the approval workflow, see
// its card, open it and watch the replayed agent's output grow live, see the gate in the
// inbox and in the nav badge, approve it with a comment, see the run complete and the card
// land in the completed column. Then, on other tasks: cancel (confirm dialog, "no" first)
// and retry from the board, edit and approve a draft (seed 003), and the search filter.
import {
  TOKENS, test, login, go, card, markWindow, noReload, until, createTask, taskReaches,
  pendingApproval,
} from './harness.mjs';

await test('dashboard_flow', { timeout: 58000 }, async (t) => {
  const s = await t.server({ speed: 1 });
  const { page } = await t.browser();

  // Login prompt; the window mark must survive everything that follows.
  const dlg = await login(page, s);
  await markWindow(page);
  await dlg.locator('input[name=token]').fill(TOKENS.write);
  await dlg.locator('button[data-testid=login-submit]').click();
  await dlg.waitFor({ state: 'hidden' });
  const board = page.locator('[data-testid=board][data-loaded=true]');
  await board.waitFor();
  t.check(true, 'the login prompt took the write token and the board rendered');
  const cols = await page.locator('section[data-testid=column]').evaluateAll(
    (els) => els.map((e) => e.dataset.status));
  t.check(JSON.stringify(cols) === JSON.stringify(
    ['draft', 'pending', 'in_progress', 'completed', 'failed', 'cancelled']),
  `the board has the six status columns in order (${cols})`);

  // Create a task in the dialog, on the gated workflow.
  const title = 'Add a healthz endpoint';
  await page.locator('button[data-testid=create-task]').click();
  const td = page.locator('dialog[data-testid=task-dialog]');
  await td.waitFor({ state: 'visible' });
  const form = td.locator('form[data-testid=task-form]');
  // The options arrive from GET /api/workflows: wait for them as a person would.
  await form.locator('select[name=workflow] option[value=gated]').waitFor({ state: 'attached', timeout: 5000 })
    .catch(() => {});
  const opts = await form.locator('select[name=workflow] option').evaluateAll(
    (els) => els.map((e) => e.value));
  t.check(opts[0] === '' && ['gated', 'parent', 'quick', 'broken', 'wf0'].every((w) => opts.includes(w)),
    `the workflow select offers the default first and every workflow (${opts.length} options)`);
  await form.locator('input[name=title]').fill(title);
  await form.locator('textarea[name=body]').fill('GET /healthz answers 200 {"status":"ok"}');
  await form.locator('select[name=workflow]').selectOption('gated');
  // no project: a project needs a repository to clone, and this run needs none
  await form.locator('input[name=labels]').fill('ai-ready, api');
  await form.locator('button[data-testid=task-submit]').click();
  await td.waitFor({ state: 'hidden' });
  const c1 = page.locator('article[data-testid=card]', { hasText: title });
  await c1.waitFor();
  const id = await c1.getAttribute('data-task-id');
  const stored = await s.ok('GET', `/api/tasks/${id}`);
  t.check(stored.workflow === 'gated' && JSON.stringify(stored.labels) === '["ai-ready","api"]'
    && stored.body.includes('healthz'),
  `the card appeared and the task was stored with body, workflow and labels (${stored.workflow}, ${stored.labels})`);
  const cardText = await c1.textContent();
  t.check(cardText.includes('api') && cardText.includes('ai-ready') && /\d+\s*\/\s*\d+/.test(cardText),
    `the card shows source, labels and attempts n/max (${cardText.replace(/\s+/g, ' ').slice(0, 160)})`);

  // Open it: the output grows while the agent step runs.
  await c1.locator('a[data-testid=card-title]').click();
  await page.locator('[data-testid=run-view]').waitFor();
  t.check((await page.evaluate(() => location.hash)) === `#/task/${id}`, 'the card title opens #/task/<id>');
  const run = await until(async () => (await s.ok('GET', `/api/runs?task_id=${id}`)).runs[0], 'the run');
  const out = page.locator('pre[data-testid=output]');
  const lengths = new Set();
  const end = Date.now() + 20000;
  for (;;) {
    const len = ((await out.textContent().catch(() => '')) || '').length;
    const steps = (await s.ok('GET', `/api/runs/${run.id}/steps`)).steps;
    const impl = steps.find((x) => x.step_key === 'implement');
    if (impl && impl.status !== 'running') break;
    if (len > 0) lengths.add(len);
    if (Date.now() > end) break;
    await page.waitForTimeout(100);
  }
  t.check(lengths.size >= 2, `the run view's output grew while the agent step ran (lengths seen: ${[...lengths]})`);
  const stepLi = page.locator('li[data-testid=step][data-step-key=implement]');
  await stepLi.first().waitFor();
  const stepText = await stepLi.first().textContent();
  t.check(stepText.includes('demo') && stepText.includes('implement'),
    `the timeline shows the agent and role of the step (${stepText.slice(0, 120).replace(/\s+/g, ' ')})`);

  // The gate: the badge counts it, the run view calls it out, the inbox lists it.
  const ap = await pendingApproval(s, id);
  const badge = page.locator('[data-testid=approvals-count]');
  await until(async () => (await badge.textContent()).trim() === '1', 'the approvals badge to say 1');
  t.check(true, 'the nav badge counts the pending approval (1)');
  await page.locator('[data-testid=callout-approval]').waitFor();
  t.check((await page.locator('[data-testid=run-status]').textContent()).trim() === 'waiting',
    'the run view says the run is waiting');
  await page.locator('nav a[href="#/approvals"]').click();
  const item = page.locator(`article[data-testid=approval][data-approval-id="${ap.id}"]`);
  await item.waitFor();
  const itemText = await item.textContent();
  t.check(itemText.includes(title) && itemText.includes(`Ship ${title}?`),
    'the inbox shows the task title and the gate\'s prompt');
  t.check(itemText.includes('Added GET /healthz'), 'the inbox shows the context (the previous step\'s output)');
  await t.docShot(page, 'approvals');
  await item.locator('textarea[name=comment]').fill('looks right, ship it');
  await item.locator('button[data-testid=approve]').click();
  await item.waitFor({ state: 'detached' });
  t.check(true, 'the approved gate vanished from the inbox');
  const decided = await s.ok('GET', `/api/approvals/${ap.id}`);
  t.check(decided.status === 'approved' && decided.comment === 'looks right, ship it',
    `the approval was stored with the comment (${decided.status}, ${decided.comment})`);
  await until(async () => ['0', ''].includes((await badge.textContent()).trim()) || !(await badge.isVisible()),
    'the approvals badge to clear');

  // The run completes; the card is in the completed column.
  await go(page, `#/task/${id}`);
  await until(async () => (await page.locator('[data-testid=run-status]').textContent()).trim() === 'completed',
    'run-status completed');
  await page.locator('[data-testid=final-output]').waitFor();
  t.check((await page.locator('[data-testid=task-status]').textContent()).trim() === 'completed',
    'the run view shows the run and the task completed, with the final output');
  await t.docShot(page, 'run');
  await page.locator('nav a[href="#/board"]').click();
  await page.locator(`section[data-testid=column][data-status=completed] article[data-task-id="${id}"]`).waitFor();
  t.check(true, 'back on the board the card is in the completed column');

  // Cancel (confirm "no" first, then "yes") and retry from the board.
  const t2 = await createTask(s, { title: 'Long job to cancel', workflow: 'gated' });
  const c2 = card(page, t2.id);
  await page.locator(`section[data-testid=column][data-status=in_progress] article[data-task-id="${t2.id}"]`).waitFor();
  await c2.locator('button[data-testid=cancel]').click();
  const confirm = page.locator('dialog[data-testid=confirm]');
  await confirm.waitFor({ state: 'visible' });
  await confirm.locator('button[data-testid=confirm-no]').click();
  await confirm.waitFor({ state: 'hidden' });
  await page.waitForTimeout(300);
  t.check((await s.ok('GET', `/api/tasks/${t2.id}`)).status === 'in_progress',
    'answering "no" in the confirm dialog leaves the task running');
  await c2.locator('button[data-testid=cancel]').click();
  await confirm.waitFor({ state: 'visible' });
  await confirm.locator('button[data-testid=confirm-yes]').click();
  await page.locator(`section[data-testid=column][data-status=cancelled] article[data-task-id="${t2.id}"]`).waitFor();
  t.check((await s.ok('GET', `/api/tasks/${t2.id}`)).status === 'cancelled',
    'cancel from the board cancelled the task and moved its card to cancelled');
  t.check(await c2.locator('button[data-testid=cancel]').count() === 0,
    'a cancelled card offers no cancel button');
  await c2.locator('button[data-testid=retry]').click();
  await until(async () => (await c2.getAttribute('data-status')) !== 'cancelled', 'the retried card to leave cancelled');
  const retried = await s.ok('GET', `/api/tasks/${t2.id}`);
  t.check(['pending', 'in_progress'].includes(retried.status) && retried.attempts <= 1,
    `retry from the board requeued the task (${retried.status})`);
  await s.ok('POST', `/api/tasks/${t2.id}/cancel`, { reason: 'test done' });

  // A draft: created in the dialog, edited, approved (seed 003).
  await page.locator('button[data-testid=create-task]').click();
  await td.waitFor({ state: 'visible' });
  await form.locator('input[name=title]').fill('Draft: rename the config flag');
  await form.locator('select[name=workflow]').selectOption('quick');
  await form.locator('input[name=draft]').check();
  await form.locator('button[data-testid=task-submit]').click();
  await td.waitFor({ state: 'hidden' });
  const c3 = page.locator('section[data-testid=column][data-status=draft] article[data-testid=card]',
    { hasText: 'Draft: rename the config flag' });
  await c3.waitFor();
  const t3 = await c3.getAttribute('data-task-id');
  await c3.locator('button[data-testid=edit]').click();
  await td.waitFor({ state: 'visible' });
  t.check((await form.locator('input[name=title]').inputValue()) === 'Draft: rename the config flag',
    'the edit dialog is filled with the draft\'s title');
  t.check(!(await form.locator('input[name=draft]').isVisible()), 'the draft checkbox is hidden when editing');
  await form.locator('input[name=title]').fill('Rename the --cfg flag to --config');
  await form.locator('button[data-testid=task-submit]').click();
  await td.waitFor({ state: 'hidden' });
  await until(async () => (await card(page, t3).locator('a[data-testid=card-title]').textContent())
    .includes('Rename the --cfg flag'), 'the edited title on the card');
  t.check((await s.ok('GET', `/api/tasks/${t3}`)).title === 'Rename the --cfg flag to --config',
    'editing the draft in the dialog stored the new title (PATCH) and the card shows it');
  await card(page, t3).locator('button[data-testid=approve-draft]').click();
  await taskReaches(s, t3, ['completed']);
  await page.locator(`section[data-testid=column][data-status=completed] article[data-task-id="${t3}"]`).waitFor();
  t.check(true, 'approving the draft queued it; it ran and its card reached completed live');

  // Search filters the cards live.
  const search = page.locator('input[data-testid=search]');
  await search.fill('--cfg');
  await until(async () => !(await card(page, id).isVisible()) && !(await card(page, t2.id).isVisible()),
    'non-matching cards to be hidden');
  t.check(await card(page, t3).isVisible(), 'the search keeps the matching card and hides the others');
  await search.fill('');
  await until(async () => await card(page, id).isVisible(), 'the cards to come back');
  t.check(true, 'clearing the search shows every card again');

  t.check(await noReload(page), 'the page never reloaded or navigated away during the whole flow');
});
