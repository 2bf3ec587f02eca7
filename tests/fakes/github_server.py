#!/usr/bin/env python3
"""github_server.py - a stateful fake GitHub (REST API + git smart HTTP) for baton's tests.

Standard library only. It keeps issues, labels, comments, pull requests and (with
--git-root) a real bare git repository, and speaks the wire format documented in
../../shared/reference/api-reference.md sections 0 and 1 (GHES-like: no /api/v3 prefix):

  GET  /user, /rate_limit, /repos/{o}/{r}
  GET  /repos/{o}/{r}/issues                 state, labels (all must match, case-insensitive),
                                             per_page (30, max 100), page, sort, direction,
                                             since; pull requests included (pull_request key)
  GET/PATCH /repos/{o}/{r}/issues/{n}        PATCH: state, state_reason, title, body, labels
  GET/POST/PUT/DELETE /repos/{o}/{r}/issues/{n}/labels, DELETE .../labels/{name}
  GET/POST /repos/{o}/{r}/issues/{n}/comments
  GET/POST /repos/{o}/{r}/pulls, GET /repos/{o}/{r}/pulls/{n}
  GET/POST /{o}/{r}.git/...                  git smart HTTP through `git http-backend`

Every API request needs a User-Agent (else 403); with --token it needs "Authorization:
Bearer T" or "token T" (else 401), git requests "Basic base64(any:T)" (else 401 with
WWW-Authenticate). Every API answer has the x-ratelimit-* headers; each request except a
304 and GET /rate_limit uses one of 5000 (403 "API rate limit exceeded" at 0 until the
reset). A 200 GET carries an ETag (W/"<sha1 of the body>"); If-None-Match with it -> 304.
Lists are paginated with an absolute `Link` header (next/last, plus prev/first after page 1;
none when everything fits on one page).

Usage:
  python3 github_server.py [--port 0] [--exit-on-stdin-eof] [--repo acme/app] [--token T]
                           [--git-root DIR] [--default-branch main]
prints "PORT <n>" once listening (after creating DIR/<o>/<r>.git with one commit holding
README.md on the default branch), then serves until SIGTERM/SIGINT (or stdin EOF).

Control endpoints (no auth, not logged, no rate limit; they act as a human would):
  POST /_control/issues {"title","body","labels":[..],"user":"alice"} -> 201 the issue
  POST /_control/issues/{n}/close | /reopen
  POST /_control/issues/{n}/labels {"add":[..],"remove":[..]}
  GET  /_control/state    {"issues":{n:{...,"comments":[..]}},"pulls":[..],"labels":[..],
                           "branches":{name: sha}}
  GET  /_control/requests [{"kind":"api"|"git","method","path","query","status",
                           "headers":{lower-case: value},"body" (API: parsed JSON or text),
                           "authenticated" (git),"time"}]
  POST /_control/requests/clear
  POST /_control/ratelimit {"remaining":n,"reset_in":s} | {"secondary":n,"retry_after":s}
  POST /_control/fail {"count":n,"status":502,"body":{..},"path_prefix":"/repos"}
  POST /_control/webhook {"url","secret","event":"issues"|"issue_comment"|"ping",
                          "action","number","label","delivery","signature","comment",
                          "sender","payload"} -> {"status","body","delivery"}
"""

import argparse
import base64
import calendar
import hashlib
import hmac
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

LIMIT = 5000
RESET_WINDOW = 3600
DOCS = "https://docs.github.com/rest"
BOT = {"login": "baton-bot", "id": 1, "type": "Bot"}
SECONDARY_MSG = ("You have exceeded a secondary rate limit. Please wait a few minutes before "
                 "you try again.")
NO_UA_MSG = ("Request forbidden by administrative rules. Please make sure your request has a "
             "User-Agent header")


class ApiError(Exception):
    def __init__(self, status, body, headers=None):
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


def not_found():
    return ApiError(404, {"message": "Not Found", "documentation_url": DOCS})


def validation(errors, message="Validation Failed"):
    return ApiError(422, {"message": message, "errors": errors, "documentation_url": DOCS})


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def parse_iso(s):
    m = re.match(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)", s or "")
    if not m:
        raise ApiError(422, {"message": "Invalid value for since", "documentation_url": DOCS})
    return calendar.timegm(tuple(int(x) for x in m.groups()) + (0, 0, 0))


class State:
    def __init__(self, args, base):
        self.lock = threading.Lock()
        self.base = base
        self.owner, self.name = args.repo.split("/", 1)
        self.full = args.repo
        self.token = args.token
        self.git_root = args.git_root
        self.default_branch = args.default_branch
        self.bare = (os.path.join(args.git_root, self.owner, self.name + ".git")
                     if args.git_root else None)
        self.issues = {}      # number -> internal issue dict
        self.labels = {}      # lower name -> {"id","name","color",...}
        self.counter = 0      # issue and PR numbers share it
        self.next_ids = {"issue": 1000, "label": 500, "comment": 7000, "pull": 9000}
        self.log = []
        self.remaining = LIMIT
        self.reset = int(time.time()) + RESET_WINDOW
        self.secondary = 0
        self.retry_after = None
        self.fails = []
        self.stopping = threading.Event()

    def new_id(self, kind):
        self.next_ids[kind] += 1
        return self.next_ids[kind]

    # ---- labels ----

    def label(self, name):
        """The repository label of that name (case-insensitive), created when missing."""
        key = name.lower()
        if key not in self.labels:
            color = hashlib.sha1(key.encode()).hexdigest()[:6]
            self.labels[key] = {"id": self.new_id("label"), "name": name, "color": color,
                                "default": False, "description": None,
                                "url": "%s/repos/%s/labels/%s" % (self.base, self.full,
                                                                  quote(name, safe=""))}
        return self.labels[key]

    def set_labels(self, issue, names):
        issue["labels"] = []
        self.add_labels(issue, names)

    def add_labels(self, issue, names):
        have = {n.lower() for n in issue["labels"]}
        for n in names:
            lab = self.label(n)
            if lab["name"].lower() not in have:
                issue["labels"].append(lab["name"])
                have.add(lab["name"].lower())
        issue["updated"] = time.time()

    def remove_label(self, issue, name):
        for n in issue["labels"]:
            if n.lower() == name.lower():
                issue["labels"].remove(n)
                issue["updated"] = time.time()
                return True
        return False

    # ---- issues ----

    def create_issue(self, title, body, labels, user, utype="User"):
        self.counter += 1
        now = time.time()
        issue = {"number": self.counter, "id": self.new_id("issue"), "title": title,
                 "body": body, "state": "open", "state_reason": None, "labels": [],
                 "user": {"login": user, "id": 100 + len(user), "type": utype},
                 "created": now, "updated": now, "closed": None, "comments": [],
                 "pull": None}
        self.set_labels(issue, labels or [])
        issue["updated"] = now
        self.issues[issue["number"]] = issue
        return issue

    def issue_html(self, issue):
        kind = "pull" if issue["pull"] else "issues"
        return "%s/%s/%s/%d" % (self.base, self.full, kind, issue["number"])

    def issue_json(self, issue):
        n = issue["number"]
        out = {"id": issue["id"], "node_id": "I_%d" % issue["id"], "number": n,
               "title": issue["title"], "body": issue["body"], "state": issue["state"],
               "state_reason": issue["state_reason"], "locked": False,
               "labels": [self.label_json(x) for x in issue["labels"]],
               "assignees": [], "user": dict(issue["user"]),
               "html_url": self.issue_html(issue),
               "url": "%s/repos/%s/issues/%d" % (self.base, self.full, n),
               "repository_url": "%s/repos/%s" % (self.base, self.full),
               "comments_url": "%s/repos/%s/issues/%d/comments" % (self.base, self.full, n),
               "created_at": iso(issue["created"]), "updated_at": iso(issue["updated"]),
               "closed_at": iso(issue["closed"]) if issue["closed"] else None,
               "comments": len(issue["comments"]), "author_association": "OWNER"}
        if issue["pull"]:
            out["pull_request"] = {
                "url": "%s/repos/%s/pulls/%d" % (self.base, self.full, n),
                "html_url": self.issue_html(issue)}
            out["draft"] = issue["pull"]["draft"]
        return out

    def label_json(self, name):
        lab = self.label(name)
        return {"id": lab["id"], "node_id": "LA_%d" % lab["id"], "url": lab["url"],
                "name": lab["name"], "color": lab["color"], "default": False,
                "description": None}

    def pull_json(self, issue):
        p = issue["pull"]
        n = issue["number"]
        return {"id": p["id"], "node_id": "PR_%d" % p["id"], "number": n,
                "html_url": self.issue_html(issue),
                "url": "%s/repos/%s/pulls/%d" % (self.base, self.full, n),
                "issue_url": "%s/repos/%s/issues/%d" % (self.base, self.full, n),
                "state": issue["state"], "title": issue["title"], "body": issue["body"],
                "user": dict(issue["user"]), "draft": p["draft"], "merged": False,
                "labels": [self.label_json(x) for x in issue["labels"]],
                "head": {"ref": p["head"], "sha": p["head_sha"],
                         "label": "%s:%s" % (self.owner, p["head"])},
                "base": {"ref": p["base"], "sha": p["base_sha"],
                         "label": "%s:%s" % (self.owner, p["base"])},
                "created_at": iso(issue["created"]), "updated_at": iso(issue["updated"]),
                "closed_at": iso(issue["closed"]) if issue["closed"] else None}

    def comment_json(self, issue, c):
        return {"id": c["id"], "node_id": "IC_%d" % c["id"],
                "url": "%s/repos/%s/issues/comments/%d" % (self.base, self.full, c["id"]),
                "html_url": "%s#issuecomment-%d" % (self.issue_html(issue), c["id"]),
                "issue_url": "%s/repos/%s/issues/%d" % (self.base, self.full, issue["number"]),
                "body": c["body"], "user": dict(c["user"]),
                "created_at": iso(c["created"]), "updated_at": iso(c["created"]),
                "author_association": "OWNER" if c["user"]["type"] == "Bot" else "NONE"}

    def add_comment(self, issue, body, user):
        c = {"id": self.new_id("comment"), "body": body, "user": user, "created": time.time()}
        issue["comments"].append(c)
        issue["updated"] = c["created"]
        return c

    def close(self, issue, reason="completed"):
        issue["state"] = "closed"
        issue["state_reason"] = reason or "completed"
        issue["closed"] = issue["updated"] = time.time()

    def reopen(self, issue):
        issue["state"] = "open"
        issue["state_reason"] = "reopened"
        issue["closed"] = None
        issue["updated"] = time.time()

    def rate_headers(self):
        return {"x-ratelimit-limit": str(LIMIT), "x-ratelimit-remaining": str(self.remaining),
                "x-ratelimit-used": str(LIMIT - self.remaining),
                "x-ratelimit-reset": str(self.reset), "x-ratelimit-resource": "core"}

    def rate_doc(self):
        core = {"limit": LIMIT, "remaining": self.remaining, "used": LIMIT - self.remaining,
                "reset": self.reset, "resource": "core"}
        return {"resources": {"core": core}, "rate": core}

    # ---- git ----

    def git(self, *args, check=False):
        return subprocess.run(["git", "--git-dir", self.bare, *args], capture_output=True,
                              text=True, check=check)

    def branch_sha(self, branch):
        if not self.bare:
            return hashlib.sha1(branch.encode()).hexdigest()
        if branch.startswith("-") or not branch:
            return None
        r = self.git("rev-parse", "--verify", "--quiet", "refs/heads/" + branch + "^{commit}")
        return r.stdout.strip() if r.returncode == 0 else None

    def branches(self):
        if not self.bare:
            return {}
        r = self.git("for-each-ref", "--format=%(refname:short) %(objectname)", "refs/heads/")
        out = {}
        for line in r.stdout.splitlines():
            name, _, sha = line.partition(" ")
            out[name] = sha
        return out


def make_bare(state):
    """DIR/<owner>/<name>.git, a bare repository with README.md on the default branch."""
    bare = state.bare
    if os.path.isdir(bare):
        return
    os.makedirs(os.path.dirname(bare), exist_ok=True)
    env = dict(os.environ, GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0")
    run = lambda *a, **kw: subprocess.run(["git", *a], check=True, capture_output=True,
                                          env=env, **kw)
    run("init", "--bare", "--quiet", "-b", state.default_branch, bare)
    run("--git-dir", bare, "config", "http.receivepack", "true")
    tmp = tempfile.mkdtemp(prefix="fakegh-seed-")
    try:
        work = os.path.join(tmp, "w")
        run("clone", "--quiet", bare, work)
        with open(os.path.join(work, "README.md"), "w") as f:
            f.write("# %s\n\nA repository served by the fake GitHub.\n" % state.name)
        run("-C", work, "checkout", "--quiet", "-B", state.default_branch)
        run("-C", work, "add", "README.md")
        run("-C", work, "-c", "user.name=x", "-c", "user.email=x@x", "commit", "--quiet",
            "-m", "initial commit")
        run("-C", work, "push", "--quiet", "origin", "HEAD:refs/heads/" + state.default_branch)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "fake-github/1"
    state = None  # set in main

    def log_message(self, fmt, *args):  # quiet
        pass

    def read_body(self):
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            data = b""
            while True:
                line = self.rfile.readline()
                n = int(line.split(b";")[0].strip() or b"0", 16)
                if n == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(n)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def send_raw(self, status, body, headers):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, str(v))
        if status != 304:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if status != 304 and self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()

    def do_GET(self):
        self.dispatch()

    def do_POST(self):
        self.dispatch()

    def do_PUT(self):
        self.dispatch()

    def do_PATCH(self):
        self.dispatch()

    def do_DELETE(self):
        self.dispatch()

    def do_HEAD(self):
        self.dispatch()

    def dispatch(self):
        u = urlsplit(self.path)
        self.route, self.query = u.path, u.query
        self.raw = self.read_body()
        hdrs = {k.lower(): v for k, v in self.headers.items()}
        if self.route.startswith("/_control/"):
            try:
                status, body = self.control()
            except ApiError as e:
                status, body = e.status, e.body
            self.send_raw(status, json.dumps(body),
                          {"Content-Type": "application/json"})
            return
        st = self.state
        if re.match(r"^/[^/]+/[^/]+\.git(/|$)", self.route):
            self.git_http(hdrs)
            return
        status, body, headers = self.api(hdrs)
        try:
            logged = json.loads(self.raw) if self.raw else None
        except ValueError:
            logged = self.raw.decode("utf-8", "replace")
        with st.lock:
            st.log.append({"kind": "api", "method": self.command, "path": self.route,
                           "query": self.query, "status": status, "headers": hdrs,
                           "body": logged, "time": time.time()})
        self.send_raw(status, b"" if body is None else json.dumps(body, indent=1), headers)

    # ---- REST API ----

    def api(self, hdrs):
        """(status, body or None, headers); enforces UA, auth and the rate limits."""
        st = self.state
        headers = {"Content-Type": "application/json; charset=utf-8",
                   "X-GitHub-Media-Type": "github.v3; format=json",
                   "X-GitHub-Request-Id": uuid.uuid4().hex[:16].upper()}
        with st.lock:
            now = time.time()
            if st.remaining <= 0 and now >= st.reset:
                st.remaining = LIMIT
                st.reset = int(now) + RESET_WINDOW
            headers.update(st.rate_headers())
            if not hdrs.get("user-agent"):
                return 403, {"message": NO_UA_MSG}, headers
            if st.token and not self.bearer_ok(hdrs.get("authorization", "")):
                return 401, {"message": "Bad credentials", "documentation_url": DOCS}, headers
            if st.remaining <= 0 and self.route != "/rate_limit":
                return 403, {"message": "API rate limit exceeded for user ID 1.",
                             "documentation_url": DOCS}, headers
            if st.secondary > 0:
                st.secondary -= 1
                if st.retry_after is not None:
                    headers["retry-after"] = str(st.retry_after)
                return 403, {"message": SECONDARY_MSG, "documentation_url": DOCS}, headers
            for rule in st.fails:
                if self.route.startswith(rule.get("path_prefix") or "/"):
                    rule["count"] -= 1
                    if rule["count"] <= 0:
                        st.fails.remove(rule)
                    status = int(rule.get("status", 500))
                    body = rule.get("body")
                    if body is None:
                        body = {"message": http.client.responses.get(status, "Error")}
                    counted = self.route != "/rate_limit"
                    if counted:
                        st.remaining -= 1
                    headers.update(st.rate_headers())
                    headers.update(rule.get("headers") or {})
                    return status, body, headers
            try:
                if self.raw and self.command in ("POST", "PUT", "PATCH"):
                    try:
                        self.json = json.loads(self.raw)
                    except ValueError:
                        raise ApiError(400, {"message": "Problems parsing JSON",
                                             "documentation_url": DOCS})
                else:
                    self.json = None
                status, body, extra = self.route_api()
            except ApiError as e:
                status, body, extra = e.status, e.body, e.headers
            headers.update(extra)
            if status == 200 and self.command == "GET":
                etag = 'W/"%s"' % hashlib.sha1(json.dumps(body, indent=1).encode()).hexdigest()
                headers["ETag"] = etag
                inm = hdrs.get("if-none-match")
                if inm and etag_match(inm, etag):
                    status, body = 304, None
                    for k in ("Content-Type", "Link"):
                        headers.pop(k, None)
            if status != 304 and self.route != "/rate_limit":
                st.remaining -= 1
            headers.update(st.rate_headers())
            if self.route == "/rate_limit" and status == 200:
                body = st.rate_doc()
            return status, body, headers

    def bearer_ok(self, auth):
        parts = auth.split(None, 1)
        return (len(parts) == 2 and parts[0].lower() in ("bearer", "token")
                and hmac.compare_digest(parts[1].strip(), self.state.token))

    def params(self):
        return dict(parse_qsl(self.query, keep_blank_values=True))

    def route_api(self):
        st, m, p = self.state, self.command, self.route.rstrip("/") or "/"
        if p == "/user" and m == "GET":
            return 200, dict(BOT), {}
        if p == "/rate_limit" and m == "GET":
            return 200, st.rate_doc(), {}
        mm = re.match(r"^/repos/([^/]+)/([^/]+)(/.*)?$", p)
        if not mm:
            raise not_found()
        if mm.group(1).lower() != st.owner.lower() or mm.group(2).lower() != st.name.lower():
            raise not_found()
        rest = mm.group(3) or ""
        if rest == "" and m == "GET":
            return 200, {"id": 42, "name": st.name, "full_name": st.full,
                         "owner": {"login": st.owner, "type": "Organization"},
                         "private": False, "default_branch": st.default_branch,
                         "html_url": "%s/%s" % (st.base, st.full),
                         "clone_url": "%s/%s.git" % (st.base, st.full),
                         "url": "%s/repos/%s" % (st.base, st.full)}, {}
        if rest == "/issues" and m == "GET":
            return self.list_issues()
        if rest == "/pulls":
            if m == "GET":
                return self.list_pulls()
            if m == "POST":
                return self.create_pull()
        mm = re.match(r"^/pulls/(\d+)$", rest)
        if mm and m == "GET":
            issue = st.issues.get(int(mm.group(1)))
            if not issue or not issue["pull"]:
                raise not_found()
            return 200, st.pull_json(issue), {}
        mm = re.match(r"^/issues/(\d+)(/.*)?$", rest)
        if not mm:
            raise not_found()
        issue = st.issues.get(int(mm.group(1)))
        if not issue:
            raise not_found()
        sub = mm.group(2) or ""
        if sub == "":
            if m == "GET":
                return 200, st.issue_json(issue), {}
            if m == "PATCH":
                return self.patch_issue(issue)
        if sub == "/labels":
            if m == "GET":
                return self.page_of([st.label_json(x) for x in issue["labels"]])
            if m in ("POST", "PUT"):
                names = label_names(self.json)
                if m == "PUT":
                    st.set_labels(issue, names)
                else:
                    st.add_labels(issue, names)
                return 200, [st.label_json(x) for x in issue["labels"]], {}
            if m == "DELETE":
                issue["labels"] = []
                issue["updated"] = time.time()
                return 204, None, {}
        mm = re.match(r"^/labels/([^/]+)$", sub)
        if mm and m == "DELETE":
            if not st.remove_label(issue, unquote(mm.group(1))):
                raise ApiError(404, {"message": "Label does not exist",
                                     "documentation_url": DOCS})
            return 200, [st.label_json(x) for x in issue["labels"]], {}
        if sub == "/comments":
            if m == "GET":
                return self.page_of([st.comment_json(issue, c) for c in issue["comments"]])
            if m == "POST":
                body = (self.json or {}).get("body") if isinstance(self.json, dict) else None
                if not isinstance(body, str) or not body:
                    raise validation([{"resource": "IssueComment", "code": "missing_field",
                                       "field": "body"}])
                c = st.add_comment(issue, body, dict(BOT))
                return 201, st.comment_json(issue, c), {}
        raise not_found()

    def patch_issue(self, issue):
        st, j = self.state, self.json
        if not isinstance(j, dict):
            raise ApiError(400, {"message": "Problems parsing JSON", "documentation_url": DOCS})
        if "state" in j and j["state"] not in ("open", "closed"):
            raise validation([{"resource": "Issue", "code": "invalid", "field": "state"}])
        if "state_reason" in j and j["state_reason"] not in (None, "completed", "not_planned",
                                                             "reopened"):
            raise validation([{"resource": "Issue", "code": "invalid",
                               "field": "state_reason"}])
        if "title" in j:
            issue["title"] = str(j["title"])
        if "body" in j:
            issue["body"] = j["body"]
        if "labels" in j:
            st.set_labels(issue, label_names(j["labels"]))
        if j.get("state") == "closed" and issue["state"] != "closed":
            st.close(issue, j.get("state_reason") or "completed")
        elif j.get("state") == "open" and issue["state"] != "open":
            st.reopen(issue)
        elif "state_reason" in j and issue["state"] == "closed":
            issue["state_reason"] = j["state_reason"]
        issue["updated"] = time.time()
        return 200, st.issue_json(issue), {}

    def list_issues(self):
        st, q = self.state, self.params()
        state = q.get("state", "open")
        if state not in ("open", "closed", "all"):
            raise validation([{"resource": "Issue", "code": "invalid", "field": "state"}])
        want = [x.strip().lower() for x in q.get("labels", "").split(",") if x.strip()]
        since = parse_iso(q["since"]) if q.get("since") else None
        items = []
        for issue in st.issues.values():
            if state != "all" and issue["state"] != state:
                continue
            have = {x.lower() for x in issue["labels"]}
            if any(w not in have for w in want):
                continue
            if since is not None and issue["updated"] < since:
                continue
            items.append(issue)
        sort = q.get("sort", "created")
        key = "updated" if sort == "updated" else "created"
        items.sort(key=lambda i: (i[key], i["number"]),
                   reverse=q.get("direction", "desc") != "asc")
        return self.page_of([st.issue_json(i) for i in items])

    def list_pulls(self):
        st, q = self.state, self.params()
        state = q.get("state", "open")
        head = q.get("head")
        base = q.get("base")
        items = []
        for issue in sorted(st.issues.values(), key=lambda i: -i["number"]):
            p = issue["pull"]
            if not p or (state != "all" and issue["state"] != state):
                continue
            if head:
                owner, _, branch = head.rpartition(":")
                if branch != p["head"] or (owner and owner.lower() != st.owner.lower()):
                    continue
            if base and base != p["base"]:
                continue
            items.append(st.pull_json(issue))
        return self.page_of(items)

    def page_of(self, items):
        """One page of a list, with the Link header GitHub would send."""
        q = parse_qsl(self.query, keep_blank_values=True)
        d = dict(q)
        try:
            per = int(d.get("per_page", 30))
        except ValueError:
            per = 30
        per = 30 if per < 1 else min(per, 100)
        try:
            page = max(1, int(d.get("page", 1)))
        except ValueError:
            page = 1
        last = max(1, (len(items) + per - 1) // per)
        chunk = items[(page - 1) * per:page * per]
        headers = {}
        if last > 1:
            def url(n):
                qq = [(k, v) for k, v in q if k != "page"] + [("page", str(n))]
                return "<%s%s?%s>" % (self.state.base, self.route, urlencode(qq))
            rels = []
            if page > 1:
                rels.append('%s; rel="prev"' % url(min(page - 1, last)))
            if page < last:
                rels.append('%s; rel="next"' % url(page + 1))
                rels.append('%s; rel="last"' % url(last))
            if page > 1:
                rels.append('%s; rel="first"' % url(1))
            headers["Link"] = ", ".join(rels)
        return 200, chunk, headers

    def create_pull(self):
        st, j = self.state, self.json
        if not isinstance(j, dict):
            raise ApiError(400, {"message": "Problems parsing JSON", "documentation_url": DOCS})
        for field in ("head", "base"):
            if not isinstance(j.get(field), str) or not j.get(field):
                raise validation([{"resource": "PullRequest", "code": "missing_field",
                                   "field": field}])
        if not isinstance(j.get("title"), str) or not j["title"]:
            raise validation([{"resource": "PullRequest", "code": "missing_field",
                               "field": "title"}])
        owner, _, branch = j["head"].rpartition(":")
        base = j["base"]
        if owner and owner.lower() != st.owner.lower():
            raise validation([{"resource": "PullRequest", "code": "invalid", "field": "head"}])
        head_sha = st.branch_sha(branch)
        if not head_sha:
            raise validation([{"resource": "PullRequest", "code": "invalid", "field": "head"}])
        base_sha = st.branch_sha(base)
        if not base_sha:
            raise validation([{"resource": "PullRequest", "code": "invalid", "field": "base"}])
        for issue in st.issues.values():
            p = issue["pull"]
            if p and issue["state"] == "open" and p["head"] == branch:
                raise validation([{"resource": "PullRequest", "code": "custom",
                                   "message": "A pull request already exists for %s:%s."
                                   % (st.owner, branch)}])
        if st.bare:
            r = st.git("rev-list", "--count", "refs/heads/%s..refs/heads/%s" % (base, branch))
            if r.returncode != 0 or r.stdout.strip() == "0":
                raise validation([{"resource": "PullRequest", "code": "custom",
                                   "message": "No commits between %s and %s" % (base, branch)}])
        issue = st.create_issue(j["title"], j.get("body"), [], BOT["login"], "Bot")
        issue["user"] = dict(BOT)
        issue["pull"] = {"id": st.new_id("pull"), "head": branch, "base": base,
                         "head_sha": head_sha, "base_sha": base_sha,
                         "draft": bool(j.get("draft", False))}
        return 201, st.pull_json(issue), {}

    # ---- git smart HTTP ----

    def git_http(self, hdrs):
        st = self.state
        authed = False
        user = ""
        auth = hdrs.get("authorization", "")
        if auth.lower().startswith("basic "):
            try:
                user, _, pw = base64.b64decode(auth[6:].strip()).decode().partition(":")
                authed = bool(st.token) and hmac.compare_digest(pw, st.token)
            except (ValueError, UnicodeDecodeError):
                authed = False
        entry = {"kind": "git", "method": self.command, "path": self.route,
                 "query": self.query, "headers": hdrs, "authenticated": authed,
                 "time": time.time()}

        def finish(status, body, headers):
            entry["status"] = status
            with st.lock:
                st.log.append(entry)
            self.send_raw(status, body, headers)

        if not st.git_root:
            return finish(404, "Not Found\n", {"Content-Type": "text/plain"})
        if st.token and not authed:
            return finish(401, "Unauthorized\n", {"Content-Type": "text/plain",
                                                  "WWW-Authenticate": 'Basic realm="GitHub"'})
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "GIT_PROJECT_ROOT": os.path.abspath(st.git_root), "GIT_HTTP_EXPORT_ALL": "1",
               "GIT_CONFIG_NOSYSTEM": "1", "PATH_INFO": self.route,
               "QUERY_STRING": self.query, "REQUEST_METHOD": self.command,
               "CONTENT_TYPE": hdrs.get("content-type", ""),
               "CONTENT_LENGTH": str(len(self.raw)),
               "REMOTE_USER": user or "git", "REMOTE_ADDR": self.client_address[0],
               "SERVER_PROTOCOL": "HTTP/1.1", "GATEWAY_INTERFACE": "CGI/1.1"}
        if os.environ.get("HOME"):
            env["HOME"] = os.environ["HOME"]
        for k, v in hdrs.items():
            if k not in ("content-type", "content-length", "authorization"):
                env["HTTP_" + k.upper().replace("-", "_")] = v
        if "git-protocol" in hdrs:
            env["GIT_PROTOCOL"] = hdrs["git-protocol"]
        r = subprocess.run(["git", "http-backend"], input=self.raw, capture_output=True,
                           env=env)
        out = r.stdout
        sep = out.find(b"\r\n\r\n")
        cut = 4
        if sep < 0:
            sep, cut = out.find(b"\n\n"), 2
        if sep < 0:
            return finish(500, r.stderr or b"git http-backend failed\n",
                          {"Content-Type": "text/plain"})
        status = 200
        headers = {}
        for line in out[:sep].decode("latin-1").splitlines():
            k, _, v = line.partition(":")
            if k.lower() == "status":
                status = int(v.strip().split()[0])
            elif k:
                headers[k.strip()] = v.strip()
        return finish(status, out[sep + cut:], headers)

    # ---- control ----

    def control(self):
        st = self.state
        try:
            j = json.loads(self.raw) if self.raw else {}
        except ValueError:
            raise ApiError(400, {"message": "Problems parsing JSON"})
        if not isinstance(j, dict):
            j = {}
        p, m = self.route, self.command
        with st.lock:
            if p == "/_control/issues" and m == "POST":
                issue = st.create_issue(j.get("title") or "untitled", j.get("body"),
                                        j.get("labels") or [], j.get("user") or "alice")
                return 201, st.issue_json(issue)
            mm = re.match(r"^/_control/issues/(\d+)/(close|reopen|labels)$", p)
            if mm and m == "POST":
                issue = st.issues.get(int(mm.group(1)))
                if not issue:
                    raise not_found()
                if mm.group(2) == "close":
                    st.close(issue, j.get("state_reason") or "completed")
                elif mm.group(2) == "reopen":
                    st.reopen(issue)
                else:
                    st.add_labels(issue, j.get("add") or [])
                    for name in j.get("remove") or []:
                        st.remove_label(issue, name)
                return 200, st.issue_json(issue)
            if p == "/_control/state" and m == "GET":
                issues, pulls = {}, []
                for n, issue in st.issues.items():
                    comments = [st.comment_json(issue, c) for c in issue["comments"]]
                    if issue["pull"]:
                        pulls.append(dict(st.pull_json(issue), comments=comments))
                    else:
                        issues[str(n)] = dict(st.issue_json(issue), comments=comments)
                return 200, {"issues": issues, "pulls": pulls,
                             "labels": [dict(v) for v in st.labels.values()],
                             "branches": st.branches(), "rate": st.rate_doc()["rate"]}
            if p == "/_control/requests" and m == "GET":
                return 200, list(st.log)
            if p == "/_control/requests/clear" and m == "POST":
                st.log.clear()
                return 200, {"cleared": True}
            if p == "/_control/ratelimit" and m == "POST":
                if "remaining" in j:
                    st.remaining = max(0, int(j["remaining"]))
                    st.reset = int(time.time() + float(j.get("reset_in", RESET_WINDOW)))
                if "secondary" in j:
                    st.secondary = int(j["secondary"])
                    st.retry_after = j.get("retry_after")
                return 200, st.rate_doc()
            if p == "/_control/fail" and m == "POST":
                st.fails.append({"count": int(j.get("count", 1)),
                                 "status": int(j.get("status", 500)), "body": j.get("body"),
                                 "headers": j.get("headers"),
                                 "path_prefix": j.get("path_prefix") or "/"})
                return 200, {"queued": True}
        if p == "/_control/webhook" and m == "POST":
            return self.webhook(j)
        raise not_found()

    def webhook(self, j):
        st = self.state
        event = j.get("event") or "issues"
        delivery = j.get("delivery") or str(uuid.uuid4())
        sender = {"login": j.get("sender") or "alice", "id": 2, "type": "User"}
        with st.lock:
            if "payload" in j:
                payload = j["payload"]
            else:
                payload = {"action": j.get("action") or "opened",
                           "repository": {"id": 42, "full_name": st.full, "name": st.name,
                                          "owner": {"login": st.owner},
                                          "html_url": "%s/%s" % (st.base, st.full)},
                           "sender": sender}
                if event == "ping":
                    payload = {"zen": "Keep it logically awesome.", "hook_id": 1,
                               "repository": payload["repository"], "sender": sender}
                else:
                    issue = st.issues.get(int(j.get("number") or 0))
                    if not issue:
                        raise not_found()
                    if event == "issue_comment":
                        payload["action"] = j.get("action") or "created"
                        c = st.add_comment(issue, j.get("comment") or "", dict(sender))
                        payload["comment"] = {"id": c["id"], "body": c["body"],
                                              "user": dict(sender),
                                              "html_url": st.comment_json(issue,
                                                                          c)["html_url"],
                                              "created_at": iso(c["created"])}
                    payload["issue"] = st.issue_json(issue)
                    if event == "issues" and payload["action"] in ("labeled", "unlabeled"):
                        payload["label"] = {"name": j.get("label") or ""}
        raw = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "GitHub-Hookshot/fake",
                   "X-GitHub-Event": event, "X-GitHub-Delivery": delivery,
                   "X-GitHub-Hook-ID": "1"}
        secret = j.get("secret")
        if "signature" in j:
            if j["signature"]:
                headers["X-Hub-Signature-256"] = j["signature"]
        elif secret is not None:
            key = secret.encode()
            headers["X-Hub-Signature-256"] = "sha256=" + hmac.new(key, raw,
                                                                  hashlib.sha256).hexdigest()
            headers["X-Hub-Signature"] = "sha1=" + hmac.new(key, raw, hashlib.sha1).hexdigest()
        u = urlsplit(j.get("url") or "")
        try:
            c = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=30)
            c.request("POST", (u.path or "/") + ("?" + u.query if u.query else ""), body=raw,
                      headers=headers)
            r = c.getresponse()
            text = r.read().decode("utf-8", "replace")
            c.close()
        except (OSError, http.client.HTTPException, TypeError, ValueError) as e:
            return 502, {"error": "webhook delivery failed: %s" % e, "delivery": delivery}
        return 200, {"status": r.status, "body": text, "delivery": delivery}


def label_names(j):
    """Label names from {"labels":[...]} or a bare list, of strings or {"name"} objects."""
    if isinstance(j, dict):
        j = j.get("labels")
    if not isinstance(j, list):
        raise validation([{"resource": "Label", "code": "invalid", "field": "labels"}])
    out = []
    for x in j:
        if isinstance(x, dict):
            x = x.get("name")
        if not isinstance(x, str) or not x:
            raise validation([{"resource": "Label", "code": "invalid", "field": "labels"}])
        out.append(x)
    return out


def etag_match(inm, etag):
    strip = lambda t: t.strip()[2:] if t.strip().startswith("W/") else t.strip()
    return inm.strip() == "*" or any(strip(t) == strip(etag) for t in inm.split(","))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--repo", default="acme/app")
    ap.add_argument("--token", default=None)
    ap.add_argument("--git-root", default=None)
    ap.add_argument("--default-branch", default="main")
    ap.add_argument("--exit-on-stdin-eof", action="store_true")
    args = ap.parse_args()
    if not re.match(r"^[A-Za-z0-9._-]+/[A-Za-z0-9._-]+$", args.repo):
        ap.error("--repo must be owner/name")

    ThreadingHTTPServer.allow_reuse_address = True
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.request_queue_size = 128
    srv = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    state = State(args, "http://127.0.0.1:%d" % srv.server_address[1])
    if state.bare:
        make_bare(state)
    Handler.state = state

    def stop(*_):
        state.stopping.set()
        threading.Thread(target=srv.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.exit_on_stdin_eof:
        def watch():
            try:
                while sys.stdin.buffer.read(4096):
                    pass
            except OSError:
                pass
            stop()
        threading.Thread(target=watch, daemon=True).start()

    print("PORT %d" % srv.server_address[1], flush=True)
    try:
        srv.serve_forever(poll_interval=0.1)
    finally:
        state.stopping.set()
        srv.server_close()


if __name__ == "__main__":
    main()
