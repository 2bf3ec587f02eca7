#!/usr/bin/env python3
"""POST /webhooks/github through `baton serve` (docs/github.md): signed deliveries, no API
token. A labelled issue is queued at once (202, the task in GET /api/tasks with source
github, identifier acme/app#N and its dedupe key); the same delivery again is a duplicate
and stores nothing; a new delivery for the same issue finds the same task (created false);
a missing or wrong signature is 401 and stores nothing; a missing delivery or event header,
another repository or a body that is not JSON is 400; ping answers pong; closing the issue
stops its task (cancelled); "/baton retry" puts a cancelled task back to pending and is
ignored while the task is open; the route takes bodies over the API's 1 MiB default and
refuses more than 25 MB (413); without a webhook secret the route answers 503, and the
signature check agrees with GitHub's published test vector.

The tracker points at a closed port (no GitHub is reached; polling waits an hour) and the
daemon runs no task itself (BATON_LOCAL_RUNS=0), so tasks stay where the webhooks put them.
"""
import hashlib
import hmac
import http.client
import json
import os
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import check, clean_env, finish, serve  # noqa: E402

SECRET = "s3cret"
READ_TOKEN = "read-token-webhooks-0123456789"
CONFIG = """server:
  tokens:
    - {name: r, token: "%s", scopes: [read]}
trackers:
  github:
    repo: acme/app
    token: "tok_webhooktest_123456"
    webhook_secret: "%s"
    api_url: http://127.0.0.1:9
    poll_interval: 1h
"""
VECTOR_SECRET = "It's a Secret to Everybody"
VECTOR_BODY = b"Hello, World!"
VECTOR_SIG = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def sign(body, secret=SECRET):
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post(port, body, event="issues", delivery=None, signature="auto", secret=SECRET,
         extra=None):
    """POST a delivery; returns (status, parsed JSON or text)."""
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "GitHub-Hookshot/test"}
    if event is not None:
        headers["X-GitHub-Event"] = event
    if delivery is not None:
        headers["X-GitHub-Delivery"] = delivery
    if signature == "auto":
        signature = sign(body, secret)
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    headers.update(extra or {})
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("POST", "/webhooks/github", body=body, headers=headers)
    r = c.getresponse()
    data = r.read().decode("utf-8", "replace")
    c.close()
    try:
        return r.status, json.loads(data)
    except ValueError:
        return r.status, data


def issue(number, title="Add login", state="open", labels=("ai-ready",)):
    return {"number": number, "title": title, "body": "Users need to log in.", "state": state,
            "labels": [{"name": n} for n in labels], "user": {"login": "alice"},
            "html_url": "https://github.com/acme/app/issues/%d" % number}


def payload(action, number, repo="acme/app", label=None, **kw):
    owner, name = repo.split("/")
    p = {"action": action, "issue": issue(number, **kw),
         "repository": {"full_name": repo, "name": name, "owner": {"login": owner}},
         "sender": {"login": "alice", "type": "User"}}
    if label:
        p["label"] = {"name": label}
    return p


def comment(number, text, user_type="User"):
    p = payload("created", number)
    p["comment"] = {"id": 1000 + number, "body": text,
                    "user": {"login": "bob", "type": user_type},
                    "html_url": "https://github.com/acme/app/issues/%d#c" % number,
                    "created_at": "2024-01-01T00:00:00Z"}
    return p


def tasks(srv):
    st, j = srv.request("GET", "/api/tasks?source=github", token=READ_TOKEN)
    return j.get("tasks", []) if st == 200 and isinstance(j, dict) else None


def wait_status(srv, task_id, want, timeout=10):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        st, j = srv.request("GET", "/api/tasks/" + task_id, token=READ_TOKEN)
        last = j.get("status") if isinstance(j, dict) else None
        if last == want:
            return last
        time.sleep(0.05)
    return last


def oversized(port, length):
    """Send only the headers of a POST declaring `length` bytes (Expect: 100-continue, so
    the server answers before any body is sent); return the status."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(("POST /webhooks/github HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               "Content-Type: application/json\r\nX-GitHub-Event: issues\r\n"
               "Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % length).encode())
    data = b""
    while b"\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    s.close()
    try:
        return int(data.split(b" ")[1])
    except (IndexError, ValueError):
        return 0


def main():
    # The test's own signer reproduces GitHub's published vector (pure Python).
    check(sign(VECTOR_BODY, VECTOR_SECRET) == VECTOR_SIG,
          "Python HMAC reproduces the GitHub test vector")

    env = clean_env({"BATON_LOCAL_RUNS": "0", "BATON_OFFLINE": "off"})
    with tempfile.TemporaryDirectory() as tmp:
        srv = serve(tmp, CONFIG % (READ_TOKEN, SECRET), "webhooks", env=env)
        try:
            run_checks(srv)
        finally:
            rc = srv.stop()
            check(rc == 0, "serve exits 0 on SIGTERM (%s)" % rc)
            log = srv.stderr()
            check("tok_webhooktest_123456" not in log, "the GitHub token is not in the log")
            check(SECRET not in log, "the webhook secret is not in the log")
            outcomes = [json.loads(l).get("outcome") for l in log.splitlines()
                        if l.startswith("{") and '"github webhook"' in l]
            check(all(o in outcomes for o in ("queued", "duplicate", "bad_signature", "pong",
                                              "ignored", "stopping", "retrying", "rejected")),
                  "each delivery is logged with its outcome (%s)" % sorted(set(filter(None, outcomes))))

        # The daemon's check agrees with the vector: a second daemon with the vector's secret
        # accepts its signature (past the 401: the body is not an issues payload) and
        # refuses the same body with one hex digit changed.
        srv = serve(tmp, CONFIG % (READ_TOKEN, VECTOR_SECRET), "vector", env=env)
        try:
            st, j = post(srv.port, VECTOR_BODY, "issues", "vec-1", VECTOR_SIG)
            check(st == 400, "GitHub vector signature accepted by the daemon (then 400: %s %s)"
                  % (st, j))
            bad = VECTOR_SIG[:-1] + ("0" if VECTOR_SIG[-1] != "0" else "1")
            st, j = post(srv.port, VECTOR_BODY, "issues", "vec-2", bad)
            check(st == 401, "vector with one digit changed -> 401 (%s)" % st)
        finally:
            srv.stop()

        # No webhook secret: 503 naming the setting.
        nosecret = "\n".join(l for l in (CONFIG % (READ_TOKEN, SECRET)).splitlines()
                             if "webhook_secret" not in l) + "\n"
        srv = serve(tmp, nosecret, "nosecret", env=env)
        try:
            st, j = post(srv.port, payload("labeled", 1, label="ai-ready"), "issues", "ns-1")
            msg = json.dumps(j)
            check(st == 503 and "trackers.github.webhook_secret" in msg and
                  "GITHUB_WEBHOOK_SECRET" in msg, "no webhook_secret -> 503 naming it (%s %s)"
                  % (st, j))
        finally:
            srv.stop()

        # No GitHub tracker at all: 404 not_configured.
        srv = serve(tmp, "server:\n  tokens:\n    - {name: r, token: \"%s\", scopes: [read]}\n"
                    % READ_TOKEN, "nogithub", env=env)
        try:
            st, j = post(srv.port, payload("labeled", 1, label="ai-ready"), "issues", "ng-1")
            check(st == 404 and isinstance(j, dict) and j["error"]["code"] == "not_configured",
                  "no trackers.github -> 404 not_configured (%s %s)" % (st, j))
        finally:
            srv.stop()


def run_checks(srv):
    port = srv.port

    # ping
    st, j = post(port, {"zen": "Keep it logically awesome.", "hook_id": 1,
                        "repository": {"full_name": "acme/app"}}, "ping", "d-ping")
    check(st == 200 and j.get("status") == "pong", "ping -> 200 pong (%s %s)" % (st, j))

    # A labelled issue is queued at once, without an API token.
    p7 = payload("labeled", 7, label="ai-ready")
    st, j = post(port, p7, "issues", "d-1")
    check(st == 202 and j.get("status") == "queued" and j.get("created") is True and
          j.get("task_id"), "issues labeled ai-ready -> 202 queued, created (%s %s)" % (st, j))
    task_id = j.get("task_id", "")
    ts = tasks(srv)
    t = next((x for x in ts or [] if x["id"] == task_id), None)
    check(t is not None and t["source"] == "github" and t["identifier"] == "acme/app#7" and
          t["dedupe_key"] == "github:acme/app#7" and t["status"] == "pending" and
          t["title"] == "Add login", "GET /api/tasks shows it: github, acme/app#7, pending (%s)" % t)

    # The same delivery again: duplicate, nothing new.
    st, j = post(port, p7, "issues", "d-1")
    check(st == 200 and j.get("status") == "duplicate" and j.get("delivery") == "d-1",
          "same delivery id again -> 200 duplicate (%s %s)" % (st, j))
    check(len(tasks(srv) or []) == 1, "still one task after the replay")

    # A new delivery for the same issue: the open task is found (dedupe by issue).
    st, j = post(port, payload("opened", 7), "issues", "d-2")
    check(st == 202 and j.get("created") is False and j.get("task_id") == task_id,
          "new delivery for the same issue -> created false, same task (%s %s)" % (st, j))
    check(len(tasks(srv) or []) == 1, "still one task after a second delivery for the issue")

    # Signatures: wrong, for another secret, missing -> 401 and nothing stored.
    p8 = payload("labeled", 8, label="ai-ready")
    body8 = json.dumps(p8).encode()
    st, j = post(port, body8, "issues", "d-bad", signature="sha256=" + "0" * 64)
    check(st == 401 and isinstance(j, dict) and j["error"]["code"] == "bad_signature",
          "wrong signature -> 401 bad_signature (%s %s)" % (st, j))
    st, j = post(port, body8, "issues", "d-bad2", signature=sign(body8, "not-the-secret"))
    check(st == 401, "signature with another secret -> 401 (%s)" % st)
    st, j = post(port, body8, "issues", "d-bad3", signature=sign(body8 + b" "))
    check(st == 401, "signature of a different body -> 401 (%s)" % st)
    st, j = post(port, body8, "issues", "d-nosig", signature=None)
    check(st == 401 and isinstance(j, dict) and j["error"]["code"] == "bad_signature",
          "missing X-Hub-Signature-256 -> 401 (%s %s)" % (st, j))
    check(len(tasks(srv) or []) == 1, "no task from the unsigned or badly signed deliveries")
    # ...and a refused delivery id was not taken: the genuine delivery with it still works.
    st, j = post(port, body8, "issues", "d-bad")
    check(st == 202 and j.get("created") is True, "a correctly signed delivery with the id of "
          "a refused one is taken (%s %s)" % (st, j))
    task8 = j.get("task_id", "")

    # Headers and payloads that cannot be used: 400.
    st, j = post(port, p7, "issues", None)
    check(st == 400 and "X-GitHub-Delivery" in json.dumps(j),
          "missing X-GitHub-Delivery -> 400 naming it (%s %s)" % (st, j))
    st, j = post(port, p7, None, "d-noevent")
    check(st == 400 and "X-GitHub-Event" in json.dumps(j),
          "missing X-GitHub-Event -> 400 (%s %s)" % (st, j))
    st, j = post(port, payload("labeled", 9, repo="other/repo", label="ai-ready"), "issues",
                 "d-other")
    check(st == 400 and "other/repo" in json.dumps(j),
          "another repository -> 400 naming it (%s %s)" % (st, j))
    st, j = post(port, b"this is not json{", "issues", "d-notjson")
    check(st == 400, "signed body that is not JSON -> 400 (%s %s)" % (st, j))
    # A rejected delivery was not recorded: fixed and redelivered with the same id, it works.
    st, j = post(port, payload("labeled", 10, label="ai-ready"), "issues", "d-notjson")
    check(st == 202 and j.get("created") is True,
          "a rejected delivery id is taken once the payload is usable (%s %s)" % (st, j))
    check(len(tasks(srv) or []) == 3, "three tasks: issues 7, 8 and 10")

    # Events with nothing to do.
    st, j = post(port, payload("edited", 7), "issues", "d-edit")
    check(st == 200 and j.get("status") == "ignored" and j.get("reason"),
          "issues edited -> 200 ignored with a reason (%s %s)" % (st, j))
    st, j = post(port, payload("labeled", 11, label="bug", labels=("bug",)), "issues", "d-bug")
    check(st == 200 and j.get("status") == "ignored", "labeled with an unwatched label -> "
          "ignored (%s %s)" % (st, j))

    # A big payload (over the API's 1 MiB default) is read; more than 25 MB is refused.
    big = payload("edited", 7)
    big["issue"]["body"] = "x" * (2 << 20)
    st, j = post(port, big, "issues", "d-big")
    check(st == 200 and j.get("status") == "ignored", "a 2 MiB delivery is read (%s)" % st)
    st = oversized(port, 25 * 1024 * 1024 + 1)
    check(st == 413, "a delivery over 25 MB -> 413 (%s)" % st)

    # "/baton retry" while the task is open; on an issue without a task.
    st, j = post(port, comment(7, "/baton retry"), "issue_comment", "d-retry-open")
    check(st == 200 and j.get("status") == "ignored" and "still open" in j.get("reason", ""),
          "/baton retry on an open task -> ignored, still open (%s %s)" % (st, j))
    st, j = post(port, comment(99, "/baton retry"), "issue_comment", "d-retry-none")
    check(st == 200 and j.get("status") == "ignored" and "no task" in j.get("reason", ""),
          "/baton retry on an issue without a task -> ignored (%s %s)" % (st, j))

    # Closing the issue stops its task.
    st, j = post(port, payload("closed", 7, state="closed"), "issues", "d-close")
    check(st == 202 and j.get("status") == "stopping", "issue closed -> 202 stopping (%s %s)"
          % (st, j))
    check(wait_status(srv, task_id, "cancelled") == "cancelled", "the closed issue's task is "
          "cancelled")
    check(wait_status(srv, task8, "pending", 0.2) == "pending", "other issues' tasks untouched")

    # Removing the watched label stops that issue's task too (its workspace is kept).
    st, j = post(port, payload("unlabeled", 8, label="ai-ready", labels=()), "issues", "d-unl")
    check(st == 202 and j.get("status") == "stopping" and j.get("reason") == "label removed",
          "issue unlabeled -> 202 stopping, label removed (%s %s)" % (st, j))
    check(wait_status(srv, task8, "cancelled") == "cancelled", "the unlabeled issue's task is "
          "cancelled")

    # "/baton retry" on the cancelled task puts it back to pending.
    st, j = post(port, comment(7, "/baton retry"), "issue_comment", "d-retry")
    check(st == 202 and j.get("status") == "retrying" and j.get("task_id") == task_id,
          "/baton retry on the cancelled task -> 202 retrying (%s %s)" % (st, j))
    check(wait_status(srv, task_id, "pending") == "pending", "the task is pending again")
    st, j = post(port, comment(7, "/baton retry"), "issue_comment", "d-retry")
    check(st == 200 and j.get("status") == "duplicate", "the retry delivery replayed -> "
          "duplicate (%s %s)" % (st, j))
    check(len(tasks(srv) or []) == 3, "no task created by retries, stops or replays")


if __name__ == "__main__":
    main()
    finish()
