#!/usr/bin/env python3
"""The workflow CLI through the real binary (issue 6, item 7): `baton workflows` (table,
--json, a broken workflow file reported at file:line:col), `baton run` of shell-step
workflows (summary with [OK]/[FAIL] lines and the final output, --json, --input, an
unknown workflow), `baton approve` / `baton reject` deciding a run waiting at an
approval step from another process, and SIGINT cancelling a running step. No server
and no model: every step is a shell command; the store is SQLite in a temp dir.
"""
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import harness
from harness import check

WORKFLOWS = {
    "two-step.yaml": """
metadata:
  id: two-step
  name: Two Step
  version: "1.2"
steps:
  - id: build
    action: shell-command
    inputs:
      command: echo built-it
  - id: check
    action: shell-command
    inputs:
      command: "echo checked ${steps.build.output}"
""",
    "failing.yaml": """
id: failing
name: Failing
steps:
  - id: first
    action: shell-command
    inputs:
      command: echo fine
  - id: boom
    action: shell-command
    inputs:
      command: "echo about to fail; exit 3"
""",
    "gated.yaml": """
id: gated
name: Gated
steps:
  - id: prepare
    action: shell-command
    inputs:
      command: echo prepared
  - id: gate
    action: approval
    inputs:
      prompt: Ship it?
  - id: ship
    action: shell-command
    inputs:
      command: echo shipped
""",
    "sleepy.yaml": """
id: sleepy
name: Sleepy
steps:
  - id: nap
    action: shell-command
    inputs:
      command: sleep 30
""",
    "agentic.yaml": """
id: agentic
name: Agentic
steps:
  - id: implement
    agent: demo
    role: implement
    prompt: "{{ task.title }}"
""",
    "greet.yaml": """
id: greet
name: Greet
inputs:
  - name: WHO
    type: string
    required: true
steps:
  - id: hello
    action: shell-command
    inputs:
      command: "echo hello ${inputs.WHO}"
""",
}

BROKEN = """
id: broken
name: Broken
steps:
  - id: only
    action: shell-command
    inputs:
      command: "echo ${steps.nowhere.output}"
"""


def write_config(tmp, name, wfdir):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write(f"""
log: {{level: warn}}
store:
  url: sqlite:{os.path.join(tmp, 'baton.db')}
workflows_dir: {wfdir}
workspace:
  root: {os.path.join(tmp, 'ws')}
agents:
  demo:
    type: replay
    file: {os.path.join(harness.SRC, 'examples', 'replays', 'demo.jsonl')}
    speed: 0
""")
    return path


class Lines:
    """A child's stderr read line by line on a thread, so the test can wait with a limit."""

    def __init__(self, stream):
        self.q, self.seen = queue.Queue(), []
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream):
        for line in stream:
            self.q.put(line)
        self.q.put(None)

    def wait_for(self, pattern, timeout):
        end = time.time() + timeout
        while time.time() < end:
            try:
                line = self.q.get(timeout=max(0.05, end - time.time()))
            except queue.Empty:
                break
            if line is None:
                break
            self.seen.append(line)
            m = re.search(pattern, line)
            if m:
                return m
        return None

    def text(self):
        while True:
            try:
                line = self.q.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.seen.append(line)
        return "".join(self.seen)


def start_run(tmp, cfg, *args):
    p = subprocess.Popen([harness.BATON, "run", *args, "--config", cfg], cwd=tmp,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=harness.clean_env())
    return p, Lines(p.stderr)


def workflows_checks(tmp, cfg, broken_cfg):
    r = harness.run(["workflows", "--config", cfg], cwd=tmp)
    check(r.returncode == 0, f"baton workflows exits 0 (got {r.returncode}: {r.stderr.strip()})")
    lines = r.stdout.splitlines()
    check(lines and lines[0].split()[:5] == ["ID", "NAME", "VERSION", "STEPS", "ITERATIONS"],
          f"the table has its header: {lines[:1]}")
    rows = {ln.split()[0]: ln for ln in lines[1:] if ln.strip()}
    check("default" in rows and "review-only" in rows, "the built-in workflows are listed")
    check("two-step" in rows and "Two Step" in rows["two-step"] and "1.2" in rows["two-step"],
          f"the user's workflow is listed with name and version: {rows.get('two-step')!r}")
    check("shell-command → shell-command" in rows.get("two-step", ""),
          f"STEPS names each step's action: {rows.get('two-step')!r}")
    check(rows.get("two-step", "").rstrip().endswith("ok"), "a runnable workflow reads ok")
    check("gated" in rows and "approval" in rows["gated"], "an approval step is shown as such")
    check("agentic" in rows and " demo " in rows["agentic"], "an agent step is shown by its agent")
    d = rows.get("default", "")
    check("→" in d and not d.rstrip().endswith(" ok") and "needs" in d,
          f"a built-in without its agents shows agents and why it cannot run: {d!r}")

    r = harness.run(["workflows", "--config", cfg, "--json"], cwd=tmp)
    doc = json.loads(r.stdout)
    ids = {w["id"]: w for w in doc["workflows"]}
    check(r.returncode == 0 and doc["count"] == len(doc["workflows"]) and "two-step" in ids,
          "--json lists {workflows, count}")
    check([s["id"] for s in ids["two-step"]["steps"]] == ["build", "check"],
          "--json carries each workflow's steps")

    r = harness.run(["workflows", "--config", broken_cfg], cwd=tmp)
    check(r.returncode == 1, f"a broken workflow file exits 1 (got {r.returncode})")
    check(re.search(r"bad\.yaml:\d+:\d+: error", r.stderr) is not None,
          f"the problem is located at file:line:col: {r.stderr.strip()[:300]!r}")
    r = harness.run(["run", "x", "--workflow", "two-step", "--config", broken_cfg], cwd=tmp)
    check(r.returncode == 1 and "bad.yaml:" in r.stderr,
          f"baton run refuses to start with a broken workflow file (exit {r.returncode})")


def run_checks(tmp, cfg):
    r = harness.run(["run", "Build the thing", "--workflow", "two-step", "--config", cfg],
                    cwd=tmp)
    check(r.returncode == 0, f"a 2-step shell workflow exits 0 (got {r.returncode}: {r.stderr})")
    out = r.stdout
    check(re.search(r"^Workflow: two-step\s+Iterations: 1\s+Status: completed", out, re.M)
          is not None, f"the summary line names workflow, iterations and status: {out[:120]!r}")
    check(re.search(r"^ \[OK\] .*build", out, re.M) and re.search(r"^ \[OK\] .*check", out, re.M),
          "one [OK] line per step")
    check("checked built-it" in out, "the final output is printed, with the chained output")
    check("build" in r.stderr and "check" in r.stderr and "succeeded" in r.stderr,
          f"progress lines go to stderr when it is not a terminal: {r.stderr[:200]!r}")

    r = harness.run(["run", "Build again", "--workflow", "two-step", "--json", "--config", cfg],
                    cwd=tmp)
    doc = json.loads(r.stdout)
    check(r.returncode == 0 and doc.get("success") is True and doc.get("iterations") == 1,
          f"--json: success true, iterations 1 ({r.stdout[:200]!r})")
    check(doc.get("workflow") == "two-step" and len(doc.get("steps", [])) == 2
          and "checked built-it" in (doc.get("final_output") or ""),
          "--json has the workflow, the step lines and the final output")

    r = harness.run(["run", "x", "--workflow", "no-such-flow", "--config", cfg], cwd=tmp)
    check(r.returncode == 2 and "no-such-flow" in r.stderr and "two-step" in r.stderr,
          f"an unknown workflow exits 2 and lists the ids (got {r.returncode})")

    r = harness.run(["run", "x", "--workflow", "greet", "--config", cfg], cwd=tmp)
    check(r.returncode == 2 and "WHO" in r.stderr,
          f"a missing required input exits 2 naming it: {r.stderr.strip()!r}")
    r = harness.run(["run", "x", "--workflow", "greet", "--input", "WHO=world", "--config", cfg],
                    cwd=tmp)
    check(r.returncode == 0 and "hello world" in r.stdout,
          f"--input NAME=VALUE binds a workflow input (exit {r.returncode})")

    r = harness.run(["run", "Break it", "--workflow", "failing", "--config", cfg], cwd=tmp)
    check(r.returncode == 1, f"a failing step exits 1 (got {r.returncode})")
    check(re.search(r"^ \[OK\] .*first", r.stdout, re.M)
          and re.search(r"^ \[FAIL\] .*boom", r.stdout, re.M),
          f"[OK] then [FAIL] lines: {r.stdout!r}")
    check("Status: failed" in r.stdout, "the summary says failed")

    # an agent step (a replayed session): the agent's output only with --verbose
    r = harness.run(["run", "Add /healthz", "--workflow", "agentic", "--config", cfg], cwd=tmp)
    check(r.returncode == 0 and re.search(r"^ \[OK\] demo \(implement\)$", r.stdout, re.M),
          f"an agent step's line names agent and role: {r.stdout[:200]!r}")
    check("Added GET /healthz" in r.stdout, "the agent's answer is the final output")
    check("I'll look at how" not in r.stderr and re.search(r"implement · demo .*tok", r.stderr),
          f"without --verbose, progress shows agent and tokens but not its output: {r.stderr!r}")
    r = harness.run(["run", "Add /healthz", "--workflow", "agentic", "--verbose", "--config", cfg],
                    cwd=tmp)
    check(r.returncode == 0 and "I'll look at how" in r.stderr,
          "--verbose streams the agent's output to stderr")

    r = harness.run(["run", "--config", cfg], cwd=tmp)
    check(r.returncode == 2, "baton run without a TASK is a usage error")
    r = harness.run(["help", "run"], cwd=tmp)
    check(r.returncode == 0 and "--max-iterations" in r.stdout and "130" in r.stdout,
          "baton help run shows the options and exit codes")


WAIT_RE = r"waiting for approval (\S+) \(step gate\): run `baton approve (\S+)`"


def approval_checks(tmp, cfg):
    p, err = start_run(tmp, cfg, "Ship v1", "--workflow", "gated")
    m = err.wait_for(WAIT_RE, 15)
    check(m is not None, "baton run says it waits for an approval and how to decide it")
    if not m:
        p.kill()
        p.wait()
        print(err.text())
        return
    approval, run_id = m.group(1), m.group(2)
    r = harness.run(["approve", run_id, "--comment", "looks good", "--by", "tester",
                     "--config", cfg], cwd=tmp)
    check(r.returncode == 0 and f"approved: approval {approval} (run {run_id}, step gate)"
          in r.stdout, f"baton approve RUN decides the pending approval: {r.stdout}{r.stderr}")
    try:
        rc = p.wait(timeout=20)
    except subprocess.TimeoutExpired:
        p.kill()
        rc = None
    out = p.stdout.read()
    check(rc == 0, f"the waiting run continues and exits 0 (got {rc})")
    check(re.search(r"^ \[OK\] .*ship", out, re.M) is not None and "shipped" in out,
          "the step after the gate ran")
    r = harness.run(["approve", approval, "--config", cfg], cwd=tmp)
    check(r.returncode == 1 and "already approved by tester" in r.stderr,
          f"deciding again exits 1 naming the decision and who made it: {r.stderr.strip()!r}")
    r = harness.run(["approve", run_id, "--config", cfg], cwd=tmp)
    check(r.returncode == 1 and "no pending approval" in r.stderr,
          f"a run with nothing pending exits 1: {r.stderr.strip()!r}")

    p, err = start_run(tmp, cfg, "Ship v2", "--workflow", "gated")
    m = err.wait_for(WAIT_RE, 15)
    check(m is not None, "a second gated run waits too")
    if not m:
        p.kill()
        p.wait()
        return
    r = harness.run(["reject", m.group(2), "--comment", "not yet", "--config", cfg], cwd=tmp)
    check(r.returncode == 0 and r.stdout.startswith("rejected: approval "),
          f"baton reject RUN: {r.stdout}{r.stderr}")
    try:
        rc = p.wait(timeout=20)
    except subprocess.TimeoutExpired:
        p.kill()
        rc = None
    out = p.stdout.read()
    check(rc == 1, f"a rejected run exits 1 (got {rc})")
    check(re.search(r"^ \[FAIL\] .*gate", out, re.M) is not None and "shipped" not in out,
          f"the gate failed and the next step never ran: {out!r}")


def interrupt_checks(tmp, cfg):
    p, err = start_run(tmp, cfg, "Nap", "--workflow", "sleepy", "--json")
    m = err.wait_for(r"nap.*started", 15)
    check(m is not None, "the sleep step starts")
    t0 = time.time()
    p.send_signal(signal.SIGINT)
    try:
        rc = p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        rc = None
    took = time.time() - t0
    check(rc == 130 and took < 10, f"SIGINT ends the run with exit 130 quickly ({rc}, {took:.1f}s)")
    out = p.stdout.read()
    try:
        doc = json.loads(out)
    except ValueError:
        doc = {}
    check(doc.get("status") == "cancelled" and doc.get("success") is False,
          f"the result says cancelled: {out[:200]!r}")
    task_id = doc.get("task_id")
    if not task_id:
        return
    with open(cfg) as f:
        text = f.read()
    # a daemon on the same store (serve's --store is TMP/NAME.db: the run's baton.db)
    srv = harness.serve(tmp, text, "baton")
    try:
        status, body = srv.request("GET", f"/api/tasks/{task_id}")
        got = body.get("status") if isinstance(body, dict) else body
        check(status == 200 and got == "cancelled", f"the task is left cancelled ({status} {got})")
    finally:
        srv.stop()


def main():
    tmp = tempfile.mkdtemp(prefix="baton-wfcli-")
    try:
        wfdir = os.path.join(tmp, "workflows")
        os.makedirs(wfdir)
        for name, text in WORKFLOWS.items():
            with open(os.path.join(wfdir, name), "w") as f:
                f.write(text)
        baddir = os.path.join(tmp, "broken")
        os.makedirs(baddir)
        shutil.copy(os.path.join(wfdir, "two-step.yaml"), baddir)
        with open(os.path.join(baddir, "bad.yaml"), "w") as f:
            f.write(BROKEN)
        cfg = write_config(tmp, "baton.yaml", wfdir)
        broken_cfg = write_config(tmp, "broken.yaml", baddir)
        workflows_checks(tmp, cfg, broken_cfg)
        run_checks(tmp, cfg)
        approval_checks(tmp, cfg)
        interrupt_checks(tmp, cfg)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    harness.finish()


if __name__ == "__main__":
    main()
