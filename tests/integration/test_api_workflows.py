#!/usr/bin/env python3
"""Workflows, runs and approvals over HTTP through the real binary (issue 6):
list/get workflows (404 naming the unknown one), the structure's sub-workflow edge,
POST /api/execute with wait=true answering seed 004's result shape for a two-step shell
workflow whose second step echoes the first one's output, bad input (unknown workflow,
missing required input, unknown field, bad JSON) refused with nothing stored, seed 001's
execute + status by work item + duplicate (200, created false), the approval gate
(the run waits with a pending approval; approve -> completes; reject -> fails; deciding
twice -> 409), cancelling a run whose step sleeps 30 s (cancelled in well under 10 s),
a wait that times out (202, waited), a waiting client that hangs up, and a clean
SIGTERM with a request still waiting (no sanitizer reports, no handles left open)."""
import os
import socket
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check  # noqa: E402

TOKEN = "wfapi-write-token-0123456789"

WORKFLOWS = {
    "two.yaml": """metadata:
  id: two
  name: Two Steps
  description: echo, then echo what the first step said
steps:
  - id: a
    action: shell-command
    inputs:
      command: echo hello
  - id: b
    action: shell-command
    inputs:
      command: echo got ${steps.a.output}
""",
    "parent.yaml": """metadata:
  id: parent
  name: Parent
steps:
  - id: call-two
    action: execute-workflow
    workflow: two
""",
    "needs.yaml": """metadata:
  id: needs
  name: Needs An Input
inputs:
  - name: NAME
    type: string
    required: true
steps:
  - id: greet
    action: shell-command
    inputs:
      command: echo hi ${inputs.NAME}
""",
    "gate.yaml": """metadata:
  id: gate
  name: Gate
steps:
  - id: before
    action: shell-command
    inputs:
      command: echo before
  - id: sign-off
    action: approval
    inputs:
      prompt: Ship it?
  - id: after
    action: shell-command
    inputs:
      command: echo shipped
""",
    "slow.yaml": """metadata:
  id: slow
  name: Slow
steps:
  - id: nap
    action: shell-command
    timeout: 5m
    inputs:
      command: sleep 30
""",
    "feature.yaml": """metadata:
  id: wfx
  name: Gated Feature
  type: core
inputs:
  - name: WORK_ITEM_ID
    type: string
    required: true
steps:
  - id: sign-off
    action: approval
    inputs:
      prompt: Start ${inputs.WORK_ITEM_ID}?
  - id: build
    action: shell-command
    inputs:
      command: echo built ${inputs.WORK_ITEM_ID}
""",
}


def config(tmp):
    wdir = os.path.join(tmp, "workflows")
    os.makedirs(wdir, exist_ok=True)
    for name, text in WORKFLOWS.items():
        with open(os.path.join(wdir, name), "w") as f:
            f.write(text)
    os.makedirs(os.path.join(tmp, "ws"), exist_ok=True)
    replay = os.path.join(harness.SRC, "examples", "replays", "demo.jsonl")
    return f"""server:
  tokens:
    - {{name: ci, token: "{TOKEN}", scopes: [read, write]}}
workflows_dir: {wdir}
workspace:
  root: {os.path.join(tmp, "ws")}
queue:
  max_attempts: 1
agents:
  demo:
    type: replay
    file: {replay}
    speed: 0
"""


class Api:
    def __init__(self, srv):
        self.srv = srv

    def __call__(self, method, path, body=None, timeout=60):
        return self.srv.request(method, path, body, token=TOKEN, timeout=timeout)


def err_msg(j):
    return (j or {}).get("error", {}).get("message", "") if isinstance(j, dict) else str(j)


def err_code(j):
    return (j or {}).get("error", {}).get("code", "") if isinstance(j, dict) else ""


def count_tasks(api):
    st, j = api("GET", "/api/tasks?limit=1000")
    return len(j["tasks"]) if st == 200 else -1


def poll(fn, what, timeout=20.0, every=0.1):
    """Call fn until it returns a truthy value; return it (or None after timeout)."""
    end = time.time() + timeout
    while time.time() < end:
        v = fn()
        if v:
            return v
        time.sleep(every)
    print("     (gave up waiting for %s)" % what)
    return None


def latest_run(api, task_id):
    st, j = api("GET", "/api/runs?task_id=" + task_id)
    return j["runs"][0] if st == 200 and j.get("runs") else None


def status_of(api, key):
    st, j = api("GET", "/api/workflow/status/" + key)
    return j if st == 200 else None


def run_reaches(api, task_id, statuses):
    def f():
        r = latest_run(api, task_id)
        return r if r and r["status"] in statuses else None
    return f


def test_catalogue(api):
    st, j = api("GET", "/api/workflows")
    ids = [w["id"] for w in j.get("workflows", [])] if st == 200 else []
    check(st == 200 and {"two", "parent", "needs", "gate", "slow", "wfx"} <= set(ids)
          and j["count"] == len(ids), "GET /api/workflows lists the test workflows with count")
    st, j = api("GET", "/api/workflows/two")
    check(st == 200 and j.get("id") == "two" and [s["id"] for s in j.get("steps", [])] == ["a", "b"],
          "GET /api/workflows/two -> its two steps")
    st, j = api("GET", "/api/workflows/gated_feature")
    check(st == 200 and j.get("id") == "wfx", "GET /api/workflows/gated_feature -> wfx (loose name)")
    st, j = api("GET", "/api/workflows/no-such-flow")
    check(st == 404 and "no-such-flow" in err_msg(j), "unknown workflow -> 404 naming it")
    st, j = api("GET", "/api/workflow/structure")
    edges = j.get("edges", []) if st == 200 else []
    check(any(e.get("from") == "parent" and e.get("to") == "two" and e.get("step") == "call-two"
              for e in edges), "structure has the edge parent --call-two--> two: %s" % edges[:5])
    st, j = api("GET", "/api/personas")
    check(st == 200 and j.get("count") == len(j.get("personas", [])), "GET /api/personas")


def test_bad_input(api):
    before = count_tasks(api)
    st, j = api("POST", "/api/execute", {"task": "x", "workflow": "nope-flow"})
    check(st == 400 and "nope-flow" in err_msg(j) and "two" in err_msg(j),
          "execute unknown workflow -> 400 naming it and the known ids: %s" % err_msg(j))
    st, j = api("POST", "/api/execute", {"task": "x", "workflow": "needs"})
    check(st == 400 and "NAME" in err_msg(j),
          "execute without a required input -> 400 naming it: %s" % err_msg(j))
    st, j = api("POST", "/api/execute", {"task": "x", "workflow": "needs", "inputs": {"OTHER": 1}})
    check(st == 400, "execute with an undeclared input -> 400: %s" % err_msg(j))
    st, j = api("POST", "/api/execute", {"task": "x", "workflw": "two"})
    check(st == 400 and "workflw" in err_msg(j), "unknown field -> 400 naming it")
    st, j = api("POST", "/api/execute", {"task": "x", "max_iterations": 0})
    check(st == 400 and "max_iterations" in err_msg(j), "max_iterations 0 -> 400")
    st, j = api("POST", "/api/execute", {"task": 5})
    check(st == 400 and "task" in err_msg(j), "task of the wrong type -> 400")
    st, j = api("POST", "/api/execute", {"workflow": "two"})
    check(st == 400 and "task" in err_msg(j), "no task and no title -> 400")
    st, j = api("POST", "/api/execute", "{not json")
    check(st == 400 and err_code(j) == "invalid_json", "bad JSON -> 400 invalid_json")
    st, j = api("POST", "/api/execute", {"task": "x", "wait": True, "timeout": 99999})
    check(st == 400 and "timeout" in err_msg(j), "timeout over 3600 -> 400")
    st, j = api("POST", "/api/workflow/execute", {"work_item_id": "BAD-1", "workflow_type": "nope-flow"})
    check(st == 400 and "nope-flow" in err_msg(j), "seed 001 unknown workflow_type -> 400")
    st, j = api("POST", "/api/workflow/execute",
                {"work_item_id": "BAD-2", "workflow_type": "wfx", "assigned_agents": {"developer": "ghost"}})
    check(st == 400 and "ghost" in err_msg(j), "seed 001 unknown persona/agent -> 400 naming it")
    st, j = api("POST", "/api/workflow/execute", {"workflow_type": "wfx"})
    check(st == 400 and "work_item_id" in err_msg(j), "seed 001 without work_item_id -> 400")
    # a built-in workflow whose agents are not configured cannot start
    st, j = api("GET", "/api/workflows")
    unavailable = [w["id"] for w in j.get("workflows", []) if w.get("available") is False]
    if unavailable:
        st, j = api("POST", "/api/execute", {"task": "x", "workflow": unavailable[0]})
        check(st == 409 and err_code(j) == "workflow_unavailable",
              "execute %s (agents not configured) -> 409 workflow_unavailable" % unavailable[0])
    check(count_tasks(api) == before, "refused requests stored no task (%d -> %d)"
          % (before, count_tasks(api)))


def test_execute_wait(api):
    st, j = api("POST", "/api/execute", {"task": "say hello twice", "workflow": "two", "wait": True,
                                         "timeout": 60}, timeout=90)
    steps = j.get("steps", []) if isinstance(j, dict) else []
    check(st == 200 and j.get("success") is True and j.get("workflow") == "two"
          and j.get("iterations") == 1, "execute wait=true -> 200 {success, workflow, iterations}: %s %s"
          % (st, str(j)[:300]))
    check(len(steps) == 2 and all(isinstance(s, str) and s.startswith(" [OK]") for s in steps),
          "steps are two ' [OK] ...' lines: %s" % steps)
    check("got hello" in (j.get("final_output") or ""),
          "outputs chained: final_output has 'got hello': %r" % j.get("final_output"))

    st, j = api("POST", "/api/execute", {"title": "no wait", "description": "d", "workflow": "two"})
    check(st == 202 and j.get("status") == "pending" and j.get("workflow") == "two"
          and j.get("status_url") == "/api/tasks/" + j.get("task_id", "")
          and j.get("runs_url") == "/api/runs?task_id=" + j.get("task_id", ""),
          "execute without wait -> 202 {task_id, status pending, status_url, runs_url}")
    tid = j.get("task_id", "")
    st, t = api("GET", "/api/tasks/" + tid)
    check(st == 200 and t.get("source") == "api" and t.get("workflow") == "two"
          and t.get("meta", {}).get("inputs") == {} and t.get("meta", {}).get("offline") is False,
          "the task: source api, workflow two, meta {inputs, offline}")
    run = poll(run_reaches(api, tid, ("completed",)), "the run to complete")
    check(run is not None, "the stored task was run by the executor")
    if run:
        st, d = api("GET", "/api/runs/" + run["id"])
        check(st == 200 and d["run"]["id"] == run["id"] and len(d["steps"]) == 2
              and d["approvals"] == [] and d["result"] and d["result"]["success"] is True,
              "GET /api/runs/{id} -> run, steps, approvals, result")
        st, d = api("GET", "/api/runs/%s/steps" % run["id"])
        check(st == 200 and [s["step_key"] for s in d["steps"]] == ["a", "b"],
              "GET /api/runs/{id}/steps in order")
    st, _ = api("GET", "/api/runs/01ARZ3NDEKTSV4RRFFQ69G5FAV")
    check(st == 404, "unknown run -> 404")
    st, _ = api("GET", "/api/runs?status=bogus")
    check(st == 400, "GET /api/runs?status=bogus -> 400")


def test_wait_timeout(api):
    st, j = api("POST", "/api/execute", {"task": "gate me", "workflow": "gate", "wait": True,
                                         "timeout": 1}, timeout=30)
    check(st == 202 and j.get("waited") is True and j.get("task_id"),
          "wait that times out -> 202 with waited true")
    return j.get("task_id")


def test_seed001(api):
    body = {"work_item_id": "FEAT-123", "workflow_type": "gated_feature",
            "assigned_agents": {"developer": "demo"}}
    st, j = api("POST", "/api/workflow/execute", body)
    check(st == 202 and j.get("status") == "started" and j.get("work_item_id") == "FEAT-123"
          and j.get("workflow") == "wfx" and j.get("workflow_type") == "gated_feature"
          and j.get("workflow_id"), "seed 001 execute -> 202 started with workflow_id: %s" % j)
    wid = j.get("workflow_id")
    st, j = api("POST", "/api/workflow/execute", body)
    check(st == 200 and j.get("created") is False and j.get("workflow_id") == wid
          and j.get("status") in ("pending", "in_progress"),
          "duplicate work item -> 200, same workflow_id, created false: %s" % j)
    st, t = api("GET", "/api/tasks/" + (wid or "x"))
    check(st == 200 and t.get("identifier") == "FEAT-123" and t.get("external_id") == "FEAT-123"
          and t.get("meta", {}).get("inputs", {}).get("WORK_ITEM_ID") == "FEAT-123"
          and t.get("meta", {}).get("assigned_agents") == {"developer": "demo"},
          "task: identifier FEAT-123, WORK_ITEM_ID filled, assigned_agents kept")
    s = poll(lambda: (lambda x: x if x and x.get("run_status") == "waiting"
                      and x.get("pending_approvals") else None)(status_of(api, "FEAT-123")),
             "FEAT-123 to wait at its gate")
    check(s is not None and s["workflow_id"] == wid and s["run"]["status"] == "waiting"
          and s["result"] is None and s["pending_approvals"][0]["step_key"] == "sign-off",
          "status by work item: run waiting with a pending approval")
    st, j = api("GET", "/api/workflow/status/NOPE-404")
    check(st == 404 and "NOPE-404" in err_msg(j), "status of an unknown work item -> 404")
    if not s:
        return
    ap = s["pending_approvals"][0]
    st, j = api("GET", "/api/approvals?run_id=" + s["run"]["id"])
    check(st == 200 and [a["id"] for a in j["approvals"]] == [ap["id"]],
          "GET /api/approvals?run_id= lists the pending one")
    st, j = api("POST", "/api/approvals/" + ap["id"], {"decision": "maybe"})
    check(st == 400 and "decision" in err_msg(j), "decision 'maybe' -> 400")
    st, j = api("POST", "/api/approvals/" + ap["id"], {"decision": "approve", "comment": "go", "by": "alice"})
    check(st == 200 and j.get("status") == "approved" and j.get("decided_by") == "alice"
          and j.get("comment") == "go", "approve -> 200 approved by alice")
    st, j = api("POST", "/api/approvals/%s/reject" % ap["id"])
    check(st == 409 and "approved" in err_msg(j) and "alice" in err_msg(j),
          "deciding twice -> 409 naming the decision that stands: %s" % err_msg(j))
    s = poll(lambda: (lambda x: x if x and x.get("status") == "completed" else None)(
        status_of(api, "FEAT-123")), "FEAT-123 to complete")
    check(s is not None and s["result"] and s["result"]["success"] is True
          and "built FEAT-123" in (s["result"].get("final_output") or ""),
          "approved: the run completed and its last step ran")
    st, d = api("GET", "/api/runs/" + ap["run_id"])
    check(st == 200 and [(a["id"], a["status"]) for a in d["approvals"]] == [(ap["id"], "approved")]
          and d["result"]["success"] is True and d["run"]["status"] == "completed",
          "GET /api/runs/{id} shows the decided approval and the result")
    st, j = api("GET", "/api/approvals/" + ap["id"])
    check(st == 200 and j.get("status") == "approved", "GET /api/approvals/{id}")
    st, j = api("GET", "/api/approvals")
    check(st == 200 and ap["id"] not in [a["id"] for a in j["approvals"]],
          "GET /api/approvals (pending by default) no longer lists it")
    st, j = api("GET", "/api/approvals?status=approved")
    check(st == 200 and ap["id"] in [a["id"] for a in j["approvals"]],
          "GET /api/approvals?status=approved lists it")
    st, j = api("GET", "/api/approvals?status=bogus")
    check(st == 400 and "bogus" in err_msg(j), "GET /api/approvals?status=bogus -> 400")
    st, _ = api("GET", "/api/approvals/01ARZ3NDEKTSV4RRFFQ69G5FAV")
    check(st == 404, "unknown approval -> 404")
    st, _ = api("POST", "/api/approvals/01ARZ3NDEKTSV4RRFFQ69G5FAV", {"decision": "approve"})
    check(st == 404, "deciding an unknown approval -> 404")


def test_reject(api):
    st, j = api("POST", "/api/execute", {"task": "reject me", "workflow": "gate"})
    tid = j.get("task_id", "")
    s = poll(lambda: (lambda x: x if x and x.get("pending_approvals") else None)(status_of(api, tid)),
             "the gate to wait")
    check(s is not None and s.get("run_status") == "waiting", "gate run waits (status by task id)")
    if not s:
        return
    ap = s["pending_approvals"][0]
    st, j = api("POST", "/api/approvals/%s/reject" % ap["id"], {"comment": "not yet"})
    check(st == 200 and j.get("status") == "rejected" and j.get("decided_by") == "api",
          "reject shortcut -> 200 rejected by api")
    run = poll(run_reaches(api, tid, ("failed",)), "the rejected run to fail")
    check(run is not None, "rejected: the run failed")
    st, t = api("GET", "/api/tasks/" + tid)
    check(st == 200 and t.get("status") == "failed", "rejected: the task failed")
    st, j = api("POST", "/api/approvals/" + ap["id"], {"approved": True})
    check(st == 409 and "rejected" in err_msg(j), "approving a rejected approval -> 409")


def test_cancel(api):
    st, j = api("POST", "/api/execute", {"task": "nap", "workflow": "slow"})
    tid = j.get("task_id", "")
    run = poll(lambda: (lambda r: r if r and r["status"] == "running" else None)(latest_run(api, tid)),
               "the slow run to start")
    if not check(run is not None, "slow run started"):
        return
    poll(lambda: (lambda st_j: st_j[0] == 200 and st_j[1]["steps"]
                  and st_j[1]["steps"][0]["status"] == "running")(api("GET", "/api/runs/%s/steps" % run["id"])),
         "its sleep step to run")
    t0 = time.time()
    st, j = api("POST", "/api/runs/%s/cancel" % run["id"], {"reason": "too slow"})
    check(st == 202 and j == {"run_id": run["id"], "task_id": tid, "status": "cancelling",
                              "task_status": "cancelled"}, "cancel -> 202 cancelling: %s" % j)
    done = poll(run_reaches(api, tid, ("cancelled",)), "the run to be cancelled", timeout=10)
    took = time.time() - t0
    check(done is not None and took < 10, "run cancelled in %.1f s (< 10)" % took)
    st, t = api("GET", "/api/tasks/" + tid)
    check(st == 200 and t.get("status") == "cancelled", "its task is cancelled")
    st, d = api("GET", "/api/runs/%s/steps" % run["id"])
    check(st == 200 and d["steps"] and d["steps"][-1]["status"] == "cancelled",
          "its sleep step was stopped (status cancelled): %s" % [s["status"] for s in d.get("steps", [])])
    st, j = api("POST", "/api/runs/%s/cancel" % run["id"])
    check(st == 409, "cancelling it again -> 409")


def hang_up_while_waiting(port):
    """Send a waiting execute and close the socket without reading the answer."""
    s = socket.create_connection(("127.0.0.1", port))
    body = b'{"task": "hang up", "workflow": "gate", "wait": true, "timeout": 2}'
    s.sendall(b"POST /api/execute HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode()
              + b"\r\nContent-Type: application/json\r\nContent-Length: "
              + str(len(body)).encode() + b"\r\n\r\n" + body)
    time.sleep(0.3)
    s.close()


def main():
    with tempfile.TemporaryDirectory() as tmp:
        srv = harness.serve(tmp, config(tmp))
        api = Api(srv)
        try:
            test_catalogue(api)
            test_bad_input(api)
            test_execute_wait(api)
            test_wait_timeout(api)
            test_seed001(api)
            test_reject(api)
            test_cancel(api)
            hang_up_while_waiting(srv.port)
            time.sleep(2.5)  # its wait times out with nobody to answer
            st, _ = api("GET", "/api/workflows")
            check(st == 200, "server fine after a waiting client hung up")
            # a request still waiting when SIGTERM arrives gets its 202 and nothing leaks
            got = {}

            def waiter():
                got["r"] = api("POST", "/api/execute", {"task": "wait at shutdown", "workflow": "gate",
                                                        "wait": True, "timeout": 120}, timeout=60)
            th = threading.Thread(target=waiter)
            th.start()
            time.sleep(1.0)
        finally:
            rc = srv.stop()
        th.join(60)
        st, j = got.get("r", (0, None))
        check(st in (202, 503) and (st == 503 or j.get("waited") is True),
              "a wait in progress at SIGTERM is answered (%s %s)" % (st, j))
        err = srv.stderr()
        bad = [l for l in err.splitlines()
               if "Sanitizer" in l or "runtime error" in l or "left open" in l]
        check(rc == 0 and not bad, "SIGTERM -> exit %s, sanitizers quiet, no handles left %s" % (rc, bad[:3]))
    harness.finish()


if __name__ == "__main__":
    main()
