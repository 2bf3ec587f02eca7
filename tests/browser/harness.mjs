// harness.mjs - what every browser test of the dashboard shares: the real `baton serve` on a
// free port with a fresh SQLite store in a temp dir, Debian's chromium driven by
// playwright-core (fresh user-data-dir, headless), a console guard (errors, warnings, page
// exceptions, failed requests and HTTP errors fail the test unless the test provoked them),
// screenshots, a per-test watchdog, and ok/FAIL checks with a closing "N passed, N failed".
//
// Environment (ctest sets the first two, see tests/CMakeLists.txt):
//   BATON_BINARY        the baton executable        BATON_SOURCE_DIR   the source tree
//   BATON_BROWSER_OUT   where screenshots go (default ./browser-shots)
//   BATON_CHROMIUM      the browser (default /usr/bin/chromium)
//   BATON_SKIP_BROWSER=1  exit 77 (skip) instead of failing when chromium or
//                         playwright-core is missing
//   BATON_UPDATE_SCREENSHOTS=1  also write docs/img/dashboard-<name>.png
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const SRC = process.env.BATON_SOURCE_DIR || path.resolve(here, '..', '..');
export const BATON = process.env.BATON_BINARY || 'baton';
export const CHROMIUM = process.env.BATON_CHROMIUM || '/usr/bin/chromium';
export const SKIP = 77;
const OUT = path.resolve(process.env.BATON_BROWSER_OUT || 'browser-shots');

// Tokens of every test configuration (see config()).
export const TOKENS = {
  write: 'dash-write-token-0123456789',
  read: 'dash-read-token-0123456789',
  worker: 'dash-worker-token-0123456789',
};

const LAUNCH_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'];

function missing(what) {
  const msg = `${what}; run scripts/install-deps.sh --test to install the browser tests' ` +
    'dependencies (Debian chromium, Node.js, playwright-core in tests/browser)';
  if (process.env.BATON_SKIP_BROWSER === '1') {
    console.log(`SKIP: ${msg} (BATON_SKIP_BROWSER=1)`);
    process.exit(SKIP);
  }
  console.log(`FAIL: ${msg}`);
  process.exit(1);
}

// playwright-core from tests/browser/node_modules, at the version package.json pins.
async function loadPlaywright() {
  const dir = path.join(SRC, 'tests', 'browser', 'node_modules', 'playwright-core');
  let want;
  let have;
  try {
    want = JSON.parse(fs.readFileSync(path.join(SRC, 'tests', 'browser', 'package.json')))
      .dependencies['playwright-core'];
    have = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'))).version;
  } catch {
    missing(`playwright-core is not installed in ${path.dirname(dir)}`);
  }
  if (have !== want) missing(`playwright-core ${have} is installed but package.json pins ${want}`);
  return (await import(path.join(dir, 'index.mjs'))).chromium;
}

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

// Poll fn until it returns a truthy value (returned), or throw naming what after timeout.
export async function until(fn, what, timeout = 15000, every = 100) {
  const end = Date.now() + timeout;
  let last;
  while (Date.now() < end) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    await sleep(every);
  }
  throw new Error(`gave up waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
}

// ---- baton serve ----

function cleanEnv() {
  const drop = ['ORCHESTRATOR_', 'DATABASE_URL', 'BATON_CONFIG', 'JWT_SECRET', 'GITHUB_',
    'LOG_LEVEL', 'OPENAI_', 'ANTHROPIC_', 'OLLAMA_', 'OPENHANDS_', 'LLM_', 'BATON_LOCAL_RUNS'];
  const e = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!drop.some((p) => k.startsWith(p))) e[k] = v;
  }
  e.BATON_OFFLINE = 'off';
  return e;
}

export class Server {
  constructor(dir, cfgPath, name) {
    this.dir = dir;
    this.cfgPath = cfgPath;
    this.name = name;
    this.port = 0;
    this.proc = null;
    this.errPath = path.join(dir, `${name}.err`);
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  // Start (or restart on the same port with the same store); resolves once it listens.
  async start() {
    const err = fs.openSync(this.errPath, 'a');
    const args = ['serve', '--port', String(this.port), '--config', this.cfgPath,
      '--store', 'sqlite:' + path.join(this.dir, `${this.name}.db`)];
    const p = spawn(BATON, args, { cwd: this.dir, env: cleanEnv(), stdio: ['ignore', 'pipe', err] });
    fs.closeSync(err);
    this.proc = p;
    this.exit = new Promise((r) => p.on('exit', (code, sig) => r(sig ? `signal ${sig}` : code)));
    let buf = '';
    const port = await new Promise((resolve) => {
      const t = setTimeout(() => resolve(0), 20000);
      p.stdout.on('data', (d) => {
        buf += d;
        const m = /listening on http:\/\/[^:]+:(\d+)/.exec(buf);
        if (m) {
          clearTimeout(t);
          resolve(Number(m[1]));
        }
      });
      p.on('exit', () => resolve(0));
    });
    if (!port) {
      p.kill('SIGKILL');
      throw new Error(`baton serve did not start:\n${this.stderr()}`);
    }
    this.port = port;
    return this;
  }

  stderr() {
    try {
      return fs.readFileSync(this.errPath, 'utf8');
    } catch {
      return '';
    }
  }

  // SIGTERM; resolves with the exit code (a string for a signal, -9 after a forced kill).
  async stop(timeout = 20000) {
    const p = this.proc;
    if (!p) return 0;
    this.proc = null;
    if (p.exitCode === null && p.signalCode === null) p.kill('SIGTERM');
    const t = sleep(timeout).then(() => 'timeout');
    const code = await Promise.race([this.exit, t]);
    if (code === 'timeout') {
      p.kill('SIGKILL');
      await this.exit;
      return -9;
    }
    return code;
  }

  kill() {
    if (this.proc) this.proc.kill('SIGKILL');
  }

  // The API from node: {status, body} (body parsed as JSON when it is JSON).
  async api(method, p, body, token = TOKENS.write) {
    const headers = {};
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const r = await fetch(this.url + p, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    let parsed = text;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch { /* not JSON */ }
    return { status: r.status, body: parsed };
  }

  // The same, but a non-2xx answer throws with baton's message.
  async ok(method, p, body, token) {
    const r = await this.api(method, p, body, token);
    if (r.status >= 300) {
      throw new Error(`${method} ${p} -> ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`);
    }
    return r.body;
  }
}

// ---- test configuration ----

// Workflows every test may use (workflows_dir): an agent step (the replay) -> approval gate
// -> shell step; a parent that calls it; a quick one-step shell; one that always fails.
export const WORKFLOWS = {
  'gated.yaml': `metadata:
  id: gated
  name: Implement and sign off
  description: the replayed agent implements, a person approves, a shell step ships
steps:
  - id: implement
    agent: demo
    role: implement
  - id: sign-off
    action: approval
    inputs:
      prompt: "Ship {{ task.title }}?"
  - id: ship
    action: shell-command
    inputs:
      command: echo shipped
`,
  'parent.yaml': `metadata:
  id: parent
  name: Parent of gated
  description: calls the gated workflow as a sub-workflow
steps:
  - id: prepare
    action: shell-command
    inputs:
      command: echo preparing
  - id: call-gated
    action: execute-workflow
    workflow: gated
`,
  'quick.yaml': `metadata:
  id: quick
  name: Quick
steps:
  - id: hello
    action: shell-command
    inputs:
      command: echo hello from quick
`,
  'broken.yaml': `metadata:
  id: broken
  name: Always fails
steps:
  - id: fail
    action: shell-command
    inputs:
      command: echo this step fails; exit 3
`,
};

// baton.yaml text for a test directory. opts.local: concurrency.local (0 = nothing runs);
// opts.speed: the replay's speed; opts.extra: appended YAML.
export function config(dir, opts = {}) {
  const wdir = path.join(dir, 'workflows');
  fs.mkdirSync(wdir, { recursive: true });
  for (const [name, text] of Object.entries(WORKFLOWS)) fs.writeFileSync(path.join(wdir, name), text);
  fs.mkdirSync(path.join(dir, 'ws'), { recursive: true });
  const replay = path.join(SRC, 'examples', 'replays', 'demo.jsonl');
  return `server:
  host: 127.0.0.1
  tokens:
    - {name: writer, token: "${TOKENS.write}", scopes: [read, write]}
    - {name: reader, token: "${TOKENS.read}", scopes: [read]}
    - {name: worker, token: "${TOKENS.worker}", scopes: [worker]}
  rate_limit: {requests: 0}
workflows_dir: ${wdir}
workspace:
  root: ${path.join(dir, 'ws')}
queue:
  max_attempts: 1
concurrency:
  global: 8
  local: ${opts.local ?? 4}
agents:
  demo:
    type: replay
    file: ${replay}
    speed: ${opts.speed ?? 1}
${opts.extra || ''}`;
}

// ---- the test runner ----

class Checks {
  constructor() {
    this.passed = 0;
    this.failed = [];
  }

  check(cond, what) {
    console.log(`${cond ? 'ok  ' : 'FAIL'} ${what}`);
    if (cond) this.passed++;
    else this.failed.push(what);
    return cond;
  }
}

// A console guard on a browser context: every console error/warning, page exception, failed
// request and HTTP answer >= 400 is a problem, unless allow() matched it.
class Guard {
  constructor() {
    this.problems = [];
    this.allowed = [];
  }

  // Allow problems whose text matches re (a RegExp) - for failures a test provokes.
  // Returns a function that ends the allowance.
  allow(re) {
    const entry = { re };
    this.allowed.push(entry);
    return () => {
      this.allowed = this.allowed.filter((e) => e !== entry);
    };
  }

  note(text) {
    if (this.allowed.some((e) => e.re.test(text))) return;
    this.problems.push(text);
  }

  attach(context) {
    const watch = (page) => {
      page.on('console', (m) => {
        if (m.type() !== 'error' && m.type() !== 'warning') return;
        const loc = m.location();
        this.note(`console.${m.type()}: ${m.text()} (${loc.url || '?'}:${loc.lineNumber ?? ''})`);
      });
      page.on('pageerror', (e) => this.note(`page exception: ${e.stack || e.message}`));
    };
    context.pages().forEach(watch);
    context.on('page', watch);
    context.on('requestfailed', (r) => {
      const f = r.failure();
      // The page aborts its own requests when it is left (ctx.signal) and the live stream
      // when it reconnects: a cancellation, not a failure (and not logged by the browser).
      if (f && f.errorText === 'net::ERR_ABORTED') return;
      this.note(`request failed: ${r.method()} ${r.url()} ${f ? f.errorText : ''}`);
    });
    context.on('response', (r) => {
      if (r.status() >= 400) this.note(`HTTP ${r.status()}: ${r.request().method()} ${r.url()}`);
    });
  }
}

function tmpdir(prefix) {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

// test(name, opts, fn): runs fn(t) with a watchdog; prints the checks and exits.
// opts.timeout (ms, default 55000). t has:
//   t.check(cond, what), t.dir (temp dir), t.server(opts) -> started Server (config(opts)),
//   t.browser(opts) -> {context, page} (opts: viewport, colorScheme), t.guard,
//   t.shot(page, name), t.login(page, server, token), t.page helpers below.
export async function test(name, opts, fn) {
  if (!fs.existsSync(CHROMIUM)) missing(`chromium is not installed at ${CHROMIUM}`);
  const chromium = await loadPlaywright();
  const checks = new Checks();
  const dir = tmpdir(`baton-${name}-`);
  const servers = [];
  const contexts = [];
  const profiles = [];
  const guard = new Guard();
  const started = Date.now();
  const limit = opts.timeout || 55000;
  const watchdog = setTimeout(() => {
    console.log(`FAIL ${name}: watchdog - still running after ${limit} ms; killing everything`);
    for (const s of servers) s.kill();
    process.exit(1); // playwright kills the browsers it launched on exit
  }, limit);

  const t = {
    dir,
    guard,
    check: (c, w) => checks.check(c, w),
    async server(o = {}) {
      const cfg = path.join(dir, `${o.name || 'baton'}.yaml`);
      fs.writeFileSync(cfg, config(dir, o));
      const s = new Server(dir, cfg, o.name || 'baton');
      servers.push(s);
      return s.start();
    },
    async browser(o = {}) {
      const profile = tmpdir('baton-chromium-');
      profiles.push(profile);
      const context = await chromium.launchPersistentContext(profile, {
        executablePath: CHROMIUM,
        headless: true,
        args: LAUNCH_ARGS,
        viewport: o.viewport || { width: 1280, height: 800 },
        colorScheme: o.colorScheme || 'light',
        reducedMotion: 'reduce',
      });
      contexts.push(context);
      guard.attach(context);
      context.setDefaultTimeout(o.timeout || 10000);
      const page = context.pages()[0] || (await context.newPage());
      return { context, page };
    },
    // login(): the prompt, a token, and the prompt gone. GET /api/whoami is public and
    // answers 200 even without a token, so the console guard stays strict throughout.
    async login(page, server, token, hash) {
      const dlg = await login(page, server, token, hash);
      if (token !== undefined) await dlg.waitFor({ state: 'hidden' });
      return dlg;
    },
    shot: (page, shotName) => screenshot(page, `${name}-${shotName}`, shotName),
    // Screenshot with a docs name: docs/img/dashboard-<docName>.png when updating.
    docShot: (page, docName) => screenshot(page, `${name}-${docName}`, docName, true),
  };

  let failure = null;
  try {
    await fn(t);
  } catch (e) {
    failure = e;
  }
  if (failure) checks.check(false, `${name}: ${failure.stack || failure}`);
  checks.check(guard.problems.length === 0,
    `no console errors/warnings, page exceptions or failed requests (${guard.problems.length})`);
  for (const p of guard.problems.slice(0, 30)) console.log(`     ${p}`);
  for (const c of contexts) await c.close().catch(() => {});
  for (const s of servers) {
    if (!s.proc) continue;
    const code = await s.stop();
    checks.check(code === 0, `baton serve exits 0 on SIGTERM (got ${code})`);
    const err = s.stderr();
    const san = /(AddressSanitizer|LeakSanitizer|runtime error:)/.exec(err);
    checks.check(!san, `no sanitizer report in baton's stderr${san ? ':\n' + err.slice(-3000) : ''}`);
  }
  clearTimeout(watchdog);
  if (checks.failed.length) {
    // baton's log without the access log, which would drown everything else
    const err = servers.map((s) => s.stderr()).join('\n').split('\n')
      .filter((l) => !l.includes('"msg":"http request"') || !l.includes('"status":2'))
      .slice(-40).join('\n');
    console.log(`\nbaton's stderr (last lines, no successful requests):\n${err}`);
  }
  for (const d of [dir, ...profiles]) fs.rmSync(d, { recursive: true, force: true });
  console.log(`\n${name}: ${((Date.now() - started) / 1000).toFixed(1)} s`);
  console.log(`${checks.passed} passed, ${checks.failed.length} failed`);
  if (checks.failed.length) {
    console.log('failed:\n  ' + checks.failed.join('\n  '));
    process.exit(1);
  }
  process.exit(0);
}

async function screenshot(page, fileName, docName, forDocs = false) {
  fs.mkdirSync(OUT, { recursive: true });
  const file = path.join(OUT, `${fileName}.png`);
  await page.screenshot({ path: file, animations: 'disabled', caret: 'hide' });
  if (forDocs && process.env.BATON_UPDATE_SCREENSHOTS === '1') {
    const img = path.join(SRC, 'docs', 'img');
    fs.mkdirSync(img, { recursive: true });
    fs.copyFileSync(file, path.join(img, `dashboard-${docName}.png`));
  }
  return file;
}

// ---- page helpers ----

// Open the dashboard and log in through the login dialog with token (or none).
export async function login(page, server, token, hash = '#/board') {
  await page.goto(`${server.url}/${hash}`);
  const dlg = page.locator('dialog[data-testid=login]');
  await dlg.waitFor({ state: 'visible' });
  if (token === undefined) return dlg;
  await dlg.locator('input[name=token]').fill(token);
  await dlg.locator('button[data-testid=login-submit]').click();
  return dlg;
}

// Log in and wait for the board's first render.
export async function loginToBoard(page, server, token) {
  await login(page, server, token);
  await page.locator('dialog[data-testid=login]').waitFor({ state: 'hidden' });
  await page.locator('[data-testid=board][data-loaded=true]').waitFor();
}

// Open a page by hash without reloading (the shell routes on hashchange).
export async function go(page, hash) {
  await page.evaluate((h) => {
    window.location.hash = h;
  }, hash);
}

export function card(page, taskId) {
  return page.locator(`article[data-testid=card][data-task-id="${taskId}"]`);
}

// Mark the window; noReload(page) is true while the mark is still there (no navigation).
export async function markWindow(page) {
  await page.evaluate(() => {
    window.__batonTestMark = 'still-here';
  });
}

export async function noReload(page) {
  return (await page.evaluate(() => window.__batonTestMark)) === 'still-here';
}

// Create a task through the API; returns it.
export async function createTask(server, fields, token = TOKENS.write) {
  return server.ok('POST', '/api/tasks', fields, token);
}

// Wait until the task has one of the statuses (through the API); returns the task.
export async function taskReaches(server, id, statuses, timeout = 20000) {
  return until(async () => {
    const t = await server.ok('GET', `/api/tasks/${id}`);
    return statuses.includes(t.status) ? t : null;
  }, `task ${id} to reach ${statuses.join('|')}`, timeout);
}

// Wait for a pending approval of the task (through the API); returns it.
export async function pendingApproval(server, taskId, timeout = 20000) {
  return until(async () => {
    const r = await server.ok('GET', '/api/approvals?status=pending');
    return r.approvals.find((a) => a.task_id === taskId) || null;
  }, `a pending approval of task ${taskId}`, timeout);
}
