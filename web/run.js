// run.js - the run view (placeholder while the full view is written).
import { h } from './lib.js';

const page = (id) => ({
  id, title: 'Run', nav: false,
  mount(el, ctx, arg) {
    el.append(h('h1', null, 'Run'), h('div', { 'data-testid': 'run-view' }, arg));
  },
});
export default page('task');
export const runPage = page('run');
