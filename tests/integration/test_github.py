#!/usr/bin/env python3
"""test_github.py - issue 8's acceptance list through `baton serve` against the fake GitHub
(tests/fakes/github_server.py, with a real bare repository reached over smart HTTP).

The default workflow runs with its agents (codex, gemini, claude) replaced by small CLI
programs this test writes: the implementer really edits a file in the workspace (or, for
an issue whose title says so, fails with a transient error or sleeps), the reviewer
answers an empty suggestion list, the refiner says it is done.

 1. an issue labelled ai-ready is picked up by polling: ai-in-progress is set while it
    runs, then ai-completed (ai-ready and ai-in-progress gone); the bare repository has
    branch ai-feature/issue-<n> with the implementer's file; a pull request from it is
    open on the fake; a comment starting with "<!-- baton -->" carries its URL;
 2. a failing run is attempted twice (max_attempts 2), then labelled ai-failed with a
    comment carrying the error text;
 3. webhooks (a second daemon polling once an hour): a bad or missing signature gets 401
    and creates nothing; a valid `issues labeled` delivery queues at once; replaying its
    delivery id is answered "duplicate" and creates nothing;
 4. closing an issue while its agent runs stops the agent (its process is gone) within
    one poll interval plus slack, and the task is cancelled;
 5. the token appears in no log line, no event, no comment, and no file of any workspace
    (.git/config included) - while the fake's request log shows it was really used;
 6. an API task with identifier "../../etc" gets its workspace inside workspace.root
    ("_.._.._etc"), and nothing is written outside.
"""
import base64
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check  # noqa: E402

TOKEN = "ghp_FAKEtoken1234567890abcdef"
SECRET = "s3cret"
FINAL = ("completed", "failed", "cancelled")
BRANCH = "ai-feature/issue-%d"
EDIT = "BATON_EDIT.md"
EDIT_TEXT = "edited by the fake implementer\n"
ERROR_TEXT = "service unavailable: E-4711 the implementer tripped over the network cable"


def write_exe(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def make_agents(tmp):
    """Generic CLI programs (the prompt arrives on stdin; stdout is the answer)."""
    bind, marks = os.path.join(tmp, "bin"), os.path.join(tmp, "marks")
    os.makedirs(bind)
    os.makedirs(marks)
    write_exe(os.path.join(bind, "implement"), f"""#!/bin/sh
prompt=$(cat)
pwd >> {marks}/implement.log
case "$prompt" in
  *BOOM*) echo "{ERROR_TEXT}" >&2; exit 1 ;;
  *SLEEPY*) echo $$ > {marks}/sleepy.pid; echo "thinking hard"; exec sleep 30 ;;
esac
printf '{EDIT_TEXT.rstrip()}\\n' > {EDIT}
echo "implemented: wrote {EDIT}"
""")
    write_exe(os.path.join(bind, "review"), """#!/bin/sh
cat >/dev/null
echo '{"suggestions": [], "summary": "looks right"}'
""")
    write_exe(os.path.join(bind, "refine"), """#!/bin/sh
cat >/dev/null
echo "refined: nothing left to change"
""")
    return bind, marks


def config(tmp, bind, gh, poll, ws):
    return f"""
log: {{level: debug}}
server: {{rate_limit: {{requests: 0}}}}
offline: {{mode: off}}
queue: {{max_attempts: 2, backoff_base: 1s, backoff_max: 2s}}
concurrency: {{global: 8, local: 8}}
workspace: {{root: {ws}}}
workflows_dir: {tmp}/workflows
trackers:
  github:
    token: ${{GITHUB_TOKEN}}
    repo: acme/app
    api_url: {gh.url}
    clone_url: {gh.url}/acme/app.git
    poll_interval: {poll}
    webhook_secret: {SECRET}
agents:
  codex: {{type: cli, command: {bind}/implement, timeout: 60s}}
  gemini: {{type: cli, command: {bind}/review, timeout: 60s}}
  claude: {{type: cli, command: {bind}/refine, timeout: 60s}}
"""


def env():
    # project BACKEND has its repository but none of its four document URLs (seed 000)
    return harness.clean_env({"GITHUB_TOKEN": TOKEN, "BATON_OFFLINE": "off",
                              "GIT_CONFIG_NOSYSTEM": "1",
                              "PROJECT_REPO_BACKEND": "https://example.invalid/api.git"})


def wait_for(pred, timeout, step=0.2):
    end = time.time() + timeout
    while True:
        v = pred()
        if v or time.time() >= end:
            return v
        time.sleep(step)


def state(gh):
    return gh.control("GET", "/_control/state")[1]


def labels(gh, n):
    return sorted(x["name"] for x in state(gh)["issues"][str(n)]["labels"])


def comments(gh, n):
    return state(gh)["issues"][str(n)]["comments"]


def tasks(srv, q=""):
    st, body = srv.request("GET", "/api/tasks?limit=1000" + q)
    return body.get("tasks", []) if st == 200 and isinstance(body, dict) else []


def task_for_issue(srv, n):
    for t in tasks(srv):
        meta = t.get("meta") or {}
        if (t.get("source") == "github" and
                (meta.get("issue_number") == n or str(t.get("identifier", "")).endswith(
                    "#%d" % n) or t.get("external_id") == str(n))):
            return t
    return None


def new_issue(gh, title, body="", lab=("ai-ready",)):
    st, issue = gh.control("POST", "/_control/issues",
                           {"title": title, "body": body, "labels": list(lab), "user": "alice"})
    assert st == 201, (st, issue)
    return issue["number"]


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def read_events(port, idle=1.5):
    """Every stored event, from the SSE stream (read until it is quiet)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=idle)
    s.sendall(b"GET /api/events?after=0 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
              b"Accept: text/event-stream\r\n\r\n")
    data = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except (socket.timeout, OSError):
        pass
    s.close()
    return data.decode("utf-8", "replace")


def bare_git(root, *args):
    return subprocess.run(["git", "--git-dir", os.path.join(root, "acme", "app.git"), *args],
                          capture_output=True, text=True)


# ---- 1, 2, 4, 6 through a polling daemon ------------------------------------------------

def test_polling(tmp, bind, marks, parts):
    gitroot = os.path.join(tmp, "git")
    gh = harness.fake("github_server.py", "--token", TOKEN, "--git-root", gitroot)
    ws = os.path.join(tmp, "a", "ws")
    parts["polling"] = {"gh": gh, "srv": None, "ws": ws}
    srv = harness.serve(tmp, config(tmp, bind, gh, "1s", ws), "poll", env=env())
    parts["polling"]["srv"] = srv
    try:
        ok_n = new_issue(gh, "Add a greeting", "Please add a greeting file.")
        bad_n = new_issue(gh, "BOOM: this one fails", "The implementer fails here.")
        sleepy_n = new_issue(gh, "SLEEPY: this one takes its time", "Runs until closed.")

        polled = wait_for(lambda: any(e["kind"] == "api" and e["path"] == "/repos/acme/app/issues"
                                      for e in gh.control("GET", "/_control/requests")[1]), 15)
        if not check(polled, "baton polls the fake's issue list"):
            print("--- baton stderr (tail) ---\n" + srv.stderr()[-4000:])
            return
        seen = wait_for(lambda: task_for_issue(srv, ok_n), 10)
        check(seen is not None, "the polled issue became a task")

        # 1. success
        done = wait_for(lambda: "ai-completed" in labels(gh, ok_n), 40)
        t = task_for_issue(srv, ok_n)
        check(done, "issue #%d labelled ai-completed (labels %s, task %s: %s)"
              % (ok_n, labels(gh, ok_n), t and t.get("status"), t and t.get("error")))
        log = gh.control("GET", "/_control/requests")[1]
        check(any(e["kind"] == "api" and e["method"] in ("POST", "PUT")
                  and e["path"] == "/repos/acme/app/issues/%d/labels" % ok_n
                  and "ai-in-progress" in json.dumps(e.get("body")) for e in log),
              "ai-in-progress was set on the issue while it ran")
        final = labels(gh, ok_n)
        check("ai-ready" not in final and "ai-in-progress" not in final,
              "ai-ready and ai-in-progress are gone (%s)" % final)
        branch = BRANCH % ok_n
        shown = bare_git(gitroot, "show", "%s:%s" % (branch, EDIT))
        check(shown.returncode == 0 and shown.stdout == EDIT_TEXT,
              "the bare remote's %s has the implementer's %s (%s)"
              % (branch, EDIT, shown.stderr.strip()))
        subject = bare_git(gitroot, "log", "-1", "--format=%s", branch).stdout
        check("Add a greeting" in subject, "the commit message names the issue (%r)"
              % subject.strip())
        pulls = [p for p in state(gh)["pulls"] if p["head"]["ref"] == branch]
        check(len(pulls) == 1 and pulls[0]["base"]["ref"] == "main"
              and pulls[0]["state"] == "open", "one open pull request from %s into main" % branch)
        pr_url = pulls[0]["html_url"] if pulls else "(no PR)"
        check(pulls and "#%d" % ok_n in (pulls[0].get("body") or ""),
              "the pull request body refers to the issue")
        mine = [c for c in comments(gh, ok_n) if c["user"]["login"] == "baton-bot"]
        check(any(c["body"].startswith("<!-- baton -->") and pr_url in c["body"] for c in mine),
              "a baton comment with the pull request's URL (%s)"
              % [c["body"][:120] for c in mine])
        t = task_for_issue(srv, ok_n)
        check(t and t["status"] == "completed", "the task completed")
        check(os.path.isfile(os.path.join(ws, "acme_app_%d" % ok_n, EDIT)),
              "the workspace is ws/acme_app_%d, kept (retention 7d)" % ok_n)

        # 2. failure after two attempts
        failed = wait_for(lambda: "ai-failed" in labels(gh, bad_n), 40)
        t = task_for_issue(srv, bad_n)
        check(failed, "issue #%d labelled ai-failed (labels %s, task %s)"
              % (bad_n, labels(gh, bad_n), t and t.get("status")))
        check(t and t["status"] == "failed" and t["attempts"] == 2,
              "the failing task was attempted twice (%s attempts, %s)"
              % (t and t.get("attempts"), t and t.get("status")))
        with open(os.path.join(marks, "implement.log")) as f:
            runs = [x for x in f.read().splitlines() if x.endswith("acme_app_%d" % bad_n)]
        check(len(runs) == 2, "the implementer ran twice for it, in its workspace (%d)"
              % len(runs))
        mine = [c for c in comments(gh, bad_n) if c["body"].startswith("<!-- baton -->")]
        check(len(mine) == 1 and "E-4711" in mine[0]["body"],
              "one baton comment carrying the error (%s)" % [c["body"][:160] for c in mine])
        final = labels(gh, bad_n)
        check("ai-in-progress" not in final and "ai-completed" not in final,
              "no in-progress/completed label on the failed issue (%s)" % final)
        check(not [p for p in state(gh)["pulls"] if p["head"]["ref"] == BRANCH % bad_n],
              "no pull request for the failed issue")

        # 4. closing the issue stops the running agent
        pidf = os.path.join(marks, "sleepy.pid")
        started = wait_for(lambda: os.path.exists(pidf) and open(pidf).read().strip(), 30)
        if check(started, "the slow issue's agent is running"):
            pid = int(open(pidf).read())
            check(pid_alive(pid), "its process is alive before the issue is closed")
            gh.control("POST", "/_control/issues/%d/close" % sleepy_n)
            t0 = time.time()
            gone = wait_for(lambda: not pid_alive(pid), 10, 0.05)
            took = time.time() - t0
            check(gone and took <= 1 + 3, "closing the issue stopped the agent in %.1fs "
                  "(poll interval 1s + 3s slack)" % took)
            t = wait_for(lambda: (task_for_issue(srv, sleepy_n) or {}).get("status") in FINAL
                         and task_for_issue(srv, sleepy_n), 10)
            check(t and t["status"] == "cancelled", "its task is cancelled (%s)"
                  % (t and t.get("status")))
            check(wait_for(lambda: not os.path.exists(os.path.join(ws, "acme_app_%d"
                                                                   % sleepy_n)), 10),
                  "the closed issue's workspace is removed once its run stopped")
            check(not [c for c in comments(gh, sleepy_n)
                       if c["body"].startswith("<!-- baton -->")],
                  "a cancelled item gets no comment")

        # the tracker's state in /api/status
        st, status = srv.request("GET", "/api/status")
        gs = (status or {}).get("trackers", {}).get("github") or {}
        check(st == 200 and gs.get("repo") == "acme/app" and gs.get("last_poll_at")
              and not gs.get("last_error"),
              "/api/status reports the GitHub tracker's polls (%s)" % gs)

        # 6. a workspace key from ../../etc stays inside the root
        st, task = srv.request("POST", "/api/tasks", {"title": "escape attempt",
                                                      "body": "write a file",
                                                      "identifier": "../../etc"})
        check(st == 201, "an API task with identifier ../../etc is accepted (%s)" % st)
        if st == 201:
            t = wait_for(lambda: next((x for x in tasks(srv) if x["id"] == task["id"]
                                       and x["status"] in FINAL), None), 30)
            check(t and t["status"] == "completed", "it ran (%s: %s)"
                  % (t and t.get("status"), t and t.get("error")))
            inside = os.path.join(ws, "_.._.._etc")
            check(os.path.isfile(os.path.join(inside, EDIT)),
                  "its workspace is ws/_.._.._etc (%s)" % sorted(os.listdir(ws)))
            check(not os.path.exists(os.path.join(tmp, "etc")),
                  "nothing was created at ws/../../etc")
            for d in os.listdir(ws):
                p = os.path.join(ws, d)
                check(os.path.realpath(p).startswith(os.path.realpath(ws) + os.sep),
                      "workspace %s resolves inside the root" % d)

        # 7. project routing: "[backend]" selects project BACKEND, whose missing settings
        # fail the item at once, named, and the issue is told
        proj_n = new_issue(gh, "[backend] Add an endpoint", "needs the API repo")
        check(wait_for(lambda: "ai-failed" in labels(gh, proj_n), 30),
              "a [backend] issue with incomplete project settings is labelled ai-failed (%s)"
              % labels(gh, proj_n))
        pt = task_for_issue(srv, proj_n)
        check(pt and pt.get("project") == "BACKEND" and pt.get("attempts") == 1,
              "it routed to project BACKEND and was not retried (%s)"
              % ((pt and (pt.get("project"), pt.get("attempts"))),))
        body = "\n".join(c["body"] for c in comments(gh, proj_n))
        check("TEAM_CONTRIBUTION_RULES_URL_BACKEND" in body and "PRD_URL_BACKEND" in body,
              "its comment names the missing variables (%r)" % body[:300])
    except BaseException:
        print("--- baton stderr (tail) ---\n" + srv.stderr()[-4000:])
        raise


# ---- 3. webhooks, through a daemon that polls once an hour -----------------------------

def test_webhooks(tmp, bind, parts):
    gh = harness.fake("github_server.py", "--token", TOKEN, "--git-root",
                      os.path.join(tmp, "git-b"))
    ws = os.path.join(tmp, "b", "ws")
    parts["webhooks"] = {"gh": gh, "srv": None, "ws": ws}
    srv = harness.serve(tmp, config(tmp, bind, gh, "1h", ws), "hook", env=env())
    parts["webhooks"]["srv"] = srv
    try:
        # the start-up poll happens once; wait for it so it cannot pick the issue up
        wait_for(lambda: any(e["path"] == "/repos/acme/app/issues"
                             for e in gh.control("GET", "/_control/requests")[1]), 10)
        time.sleep(0.3)
        n = new_issue(gh, "Hooked issue", "arrives by webhook")
        url = "http://127.0.0.1:%d/webhooks/github" % srv.port
        hook = {"url": url, "secret": SECRET, "event": "issues", "action": "labeled",
                "number": n, "label": "ai-ready"}

        st, res = gh.control("POST", "/_control/webhook", dict(hook, delivery="bad-1",
                                                               signature="sha256=" + "0" * 64))
        check(res.get("status") == 401, "a bad signature -> 401 (%s)" % res)
        st, res = gh.control("POST", "/_control/webhook", dict(hook, delivery="bad-2",
                                                               secret="not-the-secret"))
        check(res.get("status") == 401, "a signature with another secret -> 401 (%s)"
              % res.get("status"))
        st, res = gh.control("POST", "/_control/webhook", dict(hook, delivery="bad-3",
                                                               signature=""))
        check(res.get("status") == 401, "a missing signature -> 401 (%s)" % res.get("status"))
        time.sleep(0.3)
        check(task_for_issue(srv, n) is None and not tasks(srv),
              "rejected deliveries created no task")

        t0 = time.time()
        st, res = gh.control("POST", "/_control/webhook", dict(hook, delivery="good-1"))
        body = res.get("body", "")
        try:
            body = json.loads(body)
        except ValueError:
            pass
        check(res.get("status") in (200, 202) and isinstance(body, dict)
              and body.get("status") == "queued" and body.get("task_id"),
              "a valid labeled delivery is queued (%s %s)" % (res.get("status"), body))
        t = wait_for(lambda: task_for_issue(srv, n), 3, 0.05)
        check(t is not None and time.time() - t0 < 3,
              "its task exists at once (poll interval 1h)")

        st, res = gh.control("POST", "/_control/webhook", dict(hook, delivery="good-1"))
        check(res.get("status") == 200 and "duplicate" in res.get("body", ""),
              "a replayed delivery id is answered duplicate (%s %s)"
              % (res.get("status"), res.get("body")))
        # a ping, for good measure
        st, res = gh.control("POST", "/_control/webhook", {"url": url, "secret": SECRET,
                                                           "event": "ping"})
        check(res.get("status") == 200 and "pong" in res.get("body", ""), "ping -> pong")
        time.sleep(0.3)
        ours = [x for x in tasks(srv) if x.get("source") == "github"]
        check(len(ours) == 1, "one task in all (%d)" % len(ours))
    except BaseException:
        print("--- baton stderr (tail) ---\n" + srv.stderr()[-4000:])
        raise


# ---- 5. the token never appears ----------------------------------------------------------

def test_no_leaks(tmp, parts):
    forms = {TOKEN.encode(): "the token",
             base64.b64encode(("x-access-token:" + TOKEN).encode()): "the git Basic credential"}
    used = False
    for name, p in parts.items():
        gh, srv, ws = p["gh"], p["srv"], p["ws"]
        log = gh.control("GET", "/_control/requests")[1]
        used = used or any(e["headers"].get("authorization") == "Bearer " + TOKEN for e in log)
        events = read_events(srv.port)
        check("task.created" in events, "%s: the event log was read" % name)
        cmts = json.dumps([c for i in state(gh)["issues"].values() for c in i["comments"]]
                          + [p_ for p_ in state(gh)["pulls"]])
        rc = srv.stop()
        check(rc == 0, "%s: baton serve stopped cleanly (rc %s)" % (name, rc))
        out = srv.proc.stdout.read() if srv.proc.stdout else ""
        logs = srv.stderr() + out
        check(len(logs) > 0, "%s: the daemon logged something" % name)
        for blob, what in ((logs, "the daemon's log"), (events, "the events"),
                           (cmts, "comments and pull requests")):
            for form, fname in forms.items():
                check(form.decode() not in blob, "%s: %s not in %s" % (name, fname, what))
        files = 0
        for root, _, names in os.walk(ws):
            for f in names:
                path = os.path.join(root, f)
                if os.path.islink(path) or not os.path.isfile(path):
                    continue
                files += 1
                with open(path, "rb") as fh:
                    data = fh.read()
                for form, fname in forms.items():
                    if form in data:
                        check(False, "%s: %s found in %s" % (name, fname, path))
        cfgs = [os.path.join(r, "config") for r, d, _ in os.walk(ws) if r.endswith(".git")]
        check(files > 0 and (name != "polling" or cfgs),
              "%s: %d workspace files searched (%d .git/config)" % (name, files, len(cfgs)))
        for c in cfgs:
            with open(c) as fh:
                urls = [x for x in fh.read().splitlines() if x.strip().startswith("url =")]
            check(urls and not any("@" in u for u in urls),
                  "%s: the remote URL carries no credentials (%s)" % (c, urls))
    check(used, "the token was really sent to the API (Authorization: Bearer)")


def main():
    tmp = tempfile.mkdtemp(prefix="baton-github-")
    os.makedirs(os.path.join(tmp, "workflows"))
    bind, marks = make_agents(tmp)
    parts = {}
    try:
        test_polling(tmp, bind, marks, parts)
        test_webhooks(tmp, bind, parts)
        test_no_leaks(tmp, parts)
    finally:
        for p in parts.values():
            if p["srv"]:
                p["srv"].stop()
            p["gh"].stop()
    if not harness.FAILS:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print("kept for inspection:", tmp)
    harness.finish()


if __name__ == "__main__":
    main()
