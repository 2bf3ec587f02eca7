#!/usr/bin/env python3
"""`baton worker` (seed 002's worker client) against a real `baton serve`:

1. configured only by the seed's environment variables (ORCHESTRATOR_URL, WORKER_ID,
   WORKER_POLL_INTERVAL, WORKSPACE_DIR, plus WORKER_COMMAND), it runs an item in
   WORKSPACE_DIR/issue-N with the task in its environment and the body on stdin, and
   the task is completed with the agent's output and pull-request URL;
2. a worker SIGKILLed mid-item: after its lease expires the item is re-queued and
   completed by another worker, and the dead worker's late /work/complete,
   /work/failed and /work/heartbeat (its id and lease token) are refused with 409;
3. a live worker whose item is cancelled loses the lease at its next heartbeat, kills
   the agent's process group and drops the item without reporting;
4. with the server down the worker backs off (growing, capped delays, one warning not
   one per attempt) and picks up work once the server comes back;
5. an agent exiting non-zero fails the item with its exit status and stderr tail;
6. SIGTERM mid-item: the agent is stopped, the item reported failed (retryable, so it
   goes back to pending) and the worker exits 0.
"""
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

# These tests hand tasks out through the worker protocol (/work/next) or watch the queue
# untouched: the daemon's own executor must not run them.
os.environ["BATON_LOCAL_RUNS"] = "0"

BATON = os.environ.get("BATON_BINARY", "baton")
FAILS = []
PROCS = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        FAILS.append(what)


def clean_env(**extra):
    e = {k: v for k, v in os.environ.items()
         if not k.startswith(("ORCHESTRATOR_", "WORKER_", "WORKSPACE_DIR", "DATABASE_URL",
                              "BATON_CONFIG", "LOG_LEVEL"))}
    e.update(extra)
    return e


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def serve(tmp, port=0, name="b"):
    cfg = os.path.join(tmp, "serve.yaml")
    with open(cfg, "w") as f:
        f.write("queue:\n  lease: 3s\n  max_attempts: 3\n  backoff_base: 60s\n")
    p = subprocess.Popen([BATON, "serve", "--port", str(port), "--config", cfg, "--store",
                          "sqlite:" + os.path.join(tmp, name + ".db")],
                         stdout=subprocess.PIPE, stderr=open(os.path.join(tmp, name + ".err"), "w"),
                         text=True, cwd=tmp, env=clean_env())
    PROCS.append(p)
    line = p.stdout.readline()
    m = re.search(r"listening on http://([\d.]+):(\d+)", line)
    if not m:
        p.kill()
        raise SystemExit("serve did not start: %r" % line)
    return p, int(m.group(2))


def call(port, method, path, body=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    data = json.dumps(body) if body is not None else None
    c.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
    r = c.getresponse()
    d = r.read()
    c.close()
    try:
        return r.status, json.loads(d) if d else None
    except ValueError:
        return r.status, d


def add_task(port, title, issue, body="the body"):
    st, t = call(port, "POST", "/api/tasks", {"title": title, "body": body,
                                              "meta": {"issue_number": issue}})
    assert st == 201, (st, t)
    return t["id"]


def task(port, tid):
    return call(port, "GET", "/api/tasks/" + tid)[1]


def worker(tmp, name, args=(), env=None):
    errf = os.path.join(tmp, name + ".log")
    p = subprocess.Popen([BATON, "worker"] + list(args), stdout=subprocess.PIPE,
                         stderr=open(errf, "w"), text=True, cwd=tmp,
                         env=env or clean_env(LOG_LEVEL="debug"))
    PROCS.append(p)
    banner = p.stdout.readline()
    return p, errf, banner


def logs(path):
    out = []
    with open(path) as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"msg": "(not json) " + line.strip()})
    return out


def wait_for(pred, timeout, step=0.1):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def stop(p, what, timeout=15):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
    try:
        rc = p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        rc = "hung"
    check(rc == 0, "%s: SIGTERM -> exit %s" % (what, rc))
    return rc


def sanitizer_clean(path, what):
    with open(path) as f:
        text = f.read()
    bad = [l for l in text.splitlines()
           if "Sanitizer" in l or "runtime error" in l or "left open" in l]
    check(not bad, "%s: no sanitizer reports or leftover handles %s" % (what, bad[:3]))


def pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def scenario_env_and_complete(tmp, port):
    ws = os.path.join(tmp, "ws-env")
    tid = add_task(port, "Add user authentication", 123, body="Implement JWT auth")
    cmd = ('env | grep ^BATON_ | sort > env.txt; cat > stdin.txt; pwd > pwd.txt; '
           'echo working; echo "PR: https://github.com/o/r/pull/124."')
    env = clean_env(ORCHESTRATOR_URL="http://127.0.0.1:%d" % port, WORKER_ID="worker-env",
                    WORKER_POLL_INTERVAL="1", WORKSPACE_DIR=ws, WORKER_COMMAND=cmd)
    p, errf, banner = worker(tmp, "w-env", env=env)
    check("worker worker-env polling http://127.0.0.1:%d every 1s" % port in banner,
          "banner shows the environment's settings: " + banner.strip())
    t = wait_for(lambda: (lambda t: t if t["status"] == "completed" else None)(task(port, tid)), 15)
    check(t is not None, "item completed by the env-configured worker")
    if t:
        res = t.get("result") or {}
        check(res.get("pr_url") == "https://github.com/o/r/pull/124",
              "pr_url found in the agent's output: %r" % res.get("pr_url"))
        check("working" in (res.get("output") or ""), "result carries the output tail")
    d = os.path.join(ws, "issue-123")
    check(os.path.isdir(d), "per-item workspace WORKSPACE_DIR/issue-123")
    envtxt = open(os.path.join(d, "env.txt")).read() if os.path.exists(os.path.join(d, "env.txt")) else ""
    for want in ("BATON_TASK_ID=" + tid, "BATON_ISSUE_NUMBER=123",
                 "BATON_TITLE=Add user authentication", "BATON_BRANCH=ai-feature/issue-123",
                 "BATON_WORKER_ID=worker-env", "BATON_WORKSPACE=" + os.path.realpath(d)):
        check(want in envtxt.splitlines(), "agent environment has " + want)
    check(open(os.path.join(d, "stdin.txt")).read() == "Implement JWT auth"
          if os.path.exists(os.path.join(d, "stdin.txt")) else False, "task body on stdin")
    st, w = call(port, "GET", "/workers")
    ids = [x["id"] for x in (w or {}).get("workers", [])]
    check("worker-env" in ids, "worker registered under WORKER_ID: %s" % ids)
    t0 = time.time()
    stop(p, "idle worker")
    check(time.time() - t0 < 3, "idle worker stops promptly")
    sanitizer_clean(errf, "env worker")


def scenario_agent_fails(tmp, port):
    ws = os.path.join(tmp, "ws-fail")
    tid = add_task(port, "Doomed", 13)
    p, errf, _ = worker(tmp, "w-fail", ["--server", "http://127.0.0.1:%d" % port, "--id", "fail-f",
                                        "--workspace", ws, "--once", "--command",
                                        "echo progress; echo 'lint: 2 errors' >&2; exit 3"])
    rc = p.wait(20)
    check(rc == 1, "--once with a failing agent exits 1: %s" % rc)
    t = task(port, tid)
    check(t["status"] == "pending" and t["attempts"] == 1,
          "failed item goes back to pending for a retry: %s" % t["status"])
    check("exited with status 3: lint: 2 errors" in (t.get("error") or ""),
          "error carries the exit status and stderr tail: %r" % t.get("error"))
    sanitizer_clean(errf, "failing-agent worker")


def scenario_sigkill(tmp, port):
    ws = os.path.join(tmp, "ws-kill")
    tid = add_task(port, "Crashy", 7)
    marker = os.path.join(tmp, "agent-a.pid")
    cmd_a = "echo $$ > %s; sleep 30" % marker
    a, errf_a, _ = worker(tmp, "w-a", ["--server", "http://127.0.0.1:%d" % port, "--id", "dead-a",
                                       "--workspace", ws, "--command", cmd_a,
                                       "--poll-interval", "1"])
    check(wait_for(lambda: os.path.exists(marker) and open(marker).read().strip(), 10),
          "worker A started the agent")
    t = task(port, tid)
    check(t["status"] == "in_progress" and t["lease_owner"] == "dead-a",
          "task in progress, leased to dead-a")
    token_a = t["fencing"]
    a.send_signal(signal.SIGKILL)
    a.wait()
    # A SIGKILLed worker cannot stop its agent (own process group): clean it up here.
    agent_pid = int(open(marker).read().strip())
    try:
        os.killpg(agent_pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    killed_at = time.time()

    b, errf_b, _ = worker(tmp, "w-b", ["--server", "http://127.0.0.1:%d" % port, "--id", "alive-b",
                                       "--workspace", ws, "--command", "echo done-by-b",
                                       "--poll-interval", "1"])
    t = wait_for(lambda: (lambda t: t if t["status"] == "completed" else None)(task(port, tid)), 20)
    check(t is not None, "item re-queued after lease expiry and completed by worker B")
    if t:
        check(time.time() - killed_at >= 2.0, "not before the 3 s lease expired")
        check("done-by-b" in ((t.get("result") or {}).get("output") or ""),
              "the result is worker B's")
        check(t["attempts"] == 2, "two attempts recorded: %s" % t["attempts"])
    stop(b, "worker B")
    sanitizer_clean(errf_b, "worker B")

    late = {"worker_id": "dead-a", "issue_number": 7, "task_id": tid, "lease_token": token_a,
            "pr_url": "https://github.com/o/r/pull/666", "success": True}
    st, body = call(port, "POST", "/work/complete", late)
    check(st == 409 and (body or {}).get("error", {}).get("code") == "stale",
          "dead worker's late /work/complete refused: %s %s" % (st, body))
    seed_shape = {"worker_id": "dead-a", "issue_number": 7, "pr_url": None, "success": True}
    st, _ = call(port, "POST", "/work/complete", seed_shape)
    check(st == 409, "seed-shaped late complete (no token) refused too: %s" % st)
    st, _ = call(port, "POST", "/work/failed", {"worker_id": "dead-a", "issue_number": 7,
                                                "task_id": tid, "lease_token": token_a,
                                                "error": "late"})
    check(st == 409, "dead worker's late /work/failed refused: %s" % st)
    st, _ = call(port, "POST", "/work/heartbeat", {"worker_id": "dead-a", "task_id": tid,
                                                   "lease_token": token_a})
    check(st == 409, "dead worker's late heartbeat refused: %s" % st)
    t = task(port, tid)
    check(t["status"] == "completed" and "pull/666" not in json.dumps(t),
          "the task is unchanged by the late reports")


def scenario_lease_lost(tmp, port):
    ws = os.path.join(tmp, "ws-lost")
    tid = add_task(port, "Cancelled midway", 9)
    marker = os.path.join(tmp, "agent-c.pid")
    cmd = "echo $$ > %s; sleep 30 & wait" % marker
    c, errf, _ = worker(tmp, "w-c", ["--server", "http://127.0.0.1:%d" % port, "--id", "loser-c",
                                     "--workspace", ws, "--command", cmd, "--poll-interval", "1"])
    check(wait_for(lambda: os.path.exists(marker) and open(marker).read().strip(), 10),
          "worker C started the agent")
    pid = int(open(marker).read().strip())
    st, _ = call(port, "POST", "/api/tasks/%s/cancel" % tid, {})
    check(st == 200, "task cancelled through the API: %s" % st)
    check(wait_for(lambda: not pid_alive(pid), 8), "agent killed after the heartbeat said 409")
    msgs = wait_for(lambda: [l["msg"] for l in logs(errf)
                             if "dropped without a report" in l.get("msg", "")], 8)
    check(bool(msgs), "worker logged the dropped item")
    check(not any("item completed" in l.get("msg", "") or "item reported failed" in l.get("msg", "")
                  for l in logs(errf)), "no report sent for the lost item")
    check(task(port, tid)["status"] == "cancelled", "task stays cancelled")
    stop(c, "worker C")
    sanitizer_clean(errf, "worker C")


def scenario_backoff(tmp):
    port = free_port()
    ws = os.path.join(tmp, "ws-backoff")
    p, errf, _ = worker(tmp, "w-backoff", ["--server", "http://127.0.0.1:%d" % port, "--id",
                                           "patient", "--workspace", ws, "--command",
                                           "echo ok", "--poll-interval", "1",
                                           "--max-backoff", "2s"])
    time.sleep(5)
    L = logs(errf)
    warns = [l for l in L if l.get("msg", "").startswith("orchestrator unreachable")]
    delays = [l["retry_in_ms"] for l in L if l.get("msg") == "poll failed; retrying"]
    check(len(warns) == 1, "server down: one warning, not one per attempt (%d)" % len(warns))
    check(len(delays) >= 3, "retried several times: %s" % delays)
    check(delays and delays[0] <= 500 and max(delays) <= 2000, "delays start small, capped at 2 s")
    check(delays == sorted(delays[:3]) + delays[3:] and len(delays) >= 3 and delays[2] > delays[0],
          "delays grow: %s" % delays)
    s, sport = serve(tmp, port, "b2")
    tid = add_task(sport, "After the outage", 55)
    t = wait_for(lambda: (lambda t: t if t["status"] == "completed" else None)(task(sport, tid)), 10)
    check(t is not None, "worker resumed and completed work once the server returned")
    check(any(l.get("msg") == "orchestrator reachable again" for l in logs(errf)),
          "recovery logged once")
    stop(p, "backoff worker")
    sanitizer_clean(errf, "backoff worker")
    s.send_signal(signal.SIGTERM)
    s.wait(15)


def scenario_sigterm_mid_item(tmp, port):
    ws = os.path.join(tmp, "ws-term")
    tid = add_task(port, "Interrupted", 11)
    marker = os.path.join(tmp, "agent-t.pid")
    cmd = "echo $$ > %s; sleep 30" % marker
    p, errf, _ = worker(tmp, "w-t", ["--server", "http://127.0.0.1:%d" % port, "--id", "term-t",
                                     "--workspace", ws, "--command", cmd, "--poll-interval", "1"])
    check(wait_for(lambda: os.path.exists(marker) and open(marker).read().strip(), 10),
          "worker started the agent")
    pid = int(open(marker).read().strip())
    t0 = time.time()
    stop(p, "worker mid-item")
    check(time.time() - t0 < 8, "stopped within the kill grace")
    check(not pid_alive(pid), "agent stopped with the worker")
    t = task(port, tid)
    check(t["status"] == "pending" and "shutting down" in (t.get("error") or ""),
          "item reported failed (retryable) and back to pending: %s / %r"
          % (t["status"], t.get("error")))
    sanitizer_clean(errf, "SIGTERM worker")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        try:
            s, port = serve(tmp)
            scenario_env_and_complete(tmp, port)
            scenario_sigkill(tmp, port)
            scenario_agent_fails(tmp, port)
            scenario_lease_lost(tmp, port)
            scenario_sigterm_mid_item(tmp, port)
            s.send_signal(signal.SIGTERM)
            check(s.wait(15) == 0, "server exits 0")
            scenario_backoff(tmp)
        finally:
            for p in PROCS:
                if p.poll() is None:
                    p.kill()
                    p.wait()
    if FAILS:
        print("%d check(s) failed" % len(FAILS))
        sys.exit(1)
    print("all worker checks passed")


if __name__ == "__main__":
    main()
