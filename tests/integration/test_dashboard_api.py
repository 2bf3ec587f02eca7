#!/usr/bin/env python3
"""The dashboard's server side through the real binary (issue 9):

- GET / and GET /ui/{file} are public even when tokens are configured, and each answer
  carries a strong ETag (If-None-Match -> 304 with no body), Cache-Control no-cache, a
  same-origin Content-Security-Policy, nosniff and the right Content-Type; an unknown
  file is a 404 JSON error; `..` (plain or percent-encoded) and sub-folders never reach a
  file outside web/.
- GET /api/whoami (public, always 200): open API (auth false, every capability), read
  token (can_write false), write token (can_write true, can_admin false), worker-only token
  (authenticated, cannot read), no or a wrong token (not authenticated, says why, never
  echoes the token).
- gzip: with Accept-Encoding gzip the dashboard's files (own ETag, 304 on it) and JSON
  bodies over 1 KiB come compressed and decompress to the same bytes; gzip;q=0 and small
  bodies are sent as they are.
- GET /api/stats after real runs (the replay agent `demo`, speed 0, plus shell steps;
  two projects and a task without one; one run fails): totals, by_day, by_project,
  by_agent and runs_by_hour agree with the steps GET /api/runs/{id} reports; every day
  of the range and each of the last 48 hours is present, oldest first; `project` filters;
  bad `days` or an empty `project` -> 400 naming the parameter; read scope.
"""
import datetime
import gzip
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check  # noqa: E402

READ = "dash-read-token-0123456789"
WRITE = "dash-write-token-0123456789"
WORKER = "dash-worker-token-0123456789"

WORKFLOWS = {
    "usage.yaml": """metadata:
  id: usage
  name: Usage
steps:
  - id: implement
    agent: demo
    role: implement
    prompt: "Do {{ task.title }}"
  - id: look
    action: shell-command
    inputs:
      command: echo looked
""",
    "boom.yaml": """metadata:
  id: boom
  name: Boom
steps:
  - id: explode
    action: shell-command
    inputs:
      command: echo going down; exit 3
""",
}


def config(tmp, tokens=True):
    wdir = os.path.join(tmp, "workflows")
    os.makedirs(wdir, exist_ok=True)
    for name, text in WORKFLOWS.items():
        with open(os.path.join(wdir, name), "w") as f:
            f.write(text)
    os.makedirs(os.path.join(tmp, "ws"), exist_ok=True)
    replay = os.path.join(harness.SRC, "examples", "replays", "demo.jsonl")
    # Tasks of a project run in a clone of its repository: a local one here.
    repo = os.path.join(tmp, "repo")
    if not os.path.isdir(repo):
        git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
        subprocess.run(["git", "init", "-q", "-b", "main", repo], check=True)
        with open(os.path.join(repo, "README"), "w") as f:
            f.write("dashboard test\n")
        subprocess.run(git + ["-C", repo, "add", "README"], check=True)
        subprocess.run(git + ["-C", repo, "commit", "-q", "-m", "init"], check=True)
    docs = "".join("    %s: https://docs.example.com/%s\n" % (k, k) for k in
                   ("team_contribution_rules_url", "architecture_rules_url", "prd_url", "ard_url"))
    projects = "projects:\n" + "".join("  %s:\n    repo: %s\n%s" % (p, repo, docs)
                                       for p in ("alpha", "beta"))
    toks = f"""server:
  tokens:
    - {{name: reader, token: "{READ}", scopes: [read]}}
    - {{name: writer, token: "{WRITE}", scopes: [read, write]}}
    - {{name: wk, token: "{WORKER}", scopes: [worker]}}
""" if tokens else ""
    return toks + projects + f"""workflows_dir: {wdir}
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


def raw(port, path, headers=None, method="GET"):
    """(status, headers dict lower-cased, body bytes) without any path normalisation."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.putrequest(method, path, skip_accept_encoding=True)
    for k, v in (headers or {}).items():
        c.putheader(k, v)
    c.endheaders()
    r = c.getresponse()
    body = r.read()
    h = {k.lower(): v for k, v in r.getheaders()}
    c.close()
    return r.status, h, body


def error_code(body):
    try:
        return json.loads(body).get("error", {}).get("code")
    except (ValueError, AttributeError):
        return None


# ---------------------------------------------------------------------------------
# Static files
# ---------------------------------------------------------------------------------
def test_static(srv):
    index_etag = None
    for path, ctype, marker in [("/", "text/html", b"<html"),
                                ("/ui/lib.js", "javascript", b"export"),
                                ("/ui/favicon.svg", "image/svg+xml", b"<svg")]:
        st, h, body = raw(srv.port, path)
        csp = h.get("content-security-policy", "")
        etag = h.get("etag", "")
        check(st == 200 and ctype in h.get("content-type", "") and marker in body.lower(),
              "GET %s without a token -> 200 %s (%s, %s)" % (path, ctype, st, h.get("content-type")))
        check(etag.startswith('"') and etag.endswith('"') and len(etag) > 2,
              "%s has a strong ETag (%r)" % (path, etag))
        check("script-src 'self'" in csp and "default-src 'none'" in csp
              and "unsafe-inline" not in csp and "connect-src 'self'" in csp,
              "%s CSP is same-origin only: %s" % (path, csp))
        check(h.get("x-content-type-options") == "nosniff" and h.get("cache-control") == "no-cache",
              "%s: nosniff, Cache-Control no-cache" % path)
        st2, h2, body2 = raw(srv.port, path, {"If-None-Match": etag})
        check(st2 == 304 and body2 == b"" and h2.get("etag") == etag,
              "%s If-None-Match: its ETag -> 304, empty body (%s)" % (path, st2))
        st3, _, body3 = raw(srv.port, path, {"If-None-Match": '"0000000000000000"'})
        check(st3 == 200 and body3 == body, "%s with a stale ETag -> 200, the file again" % path)
        if path == "/":
            index_etag = etag
    st, h, _ = raw(srv.port, "/ui/lib.js")
    check(h.get("etag") != index_etag, "each file has its own ETag")

    st, h, body = raw(srv.port, "/ui/no-such-file.js")
    check(st == 404 and error_code(body) == "not_found"
          and "application/json" in h.get("content-type", ""),
          "unknown /ui file -> 404 JSON not_found (%s %s)" % (st, body[:80]))
    # Nothing outside web/ is reachable: the config file sits in the server's cwd.
    for path in ["/ui/../baton.yaml", "/ui/..%2fbaton.yaml", "/ui/%2e%2e%2fbaton.yaml",
                 "/ui/..%2F..%2Fetc%2Fpasswd", "/ui/../../etc/passwd", "/ui/./lib.js/../x",
                 "/ui/sub/lib.js", "/ui/%2e%2e", "/ui/.."]:
        st, _, body = raw(srv.port, path)
        check(st in (400, 404) and b"workflows_dir" not in body and b"root:" not in body,
              "%s cannot escape web/ (%s)" % (path, st))


# ---------------------------------------------------------------------------------
# gzip: the dashboard's files and the API's JSON shrink for clients that accept it
# ---------------------------------------------------------------------------------
def test_gzip(srv):
    st, h, plain = raw(srv.port, "/ui/app.js")
    check(st == 200 and "content-encoding" not in h and len(plain) > 4096,
          "no Accept-Encoding -> identity (%s, %s bytes)" % (h.get("content-encoding"), len(plain)))
    st, hz, z = raw(srv.port, "/ui/app.js", {"Accept-Encoding": "gzip, deflate, br"})
    check(st == 200 and hz.get("content-encoding") == "gzip" and len(z) < len(plain) // 2
          and gzip.decompress(z) == plain and "accept-encoding" in hz.get("vary", "").lower(),
          "Accept-Encoding gzip -> the same file gzip-compressed (%s -> %s bytes)"
          % (len(plain), len(z)))
    check(hz.get("etag") and hz.get("etag") != h.get("etag"),
          "the gzip form has its own ETag (%s vs %s)" % (hz.get("etag"), h.get("etag")))
    st, _, body = raw(srv.port, "/ui/app.js", {"Accept-Encoding": "gzip",
                                                "If-None-Match": hz.get("etag", "")})
    check(st == 304 and body == b"", "If-None-Match with the gzip ETag -> 304 (%s)" % st)
    st, hq, _ = raw(srv.port, "/ui/app.js", {"Accept-Encoding": "gzip;q=0, identity"})
    check(st == 200 and "content-encoding" not in hq, "gzip;q=0 -> identity")
    # JSON: a task list big enough to compress
    for i in range(12):
        srv.request("POST", "/api/tasks", {"title": "gzip task %d with a title" % i,
                                           "body": "x" * 200}, token=WRITE)
    auth = {"Authorization": "Bearer " + READ}
    st, h, plain = raw(srv.port, "/api/tasks?limit=1000", auth)
    st2, hz, z = raw(srv.port, "/api/tasks?limit=1000", dict(auth, **{"Accept-Encoding": "gzip"}))
    check(st == 200 and st2 == 200 and hz.get("content-encoding") == "gzip"
          and json.loads(gzip.decompress(z)) == json.loads(plain) and len(z) < len(plain) // 3,
          "GET /api/tasks with Accept-Encoding gzip -> gzip JSON, same content (%s -> %s bytes)"
          % (len(plain), len(z)))
    st, hs, small = raw(srv.port, "/health", {"Accept-Encoding": "gzip"})
    check(st == 200 and "content-encoding" not in hs and json.loads(small).get("status"),
          "a body under 1 KiB is sent as it is")


# ---------------------------------------------------------------------------------
# whoami
# ---------------------------------------------------------------------------------
def test_whoami(srv):
    st, j = srv.request("GET", "/api/whoami", token=READ)
    check(st == 200 and j.get("auth") is True and j.get("scopes") == ["read"]
          and j.get("can_write") is False and j.get("can_admin") is False
          and isinstance(j.get("identity"), str) and "reader" in j.get("identity", ""),
          "whoami, read token -> auth, read only, identity names it: %s" % j)
    st, j = srv.request("GET", "/api/whoami", token=WRITE)
    check(st == 200 and j.get("can_write") is True and j.get("can_admin") is False
          and set(j.get("scopes", [])) >= {"read", "write"} and "admin" not in j.get("scopes", []),
          "whoami, write token -> can_write, not admin: %s" % j)
    st, j = srv.request("GET", "/api/whoami", token=WORKER)
    check(st == 200 and j.get("authenticated") is True and j.get("can_read") is False
          and j.get("can_write") is False and j.get("scopes") == ["worker"],
          "whoami, worker-only token -> 200, authenticated but cannot read: %s" % j)
    st, j = srv.request("GET", "/api/whoami")
    check(st == 200 and j.get("authenticated") is False and j.get("scopes") == []
          and j.get("can_read") is False and "no API token" in (j.get("error") or ""),
          "whoami without a token -> 200, not authenticated, says why: %s" % j)
    st, j = srv.request("GET", "/api/whoami", token="not-a-token-at-all-000")
    check(st == 200 and j.get("authenticated") is False and j.get("can_write") is False
          and "not-a-token" not in json.dumps(j) and j.get("identity") is None,
          "whoami with an unknown token -> not authenticated, token never echoed: %s" % j)


def test_whoami_open(tmp):
    srv = harness.serve(tmp, config(tmp, tokens=False), name="open",
                        env=harness.clean_env({"BATON_OFFLINE": "off"}))
    try:
        st, j = srv.request("GET", "/api/whoami")
        check(st == 200 and j.get("auth") is False and j.get("identity") is None
              and j.get("can_write") is True and j.get("can_admin") is True
              and j.get("authenticated") is True and "read" in j.get("scopes", []),
              "whoami, open API -> auth false, identity null, every capability: %s" % j)
        st, h, _ = raw(srv.port, "/")
        check(st == 200 and "etag" in h, "open API: GET / -> 200")
        st, j = srv.request("GET", "/api/stats")
        check(st == 200 and j.get("totals", {}).get("runs") == 0,
              "open API: /api/stats on an empty store -> 200, zeros")
    finally:
        rc = srv.stop()
    check(rc == 0, "open server: SIGTERM -> exit 0 (%s)" % rc)


# ---------------------------------------------------------------------------------
# /api/stats
# ---------------------------------------------------------------------------------
def poll(fn, timeout=30.0, every=0.1):
    end = time.time() + timeout
    while time.time() < end:
        v = fn()
        if v:
            return v
        time.sleep(every)
    return None


def run_task(srv, title, workflow, project):
    body = {"title": title, "workflow": workflow}
    if project:
        body["project"] = project
    st, t = srv.request("POST", "/api/tasks", body, token=WRITE)
    check(st == 201, "task %r created (%s %s)" % (title, st, t))
    tid = t.get("id", "")

    def done():
        s, j = srv.request("GET", "/api/runs?task_id=" + tid, token=READ)
        runs = j.get("runs", []) if s == 200 else []
        return runs[0] if runs and runs[0]["status"] in ("completed", "failed", "cancelled") \
            else None
    run = poll(done)
    check(run is not None, "task %r ran to the end (%s)" % (title, run and run["status"]))
    if not run:
        return None, []
    st, d = srv.request("GET", "/api/runs/" + run["id"], token=READ)
    return d["run"], d["steps"]


def close(a, b):
    return abs(a - b) < 1e-6


def sums(steps):
    return {"tokens_in": sum(s["tokens_in"] for s in steps),
            "tokens_out": sum(s["tokens_out"] for s in steps),
            "cost_usd": sum(s["cost_usd"] for s in steps),
            "steps": len(steps)}


def same(got, want):
    return all(close(got.get(k, -1), v) if isinstance(v, float) else got.get(k) == v
               for k, v in want.items())


def test_stats(srv):
    st, j = srv.request("GET", "/api/stats", token=READ)
    check(st == 200 and j["totals"]["steps"] == 0 and j["totals"]["success_rate"] is None
          and j["by_project"] == [] and j["by_agent"] == [],
          "stats before any run: zeros, success_rate null, no projects or agents")

    runs = []
    for title, wf, project in [("first", "usage", "alpha"), ("second", "usage", "alpha"),
                               ("third", "usage", "beta"), ("fourth", "boom", None)]:
        run, steps = run_task(srv, title, wf, project)
        runs.append((run, steps, project))
    statuses = [r["status"] if r else None for r, _, _ in runs]
    check(statuses == ["completed", "completed", "completed", "failed"],
          "three runs completed, the shell failure failed: %s" % statuses)
    finished = [s for _, steps, _ in runs for s in steps
                if s["status"] not in ("pending", "running")]
    demo = [s for s in finished if s.get("agent") == "demo"]
    check(len(demo) == 3 and all(s["tokens_in"] > 0 and s["cost_usd"] > 0 for s in demo),
          "the replay agent's steps report tokens and cost: %s"
          % [(s["tokens_in"], s["cost_usd"]) for s in demo])

    now = datetime.datetime.now(datetime.timezone.utc)
    st, j = srv.request("GET", "/api/stats", token=READ)
    check(st == 200, "GET /api/stats (read token) -> 200 (%s)" % st)
    t = j["totals"]
    want = sums(finished)
    want.update({"runs": 4, "completed": 3, "failed": 1, "cancelled": 0})
    check(same(t, want), "totals match the runs' steps: got %s want %s" % (t, want))
    check(close(t["success_rate"], 0.75), "success_rate = 3 / (3 + 1) (%s)" % t["success_rate"])
    check(j["days"] == 14 and j["project"] is None and len(j["by_day"]) == 14,
          "default: 14 days, one entry each, project null")
    days = [d["day"] for d in j["by_day"]]
    today = now.strftime("%Y-%m-%d")
    first = (now - datetime.timedelta(days=13)).strftime("%Y-%m-%d")
    check(days == sorted(days) and days[-1] == today and days[0] == first
          and j["since"] == first + "T00:00:00.000Z",
          "by_day oldest first, %s .. today, since is its midnight UTC: %s .. %s, %s"
          % (first, days[0], days[-1], j["since"]))
    until = j["until"]
    check(until.endswith("Z") and until[:10] == today, "until is now (UTC): %s" % until)
    for k in ("tokens_in", "tokens_out", "steps", "runs", "completed", "failed"):
        check(sum(d[k] for d in j["by_day"]) == t[k], "by_day %s add up to the totals" % k)
    check(close(sum(d["cost_usd"] for d in j["by_day"]), t["cost_usd"]), "by_day cost adds up")
    check(all(d["steps"] == 0 and d["success_rate"] is None for d in j["by_day"][:-2]),
          "older days are zero-filled with success_rate null")

    # by_project: alpha (two runs), beta, and null (the task without a project).
    byp = {p["project"]: p for p in j["by_project"]}
    check(set(byp) == {"alpha", "beta", None}, "by_project: alpha, beta, null: %s" % list(byp))
    for name in ("alpha", "beta", None):
        steps = [s for _, st_, p in runs if p == name for s in st_
                 if s["status"] not in ("pending", "running")]
        w = sums(steps)
        w["runs"] = sum(1 for _, _, p in runs if p == name)
        check(same(byp.get(name, {}), w), "by_project %s matches its steps: %s want %s"
              % (name, byp.get(name), w))
    costs = [p["cost_usd"] for p in j["by_project"]]
    check(costs == sorted(costs, reverse=True) and j["by_project"][0]["project"] == "alpha",
          "by_project sorted by cost, alpha first: %s" % [(p["project"], p["cost_usd"])
                                                            for p in j["by_project"]])
    check(byp[None]["failed"] == 1 and byp["alpha"]["completed"] == 2,
          "run outcomes per project")

    # by_agent: only agent steps, the replay agent.
    check([a["agent"] for a in j["by_agent"]] == ["demo"], "by_agent: demo only (shell steps are "
          "not agent work): %s" % j["by_agent"])
    if j["by_agent"]:
        a = j["by_agent"][0]
        check(same(a, sums(demo)) and a["failed_steps"] == 0 and a["avg_duration_ms"] >= 0,
              "by_agent demo matches its steps: %s want %s" % (a, sums(demo)))

    # runs_by_hour: 48 hours, the current hour last, holding today's runs.
    hours = j["runs_by_hour"]
    cur = now.replace(minute=0, second=0, microsecond=0)
    check(len(hours) == 48 and hours[-1]["hour"][:13] == cur.strftime("%Y-%m-%dT%H")
          and [h["hour"] for h in hours] == sorted(h["hour"] for h in hours),
          "runs_by_hour: 48 hours oldest first, the current hour last (%s)"
          % (hours[-1]["hour"] if hours else None))
    check(sum(h["started"] for h in hours) == 4 and sum(h["completed"] for h in hours) == 3
          and sum(h["failed"] for h in hours) == 1 and sum(h["cancelled"] for h in hours) == 0,
          "runs_by_hour counts the four runs: %s" % [h for h in hours if h["started"]])

    # project filter
    st, a = srv.request("GET", "/api/stats?project=alpha&days=1", token=READ)
    alpha = [s for _, st_, p in runs if p == "alpha" for s in st_]
    check(st == 200 and a["project"] == "alpha" and a["days"] == 1 and len(a["by_day"]) == 1
          and same(a["totals"], sums(alpha)) and a["totals"]["runs"] == 2
          and [p["project"] for p in a["by_project"]] == ["alpha"],
          "?project=alpha&days=1: alpha's figures only: %s" % a.get("totals"))
    check(sum(h["started"] for h in a["runs_by_hour"]) == 2, "project filter applies per hour too")
    st, n = srv.request("GET", "/api/stats?project=nope", token=READ)
    check(st == 200 and n["totals"]["steps"] == 0 and n["by_project"] == [] and
          len(n["by_day"]) == 14, "an unknown project: zeros, not an error")
    st, n = srv.request("GET", "/api/stats?days=90", token=READ)
    check(st == 200 and len(n["by_day"]) == 90 and n["totals"]["runs"] == 4, "days=90 -> 90 days")

    # bad input
    for q in ("days=0", "days=91", "days=abc", "days=", "days=7.5", "days=-1"):
        st, e = srv.request("GET", "/api/stats?" + q, token=READ)
        err = e.get("error", {}) if isinstance(e, dict) else {}
        check(st == 400 and err.get("code") == "invalid_argument" and "'days'" in err.get("message", ""),
              "?%s -> 400 invalid_argument naming 'days' (%s %s)" % (q, st, err.get("message")))
    st, e = srv.request("GET", "/api/stats?project=", token=READ)
    err = e.get("error", {}) if isinstance(e, dict) else {}
    check(st == 400 and err.get("code") == "invalid_argument" and "'project'" in err.get("message", ""),
          "?project= -> 400 naming 'project' (%s)" % err.get("message"))

    # scopes
    st, _ = srv.request("GET", "/api/stats")
    check(st == 401, "stats without a token -> 401")
    st, _ = srv.request("GET", "/api/stats", token=WORKER)
    check(st == 403, "stats with a worker-only token -> 403")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        env = harness.clean_env({"BATON_OFFLINE": "off"})
        srv = harness.serve(tmp, config(tmp), env=env)
        try:
            test_static(srv)
            test_whoami(srv)
            test_gzip(srv)
            test_stats(srv)
        finally:
            rc = srv.stop()
            err = srv.stderr()
        bad = [l for l in err.splitlines() if "Sanitizer" in l or "runtime error" in l]
        check(rc == 0 and not bad, "SIGTERM -> exit 0, no sanitizer reports (%s %s)" % (rc, bad[:3]))
        test_whoami_open(tmp)
    harness.finish()


if __name__ == "__main__":
    main()
