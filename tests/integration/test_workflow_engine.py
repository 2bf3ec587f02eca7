#!/usr/bin/env python3
"""The workflow engine through the real daemon (issue 6 acceptance).

- The built-in `default` workflow runs end to end with replay agents named codex, gemini
  and claude: implement -> review -> refine in order, each step seeing the one before;
  the first review asks for 5 changes, so a second iteration runs; the second asks for 2,
  so the run stops there (seed 004's rule: at most 3).
- SIGKILL of the daemon during step 2 of 3: after a restart step 1 is not run again,
  step 2 is, and step 3 follows.
- An approval step keeps its run paused across a restart; approving it through the API
  lets the run finish. A rejection fails the run.
- Seed 001's README workflow runs through `baton run` with each of its three actions.
- http steps send a rendered JSON body and headers; `expect` decides success.
- A workflows_dir with an unknown variable, an unknown agent and a sub-workflow cycle:
  the daemon refuses to start and names all three problems with file:line:column.
"""
import json
import os
import re
import signal
import sqlite3
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, finish, serve  # noqa: E402


def recording(path, turns):
    """A replay file: one recording per turn (the last repeats)."""
    with open(path, "w") as f:
        for i, (text, tokens) in enumerate(turns):
            f.write(json.dumps({"type": "header", "format": "baton-replay", "version": 1,
                                "agent": "x", "agent_type": "cli", "model": "m",
                                "prompt": "p", "recorded_at": "2026-11-21T00:00:00Z"}) + "\n")
            f.write(json.dumps({"type": "event", "at_ms": 0, "kind": "output",
                                "text": text + "\n"}) + "\n")
            f.write(json.dumps({"type": "result", "success": True, "output": text,
                                "tokens_in": tokens, "tokens_out": tokens // 10,
                                "cost_usd": 0.001 * (i + 1)}) + "\n")


def wait_task(srv, tid, want=("completed", "failed", "cancelled"), timeout=60):
    deadline = time.time() + timeout
    t = None
    while time.time() < deadline:
        st, t = srv.request("GET", f"/api/tasks/{tid}")
        if st == 200 and t.get("status") in want:
            return t
        time.sleep(0.1)
    return t


def create(srv, title, workflow, **extra):
    body = {"title": title, "workflow": workflow}
    body.update(extra)
    st, t = srv.request("POST", "/api/tasks", body)
    check(st == 201, f"task for {workflow} created ({st} {t})")
    return t["id"]


def db_rows(db, sql, *args):
    c = sqlite3.connect(db, timeout=10)
    try:
        return c.execute(sql, args).fetchall()
    finally:
        c.close()


# ---------------------------------------------------------------------------------------
def test_default_iterations(tmp):
    rec = os.path.join(tmp, "rec")
    os.mkdir(rec)
    recording(os.path.join(rec, "codex.jsonl"),
              [("implemented v1", 1000), ("implemented v2", 1100)])
    five = json.dumps({"suggestions": ["a", "b", "c", "d", "e"]})
    two = json.dumps({"suggestions": ["f", "g"]})
    recording(os.path.join(rec, "gemini.jsonl"), [(five, 500), (two, 400)])
    recording(os.path.join(rec, "claude.jsonl"),
              [("refined v1", 700), ("refined v2", 800)])
    cfg = f"""
agents:
  codex: {{type: replay, file: {rec}/codex.jsonl, speed: 0}}
  gemini: {{type: replay, file: {rec}/gemini.jsonl, speed: 0}}
  claude: {{type: replay, file: {rec}/claude.jsonl, speed: 0}}
workspace:
  root: {tmp}/ws
workflows_dir: {tmp}/none
"""
    srv = serve(tmp, cfg, "default")
    try:
        tid = create(srv, "Add pagination", "default")
        t = wait_task(srv, tid)
        check(t and t["status"] == "completed", f"default workflow completed ({t and t.get('status')}: {t and t.get('error')})")
        res = (t or {}).get("result") or {}
        check(res.get("success") is True, "result success")
        check(res.get("workflow") == "default", "result names the workflow")
        check(res.get("iterations") == 2, f"two iterations ({res.get('iterations')})")
        check(res.get("steps") == [" [OK] codex (implement)", " [OK] gemini (review)",
                                   " [OK] claude (refine)"],
              f"seed-004 step lines ({res.get('steps')})")
        check(res.get("final_output") == "refined v2", f"final output ({res.get('final_output')!r})")
        check(res.get("stop_reason") == "review_passed", f"stop reason ({res.get('stop_reason')})")
        det = res.get("step_details") or []
        order = [(d["iteration"], d["step_key"], d["agent"], d["output"]) for d in det]
        check(order == [(1, "implement", "codex", "implemented v1"),
                        (1, "review", "gemini", five),
                        (1, "refine", "claude", "refined v1"),
                        (2, "implement", "codex", "implemented v2"),
                        (2, "review", "gemini", two),
                        (2, "refine", "claude", "refined v2")],
              f"six steps in order with their outputs ({order})")
        check(res.get("tokens_in") == 1000 + 500 + 700 + 1100 + 400 + 800,
              f"tokens summed over the run ({res.get('tokens_in')})")
        # outputs chained: the prompts the engine built are in the events? The replay
        # ignores prompts, so check the chaining through the store's step rows instead:
        # each step's 'previous' is visible in the run's events (step.started order).
        st, evs = srv.request("GET", f"/api/tasks/{tid}/events?limit=500")
        types = [e["type"] for e in (evs.get("events") if isinstance(evs, dict) else evs) or []]
        check(types.count("run.iteration") == 2, f"two run.iteration events ({types.count('run.iteration')})")
        check("agent.output" in types, "agent output streamed as events")
    finally:
        srv.stop()


def test_prompt_chaining(tmp):
    """Outputs chain into the next step's input: shell steps echo what came before."""
    wf = os.path.join(tmp, "wf")
    os.makedirs(wf, exist_ok=True)
    with open(os.path.join(wf, "chain.yaml"), "w") as f:
        f.write("""
metadata: {id: chain, name: Chain, version: 1.0.0}
steps:
  - id: a
    action: shell-command
    inputs: {command: "echo alpha"}
  - id: b
    action: shell-command
    inputs: {command: "echo {{ previous.output }}-beta"}
  - id: c
    action: shell-command
    inputs: {command: "echo ${steps.a.output}+{{ steps.b.output | upcase }}"}
outputs:
  - name: RESULT
    value: ${steps.c.output}
""")
    srv = serve(tmp, f"workflows_dir: {wf}\nworkspace: {{root: {tmp}/ws}}\n", "chain")
    try:
        tid = create(srv, "chain", "chain")
        t = wait_task(srv, tid)
        res = (t or {}).get("result") or {}
        check(t and t["status"] == "completed", f"chain completed ({t and t.get('error')})")
        check(res.get("final_output") == "alpha+ALPHA-BETA", f"outputs chained ({res.get('final_output')!r})")
        check(res.get("outputs", {}).get("RESULT") == "alpha+ALPHA-BETA", "workflow output rendered")
    finally:
        srv.stop()


def test_kill_resume(tmp):
    wf = os.path.join(tmp, "wf")
    os.makedirs(wf, exist_ok=True)
    log = os.path.join(tmp, "steps.log")
    marker = os.path.join(tmp, "marker")
    pidf = os.path.join(tmp, "sleep.pid")
    with open(os.path.join(wf, "three.yaml"), "w") as f:
        f.write(f"""
metadata: {{id: three, name: Three steps, version: 1.0.0}}
steps:
  - id: one
    action: shell-command
    inputs: {{command: "echo one >> {log}"}}
  - id: two
    action: shell-command
    inputs:
      command: "echo two >> {log}; if [ ! -f {marker} ]; then touch {marker}; echo $$ > {pidf}; exec sleep 60; fi"
  - id: three
    action: shell-command
    inputs: {{command: "echo three >> {log}"}}
""")
    cfg = f"workflows_dir: {wf}\nworkspace: {{root: {tmp}/ws}}\nqueue: {{lease: 10m}}\n"
    srv = serve(tmp, cfg, "kill")
    tid = create(srv, "survive a kill", "three")
    deadline = time.time() + 30
    while time.time() < deadline and not (os.path.exists(log) and "two" in open(log).read()):
        time.sleep(0.05)
    check(os.path.exists(log) and open(log).read() == "one\ntwo\n", "step 2 running when killed")
    srv.proc.send_signal(signal.SIGKILL)
    srv.proc.wait()
    try:
        os.kill(int(open(pidf).read().strip()), signal.SIGKILL)  # the orphaned step
    except (OSError, ValueError):
        pass
    srv2 = serve(tmp, cfg, "kill")
    try:
        t = wait_task(srv2, tid, timeout=60)
        check(t and t["status"] == "completed", f"resumed run completed ({t and t.get('status')} {t and t.get('error')})")
        check(open(log).read() == "one\ntwo\ntwo\nthree\n",
              f"step 1 not re-run, step 2 re-run, step 3 followed ({open(log).read()!r})")
        rows = db_rows(os.path.join(tmp, "kill.db"),
                       "SELECT step_key, attempt, status FROM steps ORDER BY seq, attempt")
        check(("two", 1, "cancelled") in rows and ("two", 2, "succeeded") in rows,
              f"the interrupted attempt is recorded and the re-run is attempt 2 ({rows})")
        check(sum(1 for r in rows if r[0] == "one") == 1, "one row for step 1")
        runs = db_rows(os.path.join(tmp, "kill.db"), "SELECT id FROM runs")
        check(len(runs) == 1, "the same run resumed (no second run)")
    finally:
        srv2.stop()


def test_approval_restart(tmp):
    wf = os.path.join(tmp, "wf")
    os.makedirs(wf, exist_ok=True)
    with open(os.path.join(wf, "gate.yaml"), "w") as f:
        f.write("""
metadata: {id: gate, name: Gated, version: 1.0.0}
steps:
  - id: build
    action: shell-command
    inputs: {command: "echo built"}
  - id: approve
    action: approval
    inputs: {prompt: "Ship {{ task.title }}? build said {{ steps.build.output }}"}
  - id: ship
    action: shell-command
    inputs: {command: "echo shipped after ${steps.approve.output}"}
""")
    cfg = f"workflows_dir: {wf}\nworkspace: {{root: {tmp}/ws}}\n"
    srv = serve(tmp, cfg, "gate")
    tid = create(srv, "release 1.2", "gate")
    appr = None
    deadline = time.time() + 30
    while time.time() < deadline and not appr:
        st, body = srv.request("GET", "/api/approvals?status=pending")
        for a in (body.get("approvals") or []) if isinstance(body, dict) else []:
            if a.get("task_id") == tid:
                appr = a
        time.sleep(0.1)
    check(appr is not None, "the approval is pending")
    check(appr and appr.get("prompt") == "Ship release 1.2? build said built",
          f"approval prompt rendered ({appr and appr.get('prompt')!r})")
    st, t = srv.request("GET", f"/api/tasks/{tid}")
    runs = db_rows(os.path.join(tmp, "gate.db"), "SELECT status FROM runs WHERE task_id=?", tid)
    check(runs == [("waiting",)], f"run waiting at the gate ({runs})")
    check(srv.stop() == 0, "daemon stops cleanly while a run waits")
    srv2 = serve(tmp, cfg, "gate")
    try:
        time.sleep(1.0)
        runs = db_rows(os.path.join(tmp, "gate.db"), "SELECT status FROM runs WHERE task_id=?", tid)
        check(runs == [("waiting",)], f"still waiting after the restart ({runs})")
        st, t = srv2.request("GET", f"/api/tasks/{tid}")
        check(t.get("status") == "in_progress", f"task held by the restarted daemon ({t.get('status')})")
        st, a = srv2.request("POST", f"/api/approvals/{appr['id']}",
                             {"decision": "approve", "comment": "go", "by": "alice"})
        check(st == 200, f"approved through the API ({st} {a})")
        t = wait_task(srv2, tid, timeout=30)
        res = (t or {}).get("result") or {}
        check(t and t["status"] == "completed", f"run finished after approval ({t and t.get('error')})")
        check(res.get("final_output") == "shipped after approved by alice: go",
              f"approval output chained ({res.get('final_output')!r})")
        build_rows = db_rows(os.path.join(tmp, "gate.db"),
                             "SELECT count(*) FROM steps WHERE step_key='build'")
        check(build_rows == [(1,)], "build step ran once across the restart")
        # rejection fails the run
        tid2 = create(srv2, "release 1.3", "gate")
        appr2 = None
        deadline = time.time() + 30
        while time.time() < deadline and not appr2:
            st, body = srv2.request("GET", "/api/approvals?status=pending")
            for a in (body.get("approvals") or []) if isinstance(body, dict) else []:
                if a.get("task_id") == tid2:
                    appr2 = a
            time.sleep(0.1)
        st, a = srv2.request("POST", f"/api/approvals/{appr2['id']}",
                             {"decision": "reject", "comment": "not today"})
        t2 = wait_task(srv2, tid2, timeout=30)
        check(t2 and t2["status"] == "failed", f"rejected run fails ({t2 and t2.get('status')})")
        check(t2 and "not today" in (t2.get("error") or ""), f"rejection reason kept ({t2 and t2.get('error')})")
    finally:
        srv2.stop()


def test_invalid_never_starts(tmp):
    wf = os.path.join(tmp, "wf")
    os.makedirs(wf, exist_ok=True)
    with open(os.path.join(wf, "bad.yaml"), "w") as f:
        f.write("""metadata: {id: bad, name: Bad, version: 1.0.0}
steps:
  - id: write
    agent: nosuchagent
    role: implement
  - id: call
    action: execute-workflow
    workflow: loop
  - id: say
    action: shell-command
    inputs: {command: "echo {{ steps.write.outptu }}"}
""")
    with open(os.path.join(wf, "loop.yaml"), "w") as f:
        f.write("""metadata: {id: loop, name: Loop, version: 1.0.0}
steps:
  - id: back
    action: execute-workflow
    workflow: bad
""")
    cfg = os.path.join(tmp, "bad.yaml")
    with open(cfg, "w") as f:
        f.write(f"workflows_dir: {wf}\nworkspace: {{root: {tmp}/ws}}\n")
    p = harness.run(["serve", "--port", "0", "--config", cfg, "--store",
                     "sqlite:" + os.path.join(tmp, "bad.db")], timeout=30)
    err = p.stderr
    check(p.returncode != 0, f"serve refuses to start ({p.returncode})")
    check(re.search(r"bad\.yaml:4:12: .*nosuchagent", err) is not None, f"unknown agent located:\n{err}")
    check(re.search(r"bad\.yaml:11:\d+: .*steps\.write\.outptu", err) is not None, "unknown variable located")
    check(re.search(r"(bad|loop)\.yaml:\d+:\d+: .*cycle", err) is not None, "cycle located")
    tasks = db_rows(os.path.join(tmp, "bad.db"), "SELECT count(*) FROM tasks") \
        if os.path.exists(os.path.join(tmp, "bad.db")) else [(0,)]
    check(tasks == [(0,)], "nothing ran")


# Seed 001's README ("Creating Custom Workflows"), verbatim except where the sketch offers
# alternatives: `action: execute-workflow|shell-command|git-operation` is one of the three
# and `key: value` that action's inputs. `type: master|core` and `type: string|enum|boolean`
# stay as written (baton reads them as "one of").
SEED001 = """metadata:
  id: unique-id
  name: Workflow Name
  version: 1.0.0
  type: master|core
  description: Description

inputs:
  - name: INPUT_NAME
    type: string|enum|boolean
    required: true

steps:
  - id: step-1
    name: Step Name
    action: %s
    inputs:
%s

outputs:
  - name: OUTPUT_NAME
    value: ${steps.step-1.output}
"""


def test_seed001_example(tmp):
    ws = os.path.join(tmp, "repo")
    os.mkdir(ws)
    for args in (["init", "-q", "-b", "main"], ["-c", "user.name=t", "-c", "user.email=t@x",
                                                "commit", "-q", "--allow-empty", "-m", "init"]):
        harness.subprocess.run(["git", *args], cwd=ws, check=True)
    cases = [
        ("shell-command", "      command: echo got ${inputs.INPUT_NAME}", "got hello"),
        ("git-operation", "      operation: branch\n      branch: feature/${inputs.INPUT_NAME}",
         "feature/hello"),
        ("execute-workflow", "      workflow: helper\n      WHO: ${inputs.INPUT_NAME}",
         "helper says hello"),
    ]
    for action, inputs, want in cases:
        wf = os.path.join(tmp, "wf-" + action)
        os.makedirs(wf)
        with open(os.path.join(wf, "seed001.yaml"), "w") as f:
            f.write(SEED001 % (action, inputs))
        with open(os.path.join(wf, "helper.yaml"), "w") as f:
            f.write("metadata: {id: helper, name: Helper, version: 1.0.0}\n"
                    "inputs: [{name: WHO, type: string, required: true}]\n"
                    "steps:\n  - id: say\n    action: shell-command\n"
                    "    inputs: {command: \"echo helper says ${inputs.WHO}\"}\n")
        cfg = os.path.join(tmp, action + ".yaml")
        with open(cfg, "w") as f:
            f.write(f"workflows_dir: {wf}\nstore: {{url: 'sqlite:{tmp}/{action}.db'}}\n")
        p = harness.run(["run", "seed 001 example", "--config", cfg, "--workflow", "unique-id",
                         "--input", "INPUT_NAME=hello", "--workspace", ws, "--json"], timeout=60)
        res = {}
        try:
            res = json.loads(p.stdout)
        except ValueError:
            pass
        check(p.returncode == 0 and res.get("success") is True,
              f"seed 001 example with {action} runs ({p.returncode}: {p.stderr[-400:]})")
        check(res.get("outputs", {}).get("OUTPUT_NAME") == want,
              f"{action}: OUTPUT_NAME = {want!r} ({res.get('outputs')})")


def test_http_step(tmp):
    """http steps: a templated JSON body and headers reach the server; `expect` decides."""
    llm = harness.fake("llm_server.py")
    wf = os.path.join(tmp, "wf")
    os.makedirs(wf, exist_ok=True)
    with open(os.path.join(wf, "web.yaml"), "w") as f:
        f.write("""
metadata: {id: web, name: Web calls, version: 1.0.0}
inputs: [{name: URL, type: string, required: true}]
steps:
  - id: ask
    action: http
    inputs:
      method: POST
      url: "{{ inputs.URL }}/v1/chat/completions"
      headers: {X-Baton-Run: "{{ run.id }}"}
      body:
        model: m
        stream: false
        messages: [{role: user, content: "{{ task.title | upcase }}"}]
  - id: missing
    action: http
    inputs: {url: "${inputs.URL}/nothing-here", expect: 404}
  - id: strict
    action: http
    continue_on_error: true
    inputs: {url: "${inputs.URL}/nothing-here"}
""")
    srv = serve(tmp, f"workflows_dir: {wf}\nworkspace: {{root: {tmp}/ws}}\n", "web")
    try:
        llm.control("POST", "/_control/script", {"path": "/v1/chat/completions",
                                                  "actions": [{"reply": "pong"}]})
        st, res = srv.request("POST", "/api/execute", {"task": "ping", "workflow": "web",
                                                        "inputs": {"URL": llm.url},
                                                        "wait": True, "timeout": 60})
        check(st == 200 and res.get("success") is True, f"http workflow completed ({st} {res.get('error') if isinstance(res, dict) else res})")
        det = {d["step_key"]: d for d in res.get("step_details", [])}
        check("pong" in (det.get("ask", {}).get("output") or ""), "response body is the step output")
        check(det.get("missing", {}).get("status") == "succeeded", "expect: 404 accepts a 404")
        check(det.get("strict", {}).get("status") == "failed" and
              "HTTP 404" in (det.get("strict", {}).get("error") or ""),
              f"a 404 fails a step that expects 2xx ({det.get('strict', {}).get('error')})")
        st, reqs = llm.control("GET", "/_control/requests")
        chat = [r for r in reqs if r["path"] == "/v1/chat/completions"]
        check(len(chat) == 1 and chat[0]["body"]["messages"][0]["content"] == "PING",
              "the JSON body was rendered (title upcased)")
        check(chat and chat[0]["headers"].get("x-baton-run") == res.get("run_id"),
              "templated header sent")
    finally:
        srv.stop()
        llm.stop()


def main():
    for fn in (test_default_iterations, test_prompt_chaining, test_kill_resume,
               test_approval_restart, test_invalid_never_starts, test_seed001_example,
               test_http_step):
        with tempfile.TemporaryDirectory(prefix="bt-wfe-") as tmp:
            print(f"--- {fn.__name__}", flush=True)
            fn(tmp)
    finish()


if __name__ == "__main__":
    main()
