// test_dashboard_resilience.mjs - the run view's fallback and circuit-breaker callouts, driven
// by a real fallback and watched live in one tab with no reload. The agent `stuck` is a CLI
// whose command sleeps far past its 1 s turn timeout (a timeout: handed on, and counted by its
// breaker, which opens after one failure); its fallback is the replayed `demo`. A one-step
// workflow runs `stuck`. With the run view open before the run starts, the timeline must show
// the failed attempt of `stuck` and the fallback attempt of `demo` (data-fallback-from=stuck),
// the fallback and breaker callouts must appear, demo's output must stream in, the run must
// complete, and the Agents page must show stuck's breaker open.
import fs from 'node:fs';
import path from 'node:path';
import { TOKENS, test, go, markWindow, noReload, until, createTask, taskReaches } from './harness.mjs';

const extra = `  stuck:
    type: cli
    command: sleep
    args: ["60"]
    timeout: 1s
    fallback: [demo]
    circuit_breaker: {failure_threshold: 1, recovery_timeout: 10m}
`;

const workflow = `metadata:
  id: resilient
  name: Falls back
steps:
  - id: work
    agent: stuck
    role: implement
`;

await test('dashboard_resilience', { timeout: 40000 }, async (t) => {
  fs.mkdirSync(path.join(t.dir, 'workflows'), { recursive: true });
  fs.writeFileSync(path.join(t.dir, 'workflows', 'resilient.yaml'), workflow);
  const s = await t.server({ speed: 3, extra });
  const { page } = await t.browser();
  await t.login(page, s, TOKENS.write);
  await page.locator('[data-testid=board][data-loaded=true]').waitFor();
  await markWindow(page);

  // A draft, so the run view is open before anything runs; approving it starts the run.
  const task = await createTask(s, { title: 'Survive a stuck agent', workflow: 'resilient', draft: true });
  await go(page, `#/task/${task.id}`);
  await page.locator('[data-testid=run-view]:not([aria-busy])').waitFor();
  await s.ok('PATCH', `/api/tasks/${task.id}/approve`);

  const steps = page.locator('li[data-testid=step][data-step-key=work]');
  const failed = steps.and(page.locator('[data-status=failed]'));
  const fallback = page.locator('li[data-testid=step][data-step-key=work][data-fallback-from=stuck]');
  const calloutFb = page.locator('[data-testid=callout-fallback]');
  const calloutBr = page.locator('[data-testid=callout-breaker]');
  const out = page.locator('pre[data-testid=output]');

  // The first attempt: stuck, running, then failed on its timeout.
  await steps.first().waitFor();
  t.check((await steps.first().textContent()).includes('stuck'),
    'the timeline shows the first attempt, by the stuck agent');
  await failed.waitFor();
  const failedText = await failed.textContent();
  t.check(failedText.includes('stuck') && (await failed.getAttribute('data-fallback-from')) === null,
    `the failed attempt stays in the timeline, by stuck (${failedText.replace(/\s+/g, ' ').slice(0, 140)})`);

  // The hand-over: a second attempt by demo that names stuck, and both callouts.
  await fallback.waitFor();
  t.check((await fallback.textContent()).includes('demo'),
    'the fallback attempt is in the timeline, by demo, with data-fallback-from=stuck');
  await calloutFb.waitFor();
  const fbText = await calloutFb.textContent();
  t.check(fbText.includes('stuck') && fbText.includes('demo') && fbText.includes('work'),
    `the fallback callout names the step and both agents (${fbText.replace(/\s+/g, ' ')})`);
  await calloutBr.waitFor();
  const brText = await calloutBr.textContent();
  t.check(brText.includes('stuck') && /open/.test(brText),
    `the breaker callout says stuck's breaker opened (${brText.replace(/\s+/g, ' ')})`);

  // demo's output streams in while its attempt runs.
  const lengths = new Set();
  const end = Date.now() + 15000;
  while (Date.now() < end) {
    const status = await fallback.getAttribute('data-status').catch(() => null);
    if (status && status !== 'running') break;
    const len = ((await out.textContent().catch(() => '')) || '').length;
    if (len > 0) lengths.add(len);
    await page.waitForTimeout(100);
  }
  t.check(lengths.size >= 2, `the fallback's output grew while it ran (lengths seen: ${[...lengths]})`);

  // The run completes, with demo's answer.
  await until(async () => (await page.locator('[data-testid=run-status]').textContent()).trim() === 'completed',
    'run-status completed', 15000);
  await page.locator('[data-testid=final-output]').waitFor();
  t.check((await out.textContent()).includes('Added GET /healthz')
    && (await page.locator('[data-testid=final-output]').textContent()).includes('Added GET /healthz'),
  'the run completed with the fallback\'s output streamed and shown as the final output');
  t.check((await fallback.getAttribute('data-status')) === 'succeeded'
    && (await failed.count()) === 1 && (await steps.count()) === 2,
  'after the run the timeline still has exactly the failed attempt and the succeeded fallback');
  await taskReaches(s, task.id, ['completed']);
  const stored = (await s.ok('GET', `/api/runs?task_id=${task.id}`)).runs[0];
  const st = (await s.ok('GET', `/api/runs/${stored.id}/steps`)).steps;
  t.check(st.some((x) => x.agent === 'demo' && x.fallback_from === 'stuck'),
    'the stored step agrees: demo produced the result in place of stuck');
  await t.shot(page, 'run');

  // Opened afterwards (a fresh snapshot of the stored run), the hand-over is still told.
  await go(page, `#/run/${stored.id}`);
  await page.locator('[data-testid=run-view]:not([aria-busy])').waitFor();
  t.check(await failed.count() === 1 && (await failed.textContent()).includes('stuck')
    && await fallback.count() === 1 && (await calloutFb.textContent()).includes('stuck → demo'),
  'opened later, the run view still shows the failed attempt, the fallback and its callout');

  // The Agents page: stuck's breaker is open, demo's closed.
  await page.locator('nav a[href="#/agents"]').click();
  await page.locator('tr[data-testid=agent-row][data-agent=stuck] [data-testid=breaker][data-state=open]').waitFor();
  t.check(true, 'the Agents page shows stuck\'s breaker open');
  t.check(await page.locator('tr[data-testid=agent-row][data-agent=demo] [data-testid=breaker][data-state=closed]').count() === 1,
    'and demo\'s breaker closed');
  await t.shot(page, 'agents');
  t.check(await noReload(page), 'the page never reloaded');
});
