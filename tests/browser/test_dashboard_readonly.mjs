// test_dashboard_readonly.mjs - a read-only token sees no mutating control anywhere (board
// with a task in every state including a draft, run views, the approvals inbox with a
// pending gate), and the API refuses those actions with 403 when the page calls them with
// that token anyway; nothing changes. Logout; a bad token shows login-error; a worker-only
// token is refused with a message of its own.
import { TOKENS, test, go, card, until, createTask, taskReaches, pendingApproval } from './harness.mjs';

const MUTATING = ['create-task', 'edit', 'approve-draft', 'cancel', 'retry', 'approve', 'reject']
  .map((id) => `[data-testid=${id}]`).join(', ');

await test('dashboard_readonly', { timeout: 55000 }, async (t) => {
  // One local run at a time: the gated run waiting for its approval holds the slot, so the
  // task created after it stays pending.
  const s = await t.server({ local: 1, speed: 0 });
  const done = await createTask(s, { title: 'Finished job', workflow: 'quick', labels: ['docs'] });
  await taskReaches(s, done.id, ['completed']);
  const failed = await createTask(s, { title: 'Broken job', workflow: 'broken' });
  await taskReaches(s, failed.id, ['failed']);
  const gated = await createTask(s, { title: 'Gated job', workflow: 'gated' });
  const ap = await pendingApproval(s, gated.id);
  const pending = await createTask(s, { title: 'Queued job', workflow: 'quick', project: 'web', labels: ['ui'] });
  const draft = await createTask(s, { title: 'Draft job', workflow: 'quick', draft: true });
  const gone = await createTask(s, { title: 'Cancelled job', workflow: 'quick', draft: true });
  await s.ok('POST', `/api/tasks/${gone.id}/cancel`, { reason: 'not needed' });
  t.check((await s.ok('GET', `/api/tasks/${pending.id}`)).status === 'pending', 'setup: a task is held pending');

  const { page } = await t.browser();
  await t.login(page, s, TOKENS.read);
  await page.locator('[data-testid=board][data-loaded=true]').waitFor();
  const states = { draft, pending, in_progress: gated, completed: done, failed, cancelled: gone };
  for (const [st, task] of Object.entries(states)) {
    const n = await page.locator(`section[data-testid=column][data-status=${st}] article[data-task-id="${task.id}"]`).count();
    t.check(n === 1, `the read-only board shows the ${st} task in the ${st} column`);
  }
  const pc = await card(page, pending.id).textContent();
  t.check(pc.includes('web') && pc.includes('ui') && pc.includes('api'),
    `a card shows its project, labels and source (${pc.replace(/\s+/g, ' ').slice(0, 120)})`);
  t.check(await page.locator(MUTATING).count() === 0,
    'the read-only board renders no create/edit/approve-draft/cancel/retry control');
  t.check(await page.locator('input[data-testid=search]').count() === 1, 'the read-only board still has search');

  // Run views: the waiting run (gate called out, no approve/reject/cancel), the failed one.
  await go(page, `#/task/${gated.id}`);
  await until(async () => (await page.locator('[data-testid=run-status]').textContent()).trim() === 'waiting',
    'the waiting run view');
  await page.locator('[data-testid=callout-approval]').waitFor();
  t.check(await page.locator('[data-testid=callout-approval] a[href="#/approvals"]').count() >= 1,
    'the run view calls out the pending gate with a link to the inbox');
  t.check(await page.locator(MUTATING).count() === 0, 'the read-only run view of a waiting run has no control');
  await go(page, `#/task/${failed.id}`);
  await until(async () => (await page.locator('[data-testid=task-status]').textContent()).trim() === 'failed',
    'the failed task\'s run view');
  t.check(await page.locator(MUTATING).count() === 0, 'the read-only run view of a failed run offers no retry');

  // The inbox lists the gate without controls.
  await go(page, '#/approvals');
  const item = page.locator(`article[data-testid=approval][data-approval-id="${ap.id}"]`);
  await item.waitFor();
  t.check(await page.locator(MUTATING).count() === 0, 'the read-only inbox shows the gate without approve/reject');
  t.check((await page.locator('[data-testid=approvals-count]').textContent()).trim() === '1',
    'the nav badge counts the pending approval for a read-only token too');

  // The API refuses the same actions with 403 when the page sends them with the read token.
  const endAllow = t.guard.allow(/(HTTP 403|status of 403)/);
  const answers = await page.evaluate(async ({ tok, ids }) => {
    const call = async (method, path, body) => {
      const r = await fetch(path, {
        method,
        headers: { Authorization: `Bearer ${tok}`, 'Content-Type': 'application/json' },
        body: body ? JSON.stringify(body) : undefined,
      });
      return `${method} ${path.replace(/[0-9A-Z]{26}/, 'ID')} ${r.status}`;
    };
    return [
      await call('POST', '/api/tasks', { title: 'sneaky' }),
      await call('PATCH', `/api/tasks/${ids.draft}`, { title: 'sneaky' }),
      await call('PATCH', `/api/tasks/${ids.draft}/approve`),
      await call('POST', `/api/tasks/${ids.pending}/cancel`, {}),
      await call('POST', `/api/tasks/${ids.failed}/retry`, {}),
      await call('POST', `/api/approvals/${ids.ap}/approve`, { comment: 'sneaky' }),
      await call('POST', `/api/approvals/${ids.ap}/reject`, { comment: 'sneaky' }),
    ];
  }, { tok: TOKENS.read, ids: { draft: draft.id, pending: pending.id, failed: failed.id, ap: ap.id } });
  endAllow();
  t.check(answers.every((a) => a.endsWith(' 403')), `the API answers 403 to each: ${answers.join('; ')}`);
  const after = await Promise.all([draft, pending, failed].map((x) => s.ok('GET', `/api/tasks/${x.id}`)));
  t.check(after[0].status === 'draft' && after[0].title === 'Draft job' && after[1].status === 'pending'
    && after[2].status === 'failed', 'nothing changed');
  t.check((await s.ok('GET', `/api/approvals/${ap.id}`)).status === 'pending', 'the gate is still pending');
  const tasks = (await s.ok('GET', '/api/tasks?q=sneaky')).tasks;
  t.check(tasks.length === 0, 'no task was created');

  // Logout, then a bad token and a worker-only token at the prompt.
  // whoami answers 200 with authenticated/can_read, so no refusal reaches the console.
  await page.locator('[data-testid=logout]').click();
  const dlg = page.locator('dialog[data-testid=login]');
  await dlg.waitFor({ state: 'visible' });
  t.check(await page.evaluate(() => sessionStorage.getItem('baton.token')) === null,
    'logout clears the stored token and shows the login prompt');
  await dlg.locator('input[name=token]').fill('not-a-token');
  await dlg.locator('button[data-testid=login-submit]').click();
  const err = dlg.locator('[data-testid=login-error]');
  await until(async () => (await err.isVisible()) && (await err.textContent()).trim(), 'login-error for a bad token');
  const badMsg = (await err.textContent()).trim();
  t.check(await dlg.isVisible(), `a bad token keeps the prompt open with login-error: "${badMsg}"`);
  await dlg.locator('input[name=token]').fill(TOKENS.worker);
  await dlg.locator('button[data-testid=login-submit]').click();
  await until(async () => {
    const m = (await err.textContent()).trim();
    return m && m !== badMsg;
  }, 'a different message for the worker token', 5000).catch(() => {});
  const workerMsg = (await err.textContent()).trim();
  t.check(await dlg.isVisible() && workerMsg !== '' && workerMsg !== badMsg,
    `a worker-only token is refused with its own message: "${workerMsg}"`);
  t.check(await page.evaluate(() => sessionStorage.getItem('baton.token')) === null,
    'a refused token is not stored');
  // A good token at the same prompt still works.
  await dlg.locator('input[name=token]').fill(TOKENS.read);
  await dlg.locator('button[data-testid=login-submit]').click();
  await dlg.waitFor({ state: 'hidden' });
  t.check(true, 'the prompt accepts the read token after the refusals');
});
