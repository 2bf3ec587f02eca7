#!/usr/bin/env python3
"""The dynamic planner through the real binary (issue 7 item 5; seed 004 "Dynamic Planner
Agent"): `baton run --workflow dynamic` with an openai-type agent `planner-llm` served by
tests/fakes/llm_server.py and fake CLIs (tests/fakes/fake-agent) for the other agents.

1. A valid plan (in a ```json fence with prose around it) naming two CLI agents: stderr says
   "plan by planner-llm: build (coder) -> check (checker)" and the run executes exactly
   those steps with those agents (--json step_details); the planning prompt named the
   task and the candidates.
2. A reply that is not JSON: stderr says "planning failed: planner reply is not JSON ...;
   running workflow default" and the run completes through default's steps.
3. A plan naming an agent that does not exist ("ghost"): default runs, the reason names
   the agent.
4. An agent whose recorded success rate is 0.40 (5 calls written to the store's
   agent_calls table) is absent from the prompt the planner receives, and a plan naming
   it falls back to default with its rate in the reason.
5. `baton serve`: a task (POST /api/tasks) naming a workflow that does not exist is
   planned and completes; its run records why ("no workflow named ...") and the plan.
"""
import json
import os
import sqlite3
import tempfile
import time

import harness
from harness import check

FAKE_AGENT = os.path.join(harness.FAKES, "fake-agent")

GOOD_PLAN = ("Here is my plan for {the task}:\n```json\n"
             '{"steps":[{"id":"build","role":"implementation","agent":"coder"},'
             '{"id":"check","role":"review","agent":"checker",'
             '"prompt":"Look at the {{ error }} handling."}]}\n```\nGood luck.')


def config(tmp, llm_url):
    clis = ["coder", "checker", "slow", "codex", "gemini", "claude"]
    agents = "".join(f"""
  {name}:
    type: cli
    command: {FAKE_AGENT}
    args: ["--as", "generic"]
    local: true
    role: {"review" if name == "checker" else "implementation"}""" for name in clis)
    return f"""
store:
  url: sqlite:{tmp}/baton.db
offline:
  mode: off
workflows_dir: ""
personas_dir: ""
agents:
  planner-llm:
    type: openai
    model: planner-test
    api_key: sk-test
    base_url: {llm_url}/v1
    local: true{agents}
"""


def script(fake, reply):
    fake.control("POST", "/_control/reset", {})
    fake.control("POST", "/_control/script",
                 {"path": "/v1/chat/completions", "actions": [{"reply": reply}]})


def prompts(fake):
    _, log = fake.control("GET", "/_control/requests")
    out = []
    for r in log if isinstance(log, list) else []:
        if r.get("path") == "/v1/chat/completions":
            out.append(json.dumps(r.get("body")))
    return out


def run(tmp, cfg, title="Add a health endpoint"):
    r = harness.run(["run", title, "--config", cfg, "--workflow", "dynamic", "--json"],
                    cwd=tmp, timeout=180)
    try:
        out = json.loads(r.stdout)
    except ValueError:
        out = {}
    return r, out


def steps(out):
    """key=agent of iteration 1's step rows."""
    return [f"{s.get('step_key')}={s.get('agent')}" for s in out.get("step_details", [])
            if s.get("iteration", 1) == 1]


def line(stderr, prefix):
    return next((l for l in stderr.splitlines() if l.startswith(prefix)), "")


def falls_back(tmp, cfg, fake, reply, needle, what):
    script(fake, reply)
    r, out = run(tmp, cfg, "Fix the login form")
    msg = line(r.stderr, "planning failed: ")
    check(r.returncode == 0, f"{what}: the run completes (exit {r.returncode}; {r.stderr[-300:]})")
    check(needle in msg and msg.endswith("; running workflow default"),
          f"{what}: stderr says why and that default runs: {msg!r}")
    check(steps(out) == ["implement=codex", "review=gemini", "refine=claude"],
          f"{what}: default's steps ran: {steps(out)}")
    check(needle in out.get("plan_error", "") and out.get("plan_workflow") == "default",
          f"{what}: --json records the reason and the workflow that ran: "
          f"{out.get('plan_error')!r} {out.get('plan_workflow')!r}")
    return r, out


def main():
    fake = harness.fake("llm_server.py")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = os.path.join(tmp, "baton.yaml")
            with open(cfg, "w") as f:
                f.write(config(tmp, fake.url))

            # 1. a valid plan runs exactly its steps
            script(fake, GOOD_PLAN)
            r, out = run(tmp, cfg)
            check(r.returncode == 0, f"planned run exits 0 (got {r.returncode}; {r.stderr[-400:]})")
            plan = line(r.stderr, "plan by ")
            check(plan == "plan by planner-llm: build (coder) -> check (checker)",
                  f"stderr shows the plan: {plan!r}")
            check(steps(out) == ["build=coder", "check=checker"],
                  f"exactly the planned steps and agents ran: {steps(out)}")
            check(out.get("planned") is True and "plan_error" not in out,
                  "--json says the run followed a plan")
            seen = prompts(fake)
            check(len(seen) == 1, f"the planner was asked once ({len(seen)})")
            check(seen and "Add a health endpoint" in seen[0] and "- coder: type cli" in seen[0],
                  "the planning prompt has the task and the candidates")

            # 2. not JSON, 3. an unknown agent
            falls_back(tmp, cfg, fake, "not json at all", "planner reply is not JSON",
                       "a reply that is not JSON")
            falls_back(tmp, cfg, fake,
                       '{"steps":[{"role":"implementation","agent":"ghost"}]}',
                       "plan names agent 'ghost' which is not configured", "an unknown agent")

            # 4. an agent under 0.6 is never offered, and a plan naming it is refused
            now = int(time.time() * 1000)
            db = sqlite3.connect(os.path.join(tmp, "baton.db"))
            for i, outcome in enumerate("SFSFF"):
                db.execute("INSERT INTO agent_calls(agent, outcome, error_class, duration_ms,"
                           " tokens, at) VALUES (?, ?, ?, 1000, 0, ?)",
                           ("slow", "success" if outcome == "S" else "failure",
                            None if outcome == "S" else "permanent", now - 60000 + i * 1000))
            db.commit()
            db.close()
            falls_back(tmp, cfg, fake, '{"steps":[{"role":"implementation","agent":"slow"}]}',
                       "plan assigns 'slow' whose success rate 0.40 is below 0.60",
                       "an agent under 0.6")
            seen = prompts(fake)
            check(seen and "coder" in seen[0] and "slow" not in seen[0],
                  "the 0.40 agent is not in the planning prompt")

            # 5. the daemon: an unknown workflow name is planned
            script(fake, GOOD_PLAN)
            srv = harness.serve(tmp, config(tmp, fake.url).replace(
                f"sqlite:{tmp}/baton.db", f"sqlite:{tmp}/serve.db"), name="serve")
            try:
                st, task = srv.request("POST", "/api/tasks",
                                       {"title": "Route me", "workflow": "no-such-workflow"})
                check(st in (200, 201), f"task created ({st}: {task})")
                tid = task.get("id") if isinstance(task, dict) else None
                row = {}
                for _ in range(600):
                    _, rs = srv.request("GET", f"/api/runs?task_id={tid}")
                    runs = rs.get("runs", []) if isinstance(rs, dict) else []
                    row = runs[0] if runs else {}
                    if row.get("status") in ("completed", "failed", "cancelled"):
                        break
                    time.sleep(0.1)
                state = row.get("state", {})
                check(row.get("status") == "completed",
                      f"the planned run completed: {row.get('status')} {row.get('error')}")
                check(state.get("plan_reason") == "no workflow named 'no-such-workflow'",
                      f"the run records why it was planned: {state.get('plan_reason')!r}")
                check('"agent":"coder"' in state.get("plan", ""),
                      f"the plan is stored with the run: {state.get('plan')!r}")
            finally:
                srv.stop()
    finally:
        fake.stop()
    harness.finish()


if __name__ == "__main__":
    main()
