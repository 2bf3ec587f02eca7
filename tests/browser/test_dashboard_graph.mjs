// test_dashboard_graph.mjs - the Workflows page: a workflow with a sub-workflow shows both,
// linked (the parent's execute-workflow step node carries a link to the child, and following
// it shows the child's steps; the overview has the parent -> child edge), and seed 001's
// built-in wf0-wf17 overview has every workflow as a node and exactly the edges GET
// /api/workflow/structure reports (fetched from the page), with no two nodes overlapping.
import { TOKENS, test, go, until } from './harness.mjs';

await test('dashboard_graph', { timeout: 50000 }, async (t) => {
  const s = await t.server({ local: 0 });
  const { page } = await t.browser();
  await t.login(page, s, TOKENS.read);
  await page.locator('[data-testid=board][data-loaded=true]').waitFor();
  await page.locator('nav a[href="#/workflows"]').click();
  await page.locator('[data-testid=workflows]').waitFor();
  const ov = page.locator('svg[data-testid=wf-overview]');
  await ov.waitFor();

  // The structure, as the page's own token sees it.
  const st = await page.evaluate(async () => {
    const r = await fetch('/api/workflow/structure', {
      headers: { Authorization: `Bearer ${sessionStorage.getItem('baton.token')}` },
    });
    return r.json();
  });
  const apiIds = st.workflows.map((w) => w.id).sort();
  const apiEdges = [...new Set(st.edges.map((e) => `${e.from}>${e.to}`))].sort();
  await until(async () => (await ov.locator('g[data-testid=wf-node]').count()) >= apiIds.length,
    'every workflow node in the overview');
  const nodeIds = (await ov.locator('g[data-testid=wf-node]').evaluateAll(
    (els) => els.map((e) => e.dataset.workflowId))).sort();
  t.check(JSON.stringify([...new Set(nodeIds)]) === JSON.stringify(apiIds),
    `the overview has one node per workflow (${nodeIds.length} nodes, ${apiIds.length} workflows)`);
  const domEdges = [...new Set(await ov.locator('path[data-testid=wf-edge]').evaluateAll(
    (els) => els.map((e) => `${e.dataset.from}>${e.dataset.to}`)))].sort();
  const missing = apiEdges.filter((e) => !domEdges.includes(e));
  const extra = domEdges.filter((e) => !apiEdges.includes(e));
  t.check(missing.length === 0 && extra.length === 0,
    `the overview draws exactly the structure's ${apiEdges.length} edges (missing: ${missing}; extra: ${extra})`);
  t.check(apiEdges.includes('parent>gated') && domEdges.includes('parent>gated'),
    'the overview has the edge parent -> gated');
  const seed001 = Array.from({ length: 18 }, (_, i) => `wf${i}`);
  t.check(seed001.every((id) => nodeIds.includes(id)), 'seed 001\'s wf0-wf17 are all in the overview');
  const wfEdges = apiEdges.filter((e) => e.startsWith('wf'));
  t.check(wfEdges.length >= 10 && wfEdges.every((e) => domEdges.includes(e)),
    `seed 001's sub-workflow calls are drawn (${wfEdges.length} edges among wf0-wf17)`);
  // Readable: no two workflow nodes overlap.
  const boxes = await ov.locator('g[data-testid=wf-node]').evaluateAll((els) => els.map((e) => {
    const r = e.getBoundingClientRect();
    return { id: e.dataset.workflowId, x: r.x, y: r.y, w: r.width, h: r.height };
  }));
  const overlaps = [];
  for (let i = 0; i < boxes.length; i++) {
    for (let j = i + 1; j < boxes.length; j++) {
      const a = boxes[i];
      const b = boxes[j];
      if (a.x < b.x + b.w - 1 && b.x < a.x + a.w - 1 && a.y < b.y + b.h - 1 && b.y < a.y + a.h - 1) {
        overlaps.push(`${a.id}/${b.id}`);
      }
    }
  }
  t.check(boxes.every((b) => b.w > 20 && b.h > 10) && overlaps.length === 0,
    `no two workflow nodes overlap (${overlaps.slice(0, 5)})`);

  // The parent's graph: its execute-workflow step links to the child; following the link
  // shows the child's steps.
  await page.locator('a[data-testid=wf-item][data-workflow-id=parent]').click();
  const pg = page.locator('svg[data-testid=workflow-graph][data-workflow-id=parent]');
  await pg.waitFor();
  t.check((await page.evaluate(() => location.hash)) === '#/workflows/parent', 'the list item opens #/workflows/parent');
  const call = pg.locator('g[data-testid=step-node][data-step=call-gated]');
  t.check(await call.getAttribute('data-kind') === 'execute-workflow',
    'the parent\'s call-gated step is drawn as an execute-workflow node');
  t.check(await pg.locator('g[data-testid=step-node][data-step=prepare][data-kind=shell-command]').count() === 1,
    'the parent\'s shell step is drawn as a shell-command node');
  const link = call.locator('a[data-testid=subworkflow-link]');
  t.check(await link.getAttribute('data-target') === 'gated', 'the execute-workflow node links to the child, gated');
  await link.click();
  const cg = page.locator('svg[data-testid=workflow-graph][data-workflow-id=gated]');
  await cg.waitFor();
  t.check((await page.evaluate(() => location.hash)) === '#/workflows/gated', 'following the link opens #/workflows/gated');
  const kinds = await cg.locator('g[data-testid=step-node]').evaluateAll(
    (els) => els.map((e) => `${e.dataset.step}:${e.dataset.kind}`));
  t.check(JSON.stringify(kinds) === JSON.stringify(['implement:agent', 'sign-off:approval', 'ship:shell-command']),
    `the child's graph shows its agent, approval and shell steps in order (${kinds})`);

  // Seed 001's master workflow: each of its calls is a node linking to the callee.
  await go(page, '#/workflows/wf0');
  const g0 = page.locator('svg[data-testid=workflow-graph][data-workflow-id=wf0]');
  await g0.waitFor();
  const targets = (await g0.locator('a[data-testid=subworkflow-link]').evaluateAll(
    (els) => els.map((e) => e.dataset.target))).sort();
  const want = [...new Set(st.edges.filter((e) => e.from === 'wf0').map((e) => e.to))].sort();
  t.check(want.length > 0 && JSON.stringify([...new Set(targets)]) === JSON.stringify(want),
    `wf0's graph links to each workflow it calls (${want})`);
  await t.docShot(page, 'workflows');
});
