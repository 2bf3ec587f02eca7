// test_dashboard_pages.mjs - every page at 1280x800 and 390x844, light and dark: it renders
// its heading and data, the page never scrolls sideways; the keyboard: Tab reaches the skip
// link first and then the nav links, each with a visible focus, and Enter on a nav link
// navigates (focus moves to the new page's heading); the live indicator goes offline when
// baton stops and back to live when it restarts on the same port with the same store, and
// a task created before the page reconnected appears without a reload. Screenshots of the
// board, agents and costs (and the board on a phone and in dark mode) for docs/dashboard.md.
import {
  TOKENS, test, go, card, until, createTask, taskReaches, pendingApproval, markWindow, noReload,
} from './harness.mjs';

const NAV = ['#/board', '#/approvals', '#/workflows', '#/agents', '#/costs'];

// hash -> the selector that says the page has rendered its data.
function pages(taskId) {
  return [
    ['board', '#/board', '[data-testid=board][data-loaded=true]'],
    ['approvals', '#/approvals', '[data-testid=approvals] article[data-testid=approval]'],
    ['workflows', '#/workflows', 'svg[data-testid=wf-overview] g[data-testid=wf-node]'],
    ['agents', '#/agents', 'tr[data-testid=agent-row][data-agent=demo]'],
    ['costs', '#/costs', 'svg[data-testid=chart-spend-day]'],
    ['run', `#/task/${taskId}`, '[data-testid=run-view] li[data-testid=step]'],
  ];
}

// Is the focused element's focus visible (an outline or a box-shadow)?
async function focusInfo(page) {
  return page.evaluate(() => {
    const el = document.activeElement;
    if (!el || el === document.body) return null;
    const cs = getComputedStyle(el);
    const outline = cs.outlineStyle !== 'none' && parseFloat(cs.outlineWidth) > 0;
    const shadow = cs.boxShadow && cs.boxShadow !== 'none';
    return {
      tag: el.tagName.toLowerCase(), href: el.getAttribute('href'), text: (el.textContent || '').trim(),
      visible: outline || shadow, inNav: !!el.closest('nav[aria-label=Main]'),
    };
  });
}

await test('dashboard_pages', { timeout: 58000 }, async (t) => {
  const s = await t.server({ local: 1, speed: 0 });
  const done = await createTask(s, { title: 'Add a /healthz endpoint', workflow: 'quick', labels: ['api'] });
  await taskReaches(s, done.id, ['completed']);
  const bad = await createTask(s, { title: 'Migrate the config loader', workflow: 'broken', labels: ['config'] });
  await taskReaches(s, bad.id, ['failed']);
  const gated = await createTask(s, { title: 'Ship the release notes', workflow: 'gated', labels: ['docs'] });
  await pendingApproval(s, gated.id);
  await createTask(s, { title: 'Refactor the HTTP client retries', workflow: 'quick', labels: ['http'] });
  await createTask(s, { title: 'Draft: rate-limit the webhook endpoint', workflow: 'quick', draft: true });

  const { page } = await t.browser();
  await t.login(page, s, TOKENS.write);
  await page.locator('[data-testid=board][data-loaded=true]').waitFor();

  // Keyboard, from a fresh load (the token stays in the tab's sessionStorage).
  const endReload = t.guard.allow(/request failed: GET \S+\/api\/events\S* net::ERR_ABORTED/);
  await page.reload();
  await page.locator('[data-testid=board][data-loaded=true]').waitFor();
  endReload();
  await page.keyboard.press('Tab');
  const first = await focusInfo(page);
  t.check(first && first.tag === 'a' && /skip/i.test(first.text) && first.visible,
    `the first Tab focuses the skip link, visibly (${JSON.stringify(first)})`);
  const seen = [];
  const invisible = [];
  for (let i = 0; i < 12 && seen.length < NAV.length; i++) {
    await page.keyboard.press('Tab');
    const f = await focusInfo(page);
    if (!f) continue;
    if (!f.visible) invisible.push(f.text || f.tag);
    if (f.inNav && NAV.includes(f.href)) seen.push(f.href);
  }
  t.check(JSON.stringify(seen) === JSON.stringify(NAV), `Tab then reaches the nav links in order (${seen})`);
  t.check(invisible.length === 0, `every element Tab reached shows its focus (not: ${invisible})`);
  // Back to the Workflows link, then Enter.
  await page.locator('nav a[href="#/workflows"]').focus();
  await page.keyboard.press('Enter');
  await page.locator('[data-testid=workflows]').waitFor();
  t.check((await page.evaluate(() => location.hash)) === '#/workflows', 'Enter on a nav link navigates');
  await until(async () => page.evaluate(() => document.activeElement?.tagName === 'H1'), 'focus on the h1');
  t.check(true, 'after navigating, focus is on the page\'s heading');
  t.check(await page.locator('nav a[href="#/workflows"][aria-current=page]').count() === 1,
    'the active nav link has aria-current=page');

  // Every page, in both sizes and both themes.
  const combos = [
    { w: 1280, h: 800, scheme: 'light' }, { w: 1280, h: 800, scheme: 'dark' },
    { w: 390, h: 844, scheme: 'light' }, { w: 390, h: 844, scheme: 'dark' },
  ];
  const themeBg = {};
  for (const c of combos) {
    await page.setViewportSize({ width: c.w, height: c.h });
    await page.emulateMedia({ colorScheme: c.scheme });
    for (const [name, hash, ready] of pages(gated.id)) {
      const tag = `${name} at ${c.w}px ${c.scheme}`;
      await go(page, hash);
      try {
        await page.locator(ready).first().waitFor();
      } catch (e) {
        t.check(false, `${tag}: the page renders its data (${ready})`);
        continue;
      }
      const h1 = (await page.locator('main h1').first().textContent() || '').trim();
      const title = await page.title();
      t.check(h1.length > 0 && /· baton$/.test(title), `${tag}: heading "${h1}", title "${title}"`);
      await page.waitForTimeout(50);
      const ov = await page.evaluate(() => ({
        sw: document.documentElement.scrollWidth, iw: window.innerWidth,
      }));
      t.check(ov.sw <= ov.iw, `${tag}: no horizontal page scroll (scrollWidth ${ov.sw} <= ${ov.iw})`);
      if (name === 'board') {
        themeBg[c.scheme] = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
      }
      const docName = c.w === 1280 && c.scheme === 'light' && ['board', 'agents', 'costs'].includes(name) ? name
        : name === 'board' && c.w === 390 && c.scheme === 'light' ? 'board-phone'
          : name === 'board' && c.w === 1280 && c.scheme === 'dark' ? 'board-dark' : null;
      if (docName) await t.docShot(page, docName);
      else await t.shot(page, `${name}-${c.w}-${c.scheme}`);
    }
  }
  t.check(themeBg.light && themeBg.dark && themeBg.light !== themeBg.dark,
    `the dark scheme changes the page's colours (${themeBg.light} / ${themeBg.dark})`);

  // Live indicator: offline while baton is down; live again after a restart on the same
  // port with the same store; a task created before the page reconnected shows up.
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.emulateMedia({ colorScheme: 'light' });
  await go(page, '#/board');
  await page.locator('[data-testid=board][data-loaded=true]').waitFor();
  await markWindow(page);
  const conn = page.locator('[data-testid=conn]');
  await until(async () => (await conn.getAttribute('data-state')) === 'live', 'conn live');
  const endOutage = t.guard.allow(/ERR_CONNECTION_REFUSED|ERR_EMPTY_RESPONSE|ERR_INCOMPLETE_CHUNKED_ENCODING|ERR_CONNECTION_RESET|ERR_ABORTED|Failed to load resource: net::/);
  const port = s.port;
  t.check(await s.stop() === 0, 'baton stops cleanly with the page connected');
  const states = new Set();
  await until(async () => {
    states.add(await conn.getAttribute('data-state'));
    return states.has('offline');
  }, 'conn offline', 8000).catch(() => {});
  t.check(states.has('offline'), `the live indicator goes offline while baton is down (seen: ${[...states]})`);
  await s.start();
  t.check(s.port === port, `baton restarted on the same port ${port}`);
  const stateAtCreate = await conn.getAttribute('data-state');
  const late = await createTask(s, { title: 'Created while the page was disconnected', draft: true });
  t.check(stateAtCreate !== 'live', `the task was created before the page reconnected (state ${stateAtCreate})`);
  await until(async () => (await conn.getAttribute('data-state')) === 'live', 'conn live again', 15000);
  t.check(true, 'the live indicator is live again after the restart');
  await card(page, late.id).waitFor({ timeout: 10000 });
  t.check(true, 'the task created while the page was disconnected appeared without a reload');
  endOutage();
  t.check(await noReload(page), 'the page did not reload across the restart');
});
