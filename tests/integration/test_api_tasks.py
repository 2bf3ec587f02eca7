#!/usr/bin/env python3
"""The tasks API through the real binary over HTTP (seed 003 + baton's own routes):
create (201 only once durable: the task survives a kill -9 right after the 201),
dedupe by external_id, unknown/mistyped fields refused and nothing stored, get, list
with filters and cursor pagination, edit, approve/cancel/retry transitions (409 on
illegal ones), the task's events, /api/agent-runs, and every error path: bad JSON,
413, 404, 405 + Allow, 401 without/with a bad token, 403 with the wrong scope."""
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile

# These tests hand tasks out through the worker protocol (/work/next) or watch the queue
# untouched: the daemon's own executor must not run them.
os.environ["BATON_LOCAL_RUNS"] = "0"

BATON = os.environ.get("BATON_BINARY", "baton")
FAILS = []
TOK_R, TOK_W, TOK_WK = "read-token-0123456789", "write-token-0123456789", "worker-token-0123456789"
CONFIG = """server:
  tokens:
    - {name: r, token: "%s", scopes: [read]}
    - {name: w, token: "%s", scopes: [read, write]}
    - {name: wk, token: "%s", scopes: [worker]}
""" % (TOK_R, TOK_W, TOK_WK)


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
        self.db = os.path.join(tmp, "tasks.db")
        self.cfg = os.path.join(tmp, "baton.yaml")
        with open(self.cfg, "w") as f:
            f.write(CONFIG)
        self.p = None
        self.port = None

    def start(self):
        self.p = subprocess.Popen([BATON, "serve", "--port", "0", "--config", self.cfg,
                                   "--store", "sqlite:" + self.db],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  cwd=self.tmp, env=env())
        line = self.p.stdout.readline()
        m = re.search(r"listening on http://([\d.]+):(\d+)", line)
        if not m:
            self.p.kill()
            raise SystemExit("serve did not start: %r %s" % (line, self.p.stderr.read()))
        self.port = int(m.group(2))

    def kill9(self):
        self.p.send_signal(signal.SIGKILL)
        self.p.wait(10)
        self.p.stdout.close()
        self.p.stderr.close()
        self.p = None

    def stop(self, what):
        self.p.send_signal(signal.SIGTERM)
        try:
            rc = self.p.wait(20)
        except subprocess.TimeoutExpired:
            self.p.kill()
            rc = "hung"
        err = self.p.stderr.read()
        self.p.stdout.close()
        self.p.stderr.close()
        self.p = None
        bad = [l for l in err.splitlines()
               if "Sanitizer" in l or "runtime error" in l or "left open" in l]
        check(rc == 0 and not bad, "%s: SIGTERM -> exit %s, sanitizers quiet %s" % (what, rc, bad[:3]))
        return err

    def req(self, method, path, body=None, token=TOK_W, raw=None, headers=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        h = dict(headers or {})
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


def err_code(j):
    return (j or {}).get("error", {}).get("code")


def err_msg(j):
    return (j or {}).get("error", {}).get("message", "")


def count_tasks(s):
    st, _, j = s.req("GET", "/api/tasks?limit=1000")
    return len(j["tasks"]) if st == 200 else -1


def test_auth(s):
    st, _, j = s.req("GET", "/api/tasks", token=None)
    check(st == 401 and err_code(j), "no token -> 401 %s" % st)
    st, _, j = s.req("GET", "/api/tasks", token="not-a-real-token")
    check(st == 401, "bad token -> 401 (%s)" % st)
    st, _, j = s.req("POST", "/api/tasks", {"title": "x"}, token=TOK_R)
    check(st == 403, "read token cannot create -> 403 (%s)" % st)
    st, _, j = s.req("GET", "/api/tasks", token=TOK_WK)
    check(st == 403, "worker token cannot read tasks -> 403 (%s)" % st)
    st, _, j = s.req("GET", "/api/tasks", token=TOK_R)
    check(st == 200 and j == {"tasks": [], "next_cursor": None}, "read token lists: %s" % j)
    st, _, j = s.req("GET", "/api/agent-runs", token=None)
    check(st == 401, "agent-runs needs a token (%s)" % st)
    check(count_tasks(s) == 0, "refused requests stored nothing")


def test_create(s):
    body = {"title": "Add user authentication", "body": "Implement JWT-based authentication...",
            "labels": ["ai-ready", "priority:high"], "priority": 2, "project": "BACKEND",
            "workflow": "quick", "max_attempts": 3,
            "meta": {"issue_number": 123, "repository": "owner/repo"}}
    st, h, t = s.req("POST", "/api/tasks", body)
    check(st == 201, "create -> 201 (%s %s)" % (st, t))
    check(h.get("location") == "/api/tasks/" + t["id"], "Location header " + str(h.get("location")))
    for k, v in body.items():
        check(t.get(k) == v, "created task keeps %s=%r (got %r)" % (k, v, t.get(k)))
    check(t["status"] == "pending" and t["source"] == "api" and t["attempts"] == 0,
          "new task is pending, source api, 0 attempts")
    st, _, g = s.req("GET", "/api/tasks/" + t["id"], token=TOK_R)
    check(st == 200 and g == t, "GET returns the stored task")

    st, _, d = s.req("POST", "/api/tasks", {"title": "needs a human", "draft": True})
    check(st == 201 and d["status"] == "draft", "draft:true -> draft")

    # dedupe by external_id
    st1, _, a = s.req("POST", "/api/tasks", {"title": "from CI", "external_id": "ci-7"})
    st2, h2, b = s.req("POST", "/api/tasks", {"title": "from CI again", "external_id": "ci-7"})
    check(st1 == 201 and st2 == 200 and a["id"] == b["id"] and b["title"] == "from CI",
          "dedupe: second create with the same external_id -> 200 with the existing task")
    check(h2.get("x-baton-deduplicated") == "true", "dedupe hit says so in a header")
    check(a["dedupe_key"] == "api:ci-7" and a["external_id"] == "ci-7", "dedupe key api:<external_id>")
    return t, d


def test_create_errors(s):
    before = count_tasks(s)
    st, _, j = s.req("POST", "/api/tasks", {"title": "x", "colour": "red", "size": 3})
    check(st == 400 and "'colour'" in err_msg(j) and "'size'" in err_msg(j),
          "unknown fields -> 400 naming both: " + err_msg(j))
    st, _, j = s.req("POST", "/api/tasks", {"body": "no title"})
    check(st == 400 and "title" in err_msg(j), "missing title -> 400: " + err_msg(j))
    st, _, j = s.req("POST", "/api/tasks", {"title": ""})
    check(st == 400 and "title" in err_msg(j), "empty title -> 400")
    st, _, j = s.req("POST", "/api/tasks", {"title": "x", "labels": "ai-ready"})
    check(st == 400 and "labels" in err_msg(j), "labels not an array -> 400: " + err_msg(j))
    st, _, j = s.req("POST", "/api/tasks", {"title": "x", "priority": "high"})
    check(st == 400 and "priority" in err_msg(j), "priority not an integer -> 400")
    st, _, j = s.req("POST", "/api/tasks", {"title": "x", "draft": "yes"})
    check(st == 400 and "draft" in err_msg(j), "draft not a boolean -> 400")
    st, _, j = s.req("POST", "/api/tasks", {"title": "x", "max_attempts": 0})
    check(st == 400 and "max_attempts" in err_msg(j), "max_attempts 0 -> 400")
    st, _, j = s.req("POST", "/api/tasks", {"title": "x", "meta": [1]})
    check(st == 400 and "meta" in err_msg(j), "meta not an object -> 400")
    st, _, j = s.req("POST", "/api/tasks", ["title"])
    check(st == 400, "array body -> 400")
    st, _, j = s.req("POST", "/api/tasks", raw='{"title": "x",\n "body": }')
    check(st == 400 and err_code(j) == "invalid_json" and "line 2" in err_msg(j),
          "bad JSON -> 400 naming the line: " + err_msg(j))
    st, _, j = s.req("POST", "/api/tasks", raw="")
    check(st == 400, "empty body -> 400")
    big = json.dumps({"title": "big", "body": "x" * (2 * 1024 * 1024)})
    st, _, j = s.req("POST", "/api/tasks", raw=big)
    check(st == 413 or st == 0, "2 MiB body -> 413 (%s)" % st)
    check(count_tasks(s) == before, "bad input stored nothing (%d tasks)" % count_tasks(s))


def test_get_errors(s, t):
    st, _, j = s.req("GET", "/api/tasks/01ARZ3NDEKTSV4RRFFQ69G5FAV", token=TOK_R)
    check(st == 404 and err_code(j) == "not_found", "unknown id -> 404")
    st, _, j = s.req("GET", "/api/tasks/nope", token=TOK_R)
    check(st == 404, "malformed id -> 404")
    st, h, j = s.req("DELETE", "/api/tasks/" + t["id"])
    allow = h.get("allow", "")
    check(st == 405 and "GET" in allow and "PATCH" in allow, "DELETE task -> 405, Allow: " + allow)
    st, h, j = s.req("PUT", "/api/tasks")
    allow = h.get("allow", "")
    check(st == 405 and "GET" in allow and "POST" in allow, "PUT /api/tasks -> 405, Allow: " + allow)
    st, h, j = s.req("GET", "/api/tasks/" + t["id"] + "/approve")
    check(st == 405 and "PATCH" in h.get("allow", ""), "GET approve -> 405 + Allow PATCH")
    st, h, j = s.req("GET", "/api/tasks/" + t["id"] + "/cancel")
    check(st == 405 and "POST" in h.get("allow", ""), "GET cancel -> 405 + Allow POST")


def test_transitions(s, draft):
    tid = draft["id"]
    st, _, j = s.req("PATCH", "/api/tasks/" + tid, {"title": "edited", "labels": ["a", "b"],
                                                     "priority": 1, "meta": {"k": "v"}})
    check(st == 200 and j["title"] == "edited" and j["labels"] == ["a", "b"] and
          j["priority"] == 1 and j["meta"] == {"k": "v"}, "PATCH edits a draft: %s" % st)
    st, _, j = s.req("PATCH", "/api/tasks/" + tid, {"priority": None})
    check(st == 200 and j["priority"] is None and j["title"] == "edited", "PATCH priority null unsets it")
    st, _, j = s.req("PATCH", "/api/tasks/" + tid, {"priority": 0})
    check(st == 200 and j["priority"] == 0, "PATCH priority 0 (runs before everything else)")
    st, _, j = s.req("PATCH", "/api/tasks/" + tid, {"status": "completed"})
    check(st == 400 and "'status'" in err_msg(j), "PATCH status (not editable) -> 400: " + err_msg(j))
    st, _, j = s.req("PATCH", "/api/tasks/" + tid, {})
    check(st == 400, "empty PATCH -> 400")
    st, _, j = s.req("PATCH", "/api/tasks/" + tid, raw="{bad")
    check(st == 400 and err_code(j) == "invalid_json", "PATCH bad JSON -> 400")
    st, _, j = s.req("PATCH", "/api/tasks/01ARZ3NDEKTSV4RRFFQ69G5FAV", {"title": "x"})
    check(st == 404, "PATCH unknown -> 404")
    st, _, j = s.req("PATCH", "/api/tasks/" + tid, {"title": "x"}, token=TOK_R)
    check(st == 403, "PATCH with a read token -> 403")
    st, _, g = s.req("GET", "/api/tasks/" + tid)
    check(g["title"] == "edited", "refused PATCHes changed nothing")

    st, _, j = s.req("POST", "/api/tasks/" + tid + "/retry")
    check(st == 409 and err_code(j) == "invalid_state" and "draft" in err_msg(j),
          "retry a draft -> 409: " + err_msg(j))
    st, _, j = s.req("PATCH", "/api/tasks/" + tid + "/approve")
    check(st == 200 and j["status"] == "pending", "approve: draft -> pending")
    st, _, j = s.req("PATCH", "/api/tasks/" + tid + "/approve")
    check(st == 409 and err_code(j) == "invalid_state", "approve twice -> 409: " + err_msg(j))
    st, _, j = s.req("PATCH", "/api/tasks/" + tid, {"body": "still editable when pending"})
    check(st == 200 and j["body"] == "still editable when pending", "pending is editable")

    # claim it as a worker, then edits are refused
    st, _, w = s.req("GET", "/work/next?worker_id=t-worker", token=TOK_WK)
    check(st == 200 and w.get("work_available") is True, "a worker claims it")
    held = w.get("task_id")
    check(held == tid, "the worker got the priority-0 task")
    st, _, j = s.req("PATCH", "/api/tasks/" + held, {"title": "too late"})
    check(st == 409 and err_code(j) == "invalid_state", "PATCH in_progress -> 409: " + err_msg(j))
    st, _, j = s.req("POST", "/api/tasks/" + held + "/cancel", {"reason": "not needed"})
    check(st == 200 and j["status"] == "cancelled" and j["lease_owner"] is None,
          "cancel in_progress -> cancelled, lease dropped")
    st, _, j = s.req("POST", "/api/tasks/" + held + "/cancel")
    check(st == 409, "cancel twice -> 409")
    st, _, j = s.req("POST", "/api/tasks/" + held + "/cancel", {"why": "x"})
    check(st == 400 and "'why'" in err_msg(j), "cancel with an unknown field -> 400")
    st, _, j = s.req("PATCH", "/api/tasks/" + held + "/approve")
    check(st == 409 and "cancelled" in err_msg(j), "approve a cancelled task -> 409 (not a retry)")
    st, _, j = s.req("POST", "/api/tasks/" + held + "/retry")
    check(st == 200 and j["status"] == "pending" and j["attempts"] == 0,
          "retry cancelled -> pending with attempts reset")
    st, _, j = s.req("POST", "/api/tasks/" + held + "/retry")
    check(st == 409, "retry pending -> 409")
    st, _, j = s.req("POST", "/api/tasks/01ARZ3NDEKTSV4RRFFQ69G5FAV/cancel")
    check(st == 404, "cancel unknown -> 404")
    return held


def test_events(s, tid):
    st, _, j = s.req("GET", "/api/tasks/%s/events" % tid, token=TOK_R)
    types = [e["type"] for e in j.get("events", [])]
    check(st == 200 and types and types[0] == "task.created" and "task.status" in types,
          "task events in order: %s" % types)
    check(all(e["task_id"] == tid for e in j["events"]), "only this task's events")
    seqs = [e["seq"] for e in j["events"]]
    check(seqs == sorted(seqs) and j["last_seq"] == seqs[-1], "seq increasing, last_seq given")
    st, _, k = s.req("GET", "/api/tasks/%s/events?after=%d" % (tid, seqs[-2]), token=TOK_R)
    check(st == 200 and [e["seq"] for e in k["events"]] == seqs[-1:], "after= resumes")
    st, _, k = s.req("GET", "/api/tasks/%s/events?after=x" % tid, token=TOK_R)
    check(st == 400, "after=x -> 400")
    st, _, k = s.req("GET", "/api/tasks/01ARZ3NDEKTSV4RRFFQ69G5FAV/events", token=TOK_R)
    check(st == 404, "events of an unknown task -> 404")


def test_list(s):
    ids = []
    for i in range(5):
        body = {"title": "page item %d" % i, "labels": ["page"]}
        if i % 2:
            body["project"] = "PAGER"
        st, _, t = s.req("POST", "/api/tasks", body)
        ids.append(t["id"])
    got, cursor, pages = [], None, 0
    while True:
        q = "/api/tasks?label=page&limit=2" + ("&cursor=" + cursor if cursor else "")
        st, _, j = s.req("GET", q, token=TOK_R)
        if st != 200:
            check(False, "page request %s -> %s" % (q, st))
            break
        pages += 1
        got += [t["id"] for t in j["tasks"]]
        cursor = j["next_cursor"]
        if not cursor or pages > 5:
            break
    check(got == ids and pages == 3, "cursor pagination: 5 items in 3 pages of 2, in order")
    st, _, j = s.req("GET", "/api/tasks?label=page&order=desc", token=TOK_R)
    check([t["id"] for t in j["tasks"]] == ids[::-1], "order=desc reverses")
    st, _, j = s.req("GET", "/api/tasks?label=page&project=PAGER", token=TOK_R)
    check([t["id"] for t in j["tasks"]] == [ids[1], ids[3]], "project filter")
    st, _, j = s.req("GET", "/api/tasks?q=ITEM%203", token=TOK_R)
    check([t["id"] for t in j["tasks"]] == [ids[3]], "q text search, case-insensitive")
    st, _, j = s.req("GET", "/api/tasks?status=draft,cancelled", token=TOK_R)
    check(st == 200 and {t["status"] for t in j["tasks"]} <= {"draft", "cancelled"},
          "status list filter")
    st, _, j = s.req("GET", "/api/tasks?source=api&label=page", token=TOK_R)
    check(len(j["tasks"]) == 5, "source filter")
    for bad in ("status=done", "limit=0", "limit=1001", "limit=ten", "order=up", "cursor=zzz"):
        st, _, j = s.req("GET", "/api/tasks?" + bad, token=TOK_R)
        check(st == 400 and err_msg(j), "GET /api/tasks?%s -> 400: %s" % (bad, err_msg(j)))


def test_agent_runs(s):
    st, _, j = s.req("GET", "/api/agent-runs", token=TOK_R)
    check(st == 200 and j == {"runs": []}, "agent-runs with no engine yet: %s" % j)
    for bad in ("limit=0", "status=done", "task_id=nope"):
        st, _, j = s.req("GET", "/api/agent-runs?" + bad, token=TOK_R)
        check(st == 400, "agent-runs?%s -> 400" % bad)
    st, h, j = s.req("POST", "/api/agent-runs")
    check(st == 405 and "GET" in h.get("allow", ""), "POST agent-runs -> 405")


def test_durability(s):
    """Each 201 is sent only after the commit: kill -9 right after it loses nothing."""
    created = []
    for i in range(4):
        st, _, t = s.req("POST", "/api/tasks", {"title": "durable %d" % i, "body": "b%d" % i})
        check(st == 201, "create before kill -9 (%d)" % i)
        s.kill9()
        s.start()
        created.append(t)
    for t in created:
        st, _, g = s.req("GET", "/api/tasks/" + t["id"], token=TOK_R)
        check(st == 200 and g["title"] == t["title"] and g["body"] == t["body"],
              "task %s survived kill -9 right after its 201" % t["title"])


def main():
    with tempfile.TemporaryDirectory() as tmp:
        s = Server(tmp)
        s.start()
        try:
            test_auth(s)
            t, draft = test_create(s)
            test_create_errors(s)
            test_get_errors(s, t)
            held = test_transitions(s, draft)
            test_events(s, held)
            test_list(s)
            test_agent_runs(s)
            test_durability(s)
        finally:
            if s.p:
                err = s.stop("tasks server")
                check(TOK_W not in err, "tokens never logged")
    if FAILS:
        print("%d failure(s)" % len(FAILS))
        sys.exit(1)
    print("all ok")


if __name__ == "__main__":
    main()
