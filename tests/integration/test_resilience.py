#!/usr/bin/env python3
"""Resilience through the real daemon (issue 7 acceptance: fallback, circuit breaker,
rate limits) with fake CLIs this test writes and OpenAI-compatible agents at the fake
LLM server (tests/fakes/llm_server.py):

a. a CLI that crashes (SIGSEGV) with `fallback: [api]`: the run completes, the step row
   says agent api, fallback_from the CLI; the CLI ran in the task's workspace (its
   marker file is there) and the HTTP agent's reply is the output;
b. an HTTP primary answering 401 with a CLI fallback: no fallback (the CLI never runs),
   the run fails with the 401;
c. both failing (the CLI crashes, the endpoint answers 500 through its retries): the
   error names both agents;
d. a breaker with failure_threshold 3 and recovery_timeout 2s: three failed runs open
   it (GET /api/agents, GET /api/agents/{name}); the next run does not invoke the agent
   and its fallback answers; after the timeout exactly one of three concurrent calls is
   the probe, and its success closes the breaker; `baton agents` (against the same
   store) shows the history; /metrics has the calls and the breaker state;
e. a provider limited to 10 requests per 3 s under a burst of 50 tasks: the fake never
   sees more than 10 requests in any 3 s window, all 50 complete, and the wait was
   visible (GET /api/agents "waiting", or agent.rate_limited events).
"""
import json
import os
import re
import sqlite3
import stat
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check  # noqa: E402

FINAL = ("completed", "failed", "cancelled")


def write_exe(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def read_lines(path):
    try:
        with open(path) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def count_lines(path):
    return len(read_lines(path))


def make_clis(tmp):
    """The fake CLIs (generic programs: the answer is stdout). Each appends its working
    directory to TMP/marks/NAME.log when invoked, so the test counts invocations and
    sees where they ran."""
    bind, marks = os.path.join(tmp, "bin"), os.path.join(tmp, "marks")
    os.makedirs(bind)
    os.makedirs(marks)
    write_exe(os.path.join(bind, "crashy"), f"""#!/bin/sh
pwd >> {marks}/crashy.log
echo "crashy was here" > crashy-marker.txt
echo "starting work"
kill -SEGV $$
""")
    write_exe(os.path.join(bind, "witness"), f"""#!/bin/sh
pwd >> {marks}/witness.log
echo "witness answer"
""")
    # flaky: crashes while TMP/flaky.mode says crash; otherwise answers after a pause
    # long enough for concurrent calls to find its half-open probe still out
    write_exe(os.path.join(bind, "flaky"), f"""#!/bin/sh
pwd >> {marks}/flaky.log
if [ "$(cat {tmp}/flaky.mode)" = crash ]; then kill -SEGV $$; fi
sleep 1.5
echo "flaky answer"
""")
    write_exe(os.path.join(bind, "backup"), f"""#!/bin/sh
pwd >> {marks}/backup.log
echo "backup answer"
""")
    with open(os.path.join(tmp, "flaky.mode"), "w") as f:
        f.write("crash\n")
    return bind, marks


def config(tmp, bind, urls):
    return f"""
log: {{level: warn}}
server: {{rate_limit: {{requests: 0}}}}
queue: {{max_attempts: 1}}
concurrency: {{global: 60, local: 60}}
offline: {{mode: off}}
workspace: {{root: {tmp}/ws}}
workflows_dir: {tmp}/workflows
agents:
  crashy: {{type: cli, command: {bind}/crashy, timeout: 30s}}
  witness: {{type: cli, command: {bind}/witness, timeout: 30s}}
  backup: {{type: cli, command: {bind}/backup, timeout: 30s}}
  flaky:
    type: cli
    command: {bind}/flaky
    timeout: 30s
    circuit_breaker: {{failure_threshold: 3, recovery_timeout: 2s}}
  api: {{type: openai, base_url: {urls['ok']}/v1, model: fake-ok}}
  api401: {{type: openai, base_url: {urls['401']}/v1, model: fake-401}}
  api500: {{type: openai, base_url: {urls['500']}/v1, model: fake-500}}
  limited: {{type: openai, base_url: {urls['rate']}/v1, model: fake-rate, provider: fakeai}}
providers:
  fakeai: {{requests: 10, per: 3s}}
"""


WORKFLOWS = {
    "crash-fallback": "  - {id: work, agent: crashy, role: implement, fallback: [api]}",
    "auth-fail": "  - {id: work, agent: api401, role: implement, fallback: [witness]}",
    "both-fail": "  - {id: work, agent: crashy, role: implement, fallback: [api500]}",
    "flaky-only": "  - {id: work, agent: flaky, role: implement}",
    "flaky-fb": "  - {id: work, agent: flaky, role: implement, fallback: [backup]}",
    "limited": "  - {id: work, agent: limited, role: review}",
}


def write_workflows(tmp):
    d = os.path.join(tmp, "workflows")
    os.makedirs(d)
    for wid, step in WORKFLOWS.items():
        with open(os.path.join(d, wid + ".yaml"), "w") as f:
            f.write(f"metadata: {{id: {wid}, name: {wid}}}\nmax_iterations: 1\nsteps:\n{step}\n")


# ---- helpers over the API -----------------------------------------------------------

def submit(srv, workflow, title=None):
    st, t = srv.request("POST", "/api/tasks", {"title": title or f"{workflow} task",
                                               "workflow": workflow})
    if not check(st == 201, f"task for {workflow} created ({st} {str(t)[:200]})"):
        return None
    return t["id"]


def wait_task(srv, tid, timeout=40):
    deadline = time.time() + timeout
    t = {}
    while time.time() < deadline:
        st, t = srv.request("GET", f"/api/tasks/{tid}")
        if st == 200 and t.get("status") in FINAL:
            return t
        time.sleep(0.05)
    return t if isinstance(t, dict) else {}


def run_one(srv, workflow):
    tid = submit(srv, workflow)
    return wait_task(srv, tid) if tid else {}


def steps_of(srv, tid):
    st, j = srv.request("GET", "/api/runs?task_id=" + tid)
    runs = j.get("runs") if st == 200 and isinstance(j, dict) else None
    if not runs:
        return []
    st, j = srv.request("GET", "/api/runs/%s/steps" % runs[0]["id"])
    return j.get("steps", []) if st == 200 else []


def agents_by_name(srv):
    st, doc = srv.request("GET", "/api/agents")
    if st != 200 or not isinstance(doc, dict):
        return {}, {}
    return {a["name"]: a for a in doc.get("agents", [])}, doc


def breaker_state(a):
    return ((a or {}).get("breaker") or {}).get("state")


def model_posts(fk):
    st, log = fk.control("GET", "/_control/requests")
    return [r for r in log if r["method"] == "POST" and r["path"].endswith("/chat/completions")]


# ---- a, b, c: fallback ----------------------------------------------------------------

def test_fallback(tmp, srv, fakes, marks):
    # a. the CLI crashes, the HTTP fallback answers
    t = run_one(srv, "crash-fallback")
    check(t.get("status") == "completed",
          f"a: a crashing CLI with fallback [api] completes ({t.get('status')}: {t.get('error')})")
    steps = steps_of(srv, t.get("id", ""))
    s = steps[-1] if steps else {}
    check(s.get("agent") == "api" and s.get("fallback_from") == "crashy",
          f"a: the step row says agent api, fallback_from crashy ({s.get('agent')}, "
          f"{s.get('fallback_from')})")
    check("fake reply to:" in (s.get("output") or ""),
          f"a: the fallback's reply is the step's output ({(s.get('output') or '')[:80]!r})")
    ran = read_lines(os.path.join(marks, "crashy.log"))
    wsroot = os.path.realpath(os.path.join(tmp, "ws"))
    cwd = os.path.realpath(ran[-1]) if ran else ""
    check(len(ran) == 1 and cwd.startswith(wsroot + os.sep),
          f"a: the crashing CLI ran once, in a workspace under workspace.root ({ran})")
    check(cwd != "" and os.path.exists(os.path.join(cwd, "crashy-marker.txt")),
          "a: the file it wrote before crashing is in that workspace")
    check(len(model_posts(fakes["ok"])) >= 1, "a: the fallback endpoint was called")

    # b. a 401 is permanent: no fallback
    t = run_one(srv, "auth-fail")
    check(t.get("status") == "failed", f"b: a 401 fails the run ({t.get('status')})")
    err = t.get("error") or ""
    check("401" in err, f"b: the error is the 401 ({err[:200]!r})")
    check(count_lines(os.path.join(marks, "witness.log")) == 0,
          "b: the CLI fallback never ran (no marker)")
    check(len(model_posts(fakes["401"])) == 1,
          f"b: the 401 was not retried ({len(model_posts(fakes['401']))} requests)")

    # c. both fail: the error names both agents
    t = run_one(srv, "both-fail")
    check(t.get("status") == "failed", f"c: both failing fails the run ({t.get('status')})")
    err = t.get("error") or ""
    check("crashy" in err and "api500" in err,
          f"c: the error names both agents ({err[:300]!r})")
    check("500" in err and ("signal" in err or "SEGV" in err or "crash" in err),
          f"c: ... with each one's error ({err[:300]!r})")
    check(len(model_posts(fakes["500"])) >= 2,
          f"c: the 500 was retried before giving up ({len(model_posts(fakes['500']))} requests)")
    check(count_lines(os.path.join(marks, "crashy.log")) == 2,
          "c: the crashing CLI ran before the HTTP fallback")


# ---- d: circuit breaker -----------------------------------------------------------------

def test_breaker(tmp, srv, marks):
    flaky_log = os.path.join(marks, "flaky.log")
    backup_log = os.path.join(marks, "backup.log")
    for i in range(3):
        t = run_one(srv, "flaky-only")
        check(t.get("status") == "failed", f"d: flaky run {i + 1} fails ({t.get('status')})")
    check(count_lines(flaky_log) == 3, f"d: flaky ran 3 times ({count_lines(flaky_log)})")
    by, _ = agents_by_name(srv)
    fl = by.get("flaky", {})
    check(breaker_state(fl) == "open",
          f"d: after 3 failures GET /api/agents shows flaky open ({fl.get('breaker')})")
    stats = fl.get("stats") or {}
    check(stats.get("failures", 0) >= 3 and stats.get("calls", 0) >= 3,
          f"d: ... with its failures counted ({stats})")
    # open: rejected without being called, the fallback answers
    t = run_one(srv, "flaky-fb")
    steps = steps_of(srv, t.get("id", ""))
    s = steps[-1] if steps else {}
    check(t.get("status") == "completed" and s.get("agent") == "backup"
          and s.get("fallback_from") == "flaky",
          f"d: with the breaker open the fallback answers ({t.get('status')}, {s.get('agent')})")
    check(count_lines(flaky_log) == 3, f"d: ... and flaky was not invoked ({count_lines(flaky_log)})")
    st, one = srv.request("GET", "/api/agents/flaky")
    check(st == 200 and breaker_state(one) == "open" and one.get("name") == "flaky"
          and "available" in one, f"d: GET /api/agents/flaky says open too ({st})")
    st, nf = srv.request("GET", "/api/agents/nobody")
    msg = ((nf or {}).get("error") or {}).get("message", "") if isinstance(nf, dict) else ""
    check(st == 404 and "nobody" in msg and "flaky" in msg,
          f"d: an unknown agent is 404 naming it and the known ones ({msg!r})")


    # half-open after the timeout: exactly one probe among concurrent calls
    with open(os.path.join(tmp, "flaky.mode"), "w") as f:
        f.write("ok\n")
    retry_at = (fl.get("breaker") or {}).get("retry_at")
    wait = (retry_at / 1000.0 - time.time()) if isinstance(retry_at, (int, float)) else 2.0
    time.sleep(min(max(wait, 0), 3.0) + 0.2)
    backups = count_lines(backup_log)
    tids = [submit(srv, "flaky-fb", f"probe {i}") for i in range(3)]
    done = [wait_task(srv, tid) for tid in tids if tid]
    check(all(t.get("status") == "completed" for t in done) and len(done) == 3,
          f"d: the three calls after the timeout complete ({[t.get('status') for t in done]})")
    check(count_lines(flaky_log) == 4,
          f"d: exactly one of them probed flaky ({count_lines(flaky_log) - 3} invocations)")
    check(count_lines(backup_log) - backups == 2,
          f"d: the other two went to the fallback ({count_lines(backup_log) - backups})")
    by, _ = agents_by_name(srv)
    check(breaker_state(by.get("flaky")) == "closed",
          f"d: the probe's success closed the breaker ({by.get('flaky', {}).get('breaker')})")

    st, text = srv.request("GET", "/metrics")
    text = text if isinstance(text, str) else ""
    m = re.search(r'^orchestrator_agent_calls_total\{agent="flaky",outcome="failure"\} (\S+)$',
                  text, re.M)
    check(m is not None and float(m.group(1)) >= 3,
          f"d: /metrics counts flaky's failures ({m.group(0) if m else 'missing'})")
    m = re.search(r'^baton_agent_circuit_state\{agent="flaky"\} (\S+)$', text, re.M)
    check(m is not None and float(m.group(1)) == 0,
          f"d: /metrics has flaky's breaker state, closed again ({m.group(0) if m else 'missing'})")
    m = re.search(r'^baton_agent_circuit_transitions_total\{agent="flaky",to="open"\} (\S+)$',
                  text, re.M)
    check(m is not None and float(m.group(1)) >= 1,
          f"d: /metrics counts the transition to open ({m.group(0) if m else 'missing'})")
    check(re.search(r'^orchestrator_agent_latency_seconds_count\{agent="flaky"\} ', text, re.M)
          is not None and "# HELP baton_agent_circuit_state " in text,
          "d: latency histogram and HELP lines are there")


def test_cli_agents(tmp, cfg_path, db):
    """`baton agents` reads the daemon's store: the same breaker and statistics."""
    r = harness.run(["agents", "--config", cfg_path, "--store", "sqlite:" + db, "--json"])
    try:
        doc = json.loads(r.stdout)
    except ValueError:
        doc = {}
    by = {a["name"]: a for a in doc.get("agents", [])}
    fl = by.get("flaky", {})
    stats = fl.get("stats") or {}
    check(breaker_state(fl) == "closed" and stats.get("calls", 0) >= 4
          and stats.get("failures", 0) >= 3 and stats.get("successes", 0) >= 1,
          f"baton agents --json shows flaky's history from the store ({fl.get('breaker')}, "
          f"{stats}; stderr {r.stderr[-200:]!r})")
    check(set(fl) >= {"name", "role", "type", "available", "provider", "local", "breaker",
                      "stats", "rate_limit"},
          f"... the same fields as GET /api/agents ({sorted(fl)})")
    cr = by.get("crashy", {}).get("stats") or {}
    check(cr.get("calls", 0) >= 2 and (cr.get("error_classes") or {}).get("transient", 0) >= 2,
          f"... crashy's crashes are transient failures ({cr})")
    r = harness.run(["agents", "--config", cfg_path, "--store", "sqlite:" + db])
    head = r.stdout.splitlines()[0] if r.stdout else ""
    row = next((ln for ln in r.stdout.splitlines() if ln.startswith("flaky ")), "")
    check(all(c in head for c in ("BREAKER", "SUCCESS", "CALLS", "P50")),
          f"the table has BREAKER, SUCCESS, CALLS and P50 columns ({head!r})")
    check("closed" in row and re.search(r"\b\d+%", row) is not None,
          f"flaky's row shows its breaker and success rate ({row!r})")
    row = next((ln for ln in r.stdout.splitlines() if ln.startswith("limited ")), "")
    check(re.search(r"\s-\s+0\s+-\s", row) is not None,
          f"an agent without calls shows '-' for its rate and latency ({row!r})")
    # without a store: the static columns and the reason on stderr
    r = harness.run(["agents", "--config", cfg_path, "--store",
                     "sqlite:" + os.path.join(tmp, "missing.db")])
    check("BREAKER" not in r.stdout and "crashy" in r.stdout and "missing.db" in r.stderr
          and not os.path.exists(os.path.join(tmp, "missing.db")),
          f"without a store the table keeps its static columns and says why ({r.stderr!r})")


# ---- e: rate limit ------------------------------------------------------------------------

def test_rate_limit(srv, fk, db):
    fk.control("POST", "/_control/reset")
    tids = []
    for i in range(50):
        st, t = srv.request("POST", "/api/tasks", {"title": f"burst {i}", "workflow": "limited"})
        if st == 201:
            tids.append(t["id"])
    check(len(tids) == 50, f"e: 50 tasks submitted ({len(tids)})")
    max_waiting = 0
    deadline = time.time() + 40
    pending = set(tids)
    while pending and time.time() < deadline:
        by, doc = agents_by_name(srv)
        w = ((by.get("limited") or {}).get("rate_limit") or {}).get("waiting", 0) or 0
        pw = (((doc or {}).get("providers") or {}).get("fakeai") or {}).get("waiting", 0) or 0
        max_waiting = max(max_waiting, w, pw)
        for tid in list(pending):
            st, t = srv.request("GET", f"/api/tasks/{tid}")
            if st == 200 and t.get("status") in FINAL:
                pending.discard(tid)
                if t.get("status") != "completed":
                    check(False, f"e: task {tid} {t.get('status')}: {t.get('error')}")
        time.sleep(0.3)
    check(not pending, f"e: all 50 tasks completed ({50 - len(pending)} of 50)")
    times = sorted(r["time"] for r in model_posts(fk))
    check(len(times) == 50, f"e: the fake saw 50 model requests ({len(times)})")
    # the fake stamps arrival, a few ms after baton sends: allow 50 ms of jitter
    worst = max((sum(1 for u in times[i:] if u - t < 3.0 - 0.05) for i, t in enumerate(times)),
                default=0)
    check(worst <= 10, f"e: no 3 s window holds more than 10 requests (worst {worst})")
    span = times[-1] - times[0] if times else 0
    check(span >= 12 - 0.2, f"e: the 50 requests were spread over at least 12 s ({span:.1f} s)")
    c = sqlite3.connect(db, timeout=10)
    try:
        n = c.execute("SELECT count(*) FROM events WHERE type = 'agent.rate_limited'").fetchone()[0]
    finally:
        c.close()
    check(max_waiting > 0 or n > 0,
          f"e: the wait was visible (max waiting in /api/agents {max_waiting}, "
          f"{n} agent.rate_limited events)")
    st, text = srv.request("GET", "/metrics")
    m = re.search(r'^baton_agent_rate_limited_total\{agent="limited",provider="fakeai"\} (\S+)$',
                  text if isinstance(text, str) else "", re.M)
    check(m is not None and float(m.group(1)) >= 1,
          f"e: /metrics counts the waits ({m.group(0) if m else 'missing'})")


def main():
    tmp = tempfile.mkdtemp(prefix="baton-resil-")
    fakes = {k: harness.fake("llm_server.py") for k in ("ok", "401", "500", "rate")}
    srv = None
    try:
        fakes["401"].control("POST", "/_control/script",
                             {"path": "*", "actions": [{"status": 401, "times": 1000}]})
        fakes["500"].control("POST", "/_control/script",
                             {"path": "*", "actions": [{"status": 500, "times": 1000,
                                                        "headers": {"Retry-After": "0"}}]})
        bind, marks = make_clis(tmp)
        write_workflows(tmp)
        cfg_text = config(tmp, bind, {k: f.url for k, f in fakes.items()})
        srv = harness.serve(tmp, cfg_text, "resil")
        cfg_path = os.path.join(tmp, "resil.yaml")
        db = os.path.join(tmp, "resil.db")
        test_fallback(tmp, srv, fakes, marks)
        test_breaker(tmp, srv, marks)
        test_cli_agents(tmp, cfg_path, db)
        test_rate_limit(srv, fakes["rate"], db)
        rc = srv.stop()
        srv = None
        check(rc == 0, f"baton serve shuts down cleanly (rc {rc})")
    finally:
        if srv:
            srv.stop()
        for f in fakes.values():
            f.stop()
    harness.finish()


if __name__ == "__main__":
    main()
