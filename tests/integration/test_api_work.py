#!/usr/bin/env python3
"""Seed 002's worker protocol through the real binary over HTTP: /work/next,
/work/heartbeat, /work/complete, /work/failed, /workers and /queue, with the seed's JSON
shapes compared key by key against the seed's own examples; fencing (a worker whose
lease expired and whose item the reaper handed to another worker is refused with 409
and changes nothing); retries (2 attempts by default, then failed); lease expiry;
workers turning unhealthy; and the error paths (400, 404, 405 + Allow, 401, 403, 413)."""
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

# These tests hand tasks out through the worker protocol (/work/next) or watch the queue
# untouched: the daemon's own executor must not run them.
os.environ["BATON_LOCAL_RUNS"] = "0"

BATON = os.environ.get("BATON_BINARY", "baton")
FAILS = []
TOK_R, TOK_W, TOK_WK = "read-token-0123456789", "write-token-0123456789", "worker-token-0123456789"
LEASE_S = 1.0
OFFLINE_S = 2.0
CONFIG = """server:
  tokens:
    - {name: r, token: "%s", scopes: [read]}
    - {name: w, token: "%s", scopes: [read, write]}
    - {name: wk, token: "%s", scopes: [worker]}
queue:
  lease: 1s
  backoff_base: 200ms
  backoff_max: 1s
workers:
  offline_after: 2s
trackers:
  github:
    repo: default-owner/default-repo
""" % (TOK_R, TOK_W, TOK_WK)

# The seed's examples (seed 002, "API Reference").
SEED_NEXT = {"work_available": True, "issue_number": 123, "title": "Add user authentication",
             "body": "Implement JWT-based authentication...",
             "labels": ["ai-ready", "priority:high"], "branch_name": "ai-feature/issue-123",
             "repository": "owner/repo"}
SEED_WORKER_KEYS = ["id", "ip", "status", "current_task", "last_seen", "health"]
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        FAILS.append(what)


def env():
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("ORCHESTRATOR_", "DATABASE_URL", "BATON_CONFIG", "JWT_SECRET",
                                 "GITHUB_", "WORKER_"))}


class Server:
    def __init__(self, tmp):
        self.tmp = tmp
        self.cfg = os.path.join(tmp, "baton.yaml")
        with open(self.cfg, "w") as f:
            f.write(CONFIG)
        self.p = subprocess.Popen([BATON, "serve", "--port", "0", "--config", self.cfg,
                                   "--store", "sqlite:" + os.path.join(tmp, "work.db")],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  cwd=tmp, env=env())
        line = self.p.stdout.readline()
        m = re.search(r"listening on http://([\d.]+):(\d+)", line)
        if not m:
            self.p.kill()
            raise SystemExit("serve did not start: %r %s" % (line, self.p.stderr.read()))
        self.port = int(m.group(2))

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        try:
            rc = self.p.wait(20)
        except subprocess.TimeoutExpired:
            self.p.kill()
            rc = "hung"
        err = self.p.stderr.read()
        self.p.stdout.close()
        self.p.stderr.close()
        bad = [l for l in err.splitlines()
               if "Sanitizer" in l or "runtime error" in l or "left open" in l]
        check(rc == 0 and not bad, "SIGTERM -> exit %s, sanitizers quiet %s" % (rc, bad[:3]))
        return err

    def req(self, method, path, body=None, token=TOK_WK, raw=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        h = {}
        if token:
            h["Authorization"] = "Bearer " + token
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        if data is not None:
            h["Content-Type"] = "application/json"
        try:
            c.request(method, path, body=data, headers=h)
            r = c.getresponse()
            d = r.read()
        except (ConnectionError, http.client.HTTPException) as e:
            c.close()
            return 0, {}, {"transport_error": str(e)}
        c.close()
        try:
            j = json.loads(d) if d else None
        except ValueError:
            j = {"raw": d.decode(errors="replace")}
        return r.status, {k.lower(): v for k, v in r.getheaders()}, j

    def task(self, tid):
        return self.req("GET", "/api/tasks/" + tid, token=TOK_R)[2]

    def create(self, **body):
        st, _, t = self.req("POST", "/api/tasks", body, token=TOK_W)
        assert st == 201, (st, t)
        return t

    def next(self, worker):
        return self.req("GET", "/work/next?worker_id=" + worker)

    def workers(self):
        st, _, j = self.req("GET", "/workers", token=TOK_R)
        return {w["id"]: w for w in j["workers"]}


def err_code(j):
    return (j or {}).get("error", {}).get("code")


def err_msg(j):
    return (j or {}).get("error", {}).get("message", "")


def wait_for(fn, timeout=8.0, step=0.05):
    end = time.time() + timeout
    while time.time() < end:
        v = fn()
        if v:
            return v
        time.sleep(step)
    return fn()


def test_auth_and_errors(s):
    st, _, j = s.req("GET", "/work/next?worker_id=w", token=None)
    check(st == 401, "/work/next without a token -> 401")
    st, _, j = s.req("GET", "/work/next?worker_id=w", token="wrong-token-xxxxxxxxxx")
    check(st == 401, "/work/next with a bad token -> 401")
    st, _, j = s.req("GET", "/work/next?worker_id=w", token=TOK_R)
    check(st == 403, "/work/next with a read token -> 403")
    st, _, j = s.req("POST", "/work/complete", {"worker_id": "w", "issue_number": 1}, token=TOK_W)
    check(st == 403, "/work/complete with a write token -> 403")
    st, _, j = s.req("GET", "/workers", token=TOK_WK)
    check(st == 403, "/workers with a worker-only token -> 403")
    st, _, j = s.req("GET", "/queue", token=None)
    check(st == 401, "/queue without a token -> 401")
    check(s.workers() == {}, "refused calls registered no worker")

    st, _, j = s.req("GET", "/work/next")
    check(st == 400 and "worker_id" in err_msg(j), "/work/next without worker_id -> 400: " + err_msg(j))
    st, _, j = s.req("GET", "/work/next?worker_id=")
    check(st == 400, "/work/next with an empty worker_id -> 400")
    st, h, j = s.req("POST", "/work/next?worker_id=w")
    check(st == 405 and "GET" in h.get("allow", ""), "POST /work/next -> 405, Allow " + h.get("allow", ""))
    for path in ("/work/complete", "/work/failed", "/work/heartbeat"):
        st, h, j = s.req("GET", path)
        check(st == 405 and h.get("allow") == "POST", "GET %s -> 405, Allow POST" % path)
        st, _, j = s.req("POST", path, raw='{"worker_id": "w", issue_number: 1}')
        check(st == 400 and err_code(j) == "invalid_json" and "column" in err_msg(j),
              "%s bad JSON -> 400 with position: %s" % (path, err_msg(j)))
        st, _, j = s.req("POST", path, {"issue_number": 1})
        check(st == 400 and "worker_id" in err_msg(j), "%s without worker_id -> 400" % path)
        st, _, j = s.req("POST", path, {"worker_id": "w"})
        check(st == 400 and "task_id" in err_msg(j), "%s without task -> 400: %s" % (path, err_msg(j)))
        st, _, j = s.req("POST", path, {"worker_id": "w", "issue_number": "abc"})
        check(st == 400 and "issue_number" in err_msg(j), "%s issue_number abc -> 400" % path)
        st, _, j = s.req("POST", path, {"worker_id": "w", "task_id": "01ARZ3NDEKTSV4RRFFQ69G5FAV"})
        check(st == 404 and err_code(j) == "not_found", "%s unknown task_id -> 404" % path)
        st, _, j = s.req("POST", path, {"worker_id": "w", "task_id": "nope"})
        check(st == 404, "%s malformed task_id -> 404" % path)
        st, _, j = s.req("POST", path, raw=json.dumps({"worker_id": "w", "error": "x" * (2 << 20)}))
        check(st in (413, 0), "%s 2 MiB body -> 413 (%s)" % (path, st))
    st, _, j = s.req("POST", "/work/complete", {"worker_id": "w", "issue_number": 1, "success": "yes"})
    check(st == 400 and "success" in err_msg(j), "success not a boolean -> 400")
    st, _, j = s.req("POST", "/work/complete", {"worker_id": "w", "issue_number": 1,
                                                 "lease_token": "7"})
    check(st == 400 and "lease_token" in err_msg(j), "lease_token not an integer -> 400")


def test_seed_shapes(s):
    st, _, j = s.next("worker-1")
    check(st == 200 and j == {"work_available": False}, "empty queue: exactly the seed's shape %s" % j)
    w = s.workers().get("worker-1", {})
    check(w.get("status") == "idle" and w.get("current_task") is None,
          "asking for work registered worker-1 as idle")

    t = s.create(title=SEED_NEXT["title"], body=SEED_NEXT["body"], labels=SEED_NEXT["labels"],
                 meta={"issue_number": 123, "repository": "owner/repo"})
    st, _, j = s.next("worker-1")
    check(st == 200, "/work/next -> 200")
    for k, v in SEED_NEXT.items():
        check(j.get(k) == v, "/work/next %s == seed's %r (got %r)" % (k, v, j.get(k)))
    check(list(j.keys())[:len(SEED_NEXT)] == list(SEED_NEXT.keys()), "seed keys first, in seed order")
    check(j.get("task_id") == t["id"] and isinstance(j.get("lease_token"), int) and
          j["lease_token"] > 0 and ISO.match(j.get("lease_expires_at") or "") and
          "workflow" in j and "project" in j, "additive fields task_id, lease_token, lease_expires_at, "
          "workflow, project: %s" % {k: j.get(k) for k in ("task_id", "lease_token", "lease_expires_at")})
    st, _, k = s.next("worker-2")
    check(k == {"work_available": False}, "the item is not handed out twice")

    workers = s.workers()
    st, _, raw = s.req("GET", "/workers", token=TOK_R)
    check(list(raw.keys()) == ["workers"], "/workers top level is {\"workers\": [...]}")
    w1 = workers.get("worker-1", {})
    check(list(w1.keys()) == SEED_WORKER_KEYS, "/workers entry has exactly the seed's keys in order: %s"
          % list(w1.keys()))
    check(w1.get("status") == "busy" and w1.get("current_task") == 123 and
          w1.get("health") == "healthy" and w1.get("ip") == "127.0.0.1",
          "worker-1 busy on issue 123, healthy, ip from the peer: %s" % w1)
    check(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$", w1.get("last_seen", "")) is not None,
          "last_seen in the seed's format: %s" % w1.get("last_seen"))
    check(workers.get("worker-2", {}).get("status") == "idle", "worker-2 idle")

    st, _, q = s.req("GET", "/queue", token=TOK_R)
    check(st == 200 and list(q.keys()) == ["pending", "in_progress", "completed"],
          "/queue has the seed's three keys")
    ip = q["in_progress"]
    check(len(ip) == 1 and ip[0]["task_id"] == t["id"] and ip[0]["issue_number"] == 123 and
          ip[0]["worker"] == "worker-1", "/queue in_progress shows the item and its worker")

    # heartbeat (seed workers send only issue_number) extends the lease
    time.sleep(0.1)
    st, _, hb = s.req("POST", "/work/heartbeat", {"worker_id": "worker-1", "issue_number": 123})
    check(st == 200 and hb.get("ok") is True and hb["lease_expires_at"] > j["lease_expires_at"],
          "heartbeat extends the lease: %s" % hb)
    st, _, hb3 = s.req("POST", "/work/heartbeat", {"worker_id": "worker-1", "task_id": "",
                                                    "issue_number": 123, "lease_token": None})
    check(st == 200, "empty task_id / null lease_token are treated as absent")
    st, _, hb2 = s.req("POST", "/work/heartbeat", {"worker_id": "worker-2", "issue_number": 123})
    check(st == 409 and err_code(hb2) == "stale", "another worker's heartbeat -> 409 stale")

    # completion with the seed's exact request body
    st, _, c = s.req("POST", "/work/complete", {"worker_id": "worker-1", "issue_number": 123,
                                                 "pr_url": "https://github.com/owner/repo/pull/124",
                                                 "success": True})
    check(st == 200 and c.get("ok") is True and c.get("status") == "completed", "complete: %s" % c)
    g = s.task(t["id"])
    check(g["status"] == "completed" and g["result"] == {"pr_url": "https://github.com/owner/repo/pull/124"},
          "task completed with the PR url as its result")
    w1 = s.workers()["worker-1"]
    check(w1["status"] == "idle" and w1["current_task"] is None, "worker-1 idle again")
    st, _, q = s.req("GET", "/queue", token=TOK_R)
    check([x["task_id"] for x in q["completed"]] == [t["id"]] and q["in_progress"] == [],
          "/queue shows it completed")
    st, _, c = s.req("POST", "/work/complete", {"worker_id": "worker-1", "issue_number": 123,
                                                 "success": True})
    check(st == 409 and err_code(c) == "stale", "completing twice -> 409 stale")

    # an item without an issue number: branch from its identifier, default repository
    t2 = s.create(title="no issue", identifier="web#42 fix")
    st, _, j = s.next("worker-1")
    check(j.get("task_id") == t2["id"] and j["issue_number"] is None and
          j["branch_name"] == "ai-feature/issue-web-42-fix" and
          j["repository"] == "default-owner/default-repo",
          "no issue number: branch from the sanitised identifier, repository from trackers.github: "
          "%s %s" % (j.get("branch_name"), j.get("repository")))
    w1 = s.workers()["worker-1"]
    check(w1["current_task"] == t2["id"], "current_task is the task id when there is no issue number")
    st, _, c = s.req("POST", "/work/complete", {"worker_id": "worker-1", "task_id": t2["id"],
                                                 "lease_token": j["lease_token"],
                                                 "result": {"summary": "done"}})
    check(st == 200 and s.task(t2["id"])["result"] == {"summary": "done"},
          "complete by task_id + lease_token with a result object")


def test_fencing(s):
    t = s.create(title="fenced", meta={"issue_number": 200})
    st, _, a = s.next("worker-a")
    check(a.get("task_id") == t["id"], "worker-a claims issue 200")
    # worker-a goes silent: the lease (1s) expires and the reaper puts the item back
    back = wait_for(lambda: s.task(t["id"])["status"] == "pending", timeout=6)
    check(back, "the reaper re-queued the expired lease")
    st, _, b = s.next("worker-b")
    check(b.get("task_id") == t["id"] and b["lease_token"] > a["lease_token"],
          "worker-b gets it with a higher lease token (%s > %s)" % (b.get("lease_token"), a["lease_token"]))
    before = s.task(t["id"])
    attempts = [
        ("/work/complete", {"worker_id": "worker-a", "issue_number": 200,
                            "pr_url": "https://x/pull/1", "success": True}),
        ("/work/complete", {"worker_id": "worker-a", "task_id": t["id"],
                            "lease_token": a["lease_token"], "success": True}),
        ("/work/complete", {"worker_id": "worker-b", "task_id": t["id"],
                            "lease_token": a["lease_token"], "success": True}),
        ("/work/failed", {"worker_id": "worker-a", "issue_number": 200, "error": "late"}),
        ("/work/heartbeat", {"worker_id": "worker-a", "task_id": t["id"],
                             "lease_token": a["lease_token"]}),
    ]
    for path, body in attempts:
        st, _, j = s.req("POST", path, body)
        check(st == 409 and err_code(j) == "stale", "stale %s %s -> 409 stale: %s"
              % (path, {k: body[k] for k in body if k != "pr_url"}, err_msg(j)))
    after = s.task(t["id"])
    check(after == before and after["status"] == "in_progress" and after["lease_owner"] == "worker-b"
          and after["result"] is None, "the stale reports changed nothing")
    st, _, j = s.req("POST", "/work/complete", {"worker_id": "worker-b", "issue_number": 200,
                                                 "success": True, "pr_url": "https://x/pull/2"})
    check(st == 200 and s.task(t["id"])["result"] == {"pr_url": "https://x/pull/2"},
          "the current holder completes it")


def test_retries(s):
    t = s.create(title="flaky", meta={"issue_number": 300})
    check(t["max_attempts"] == 2, "default max_attempts is 2 (seed 002)")
    st, _, a = s.next("worker-r")
    st, _, f = s.req("POST", "/work/failed", {"worker_id": "worker-r", "issue_number": 300,
                                               "error": "Product Owner rejected after 3 revisions"})
    check(st == 200 and f.get("ok") is True and f.get("outcome") == "retry" and
          ISO.match(f.get("next_attempt_at") or ""), "first failure -> retry later: %s" % f)
    g = s.task(t["id"])
    check(g["status"] == "pending" and g["attempts"] == 1 and
          g["error"] == "Product Owner rejected after 3 revisions", "back to pending, error kept")
    check(s.workers()["worker-r"]["status"] == "idle", "the worker is idle after reporting")
    st, _, k = s.next("worker-r")
    check(k == {"work_available": False}, "not handed out again before its backoff")
    again = wait_for(lambda: (lambda r: r[2] if r[2].get("work_available") else None)(s.next("worker-r")),
                     timeout=5)
    check(again and again["task_id"] == t["id"], "handed out again after the backoff")
    st, _, f = s.req("POST", "/work/complete", {"worker_id": "worker-r", "issue_number": 300,
                                                 "success": False, "error": "tests fail"})
    check(st == 200 and f.get("outcome") == "failed" and f.get("status") == "failed" and
          f.get("next_attempt_at") is None, "success:false on the 2nd attempt -> failed: %s" % f)
    g = s.task(t["id"])
    check(g["status"] == "failed" and g["attempts"] == 2 and g["error"] == "tests fail",
          "failed after 2 attempts with the reported error")
    st, _, k = s.next("worker-r")
    check(k == {"work_available": False}, "a failed item is not handed out")

    t2 = s.create(title="fatal", meta={"issue_number": 301}, max_attempts=5)
    st, _, a = s.next("worker-r")
    st, _, f = s.req("POST", "/work/failed", {"worker_id": "worker-r", "task_id": t2["id"],
                                               "lease_token": a["lease_token"], "error": "bad spec",
                                               "retryable": False})
    check(st == 200 and f.get("outcome") == "failed", "retryable:false fails at once")

    # leases that keep expiring use up the attempts too
    t3 = s.create(title="abandoned", meta={"issue_number": 302})
    for n in (1, 2):
        st, _, a = wait_for(lambda: (lambda r: r if r[2].get("work_available") else None)(
            s.next("worker-gone")), timeout=5) or (0, {}, {})
        check(a.get("task_id") == t3["id"], "abandoned item claimed (attempt %d)" % n)
        wait_for(lambda: s.task(t3["id"])["status"] != "in_progress", timeout=6)
    g = s.task(t3["id"])
    check(g["status"] == "failed" and g["error"] == "lease expired" and g["attempts"] == 2,
          "two expired leases -> failed 'lease expired': %s/%s" % (g["status"], g["error"]))


def test_health(s):
    s.next("worker-h")
    check(s.workers()["worker-h"]["health"] == "healthy", "a worker that just called is healthy")
    gone = wait_for(lambda: s.workers()["worker-h"]["health"] == "unhealthy", timeout=OFFLINE_S + 4)
    w = s.workers()["worker-h"]
    check(gone and w["status"] == "offline", "silent for workers.offline_after -> unhealthy, offline: %s" % w)
    s.next("worker-h")
    w = s.workers()["worker-h"]
    check(w["health"] == "healthy" and w["status"] == "idle", "healthy again once it calls")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        s = Server(tmp)
        err = ""
        try:
            test_auth_and_errors(s)
            test_seed_shapes(s)
            test_fencing(s)
            test_retries(s)
            test_health(s)
        finally:
            err = s.stop()
        check("re-queued tasks whose lease expired" in err, "the reaper logs re-queued leases")
        check("worker unhealthy" in err, "the reaper logs a worker turning unhealthy")
        check(TOK_WK not in err, "tokens never logged")
    if FAILS:
        print("%d failure(s)" % len(FAILS))
        sys.exit(1)
    print("all ok")


if __name__ == "__main__":
    main()
