#!/usr/bin/env python3
"""test_github_fake.py - self-test of the fake GitHub (tests/fakes/github_server.py).

The C GitHub client and the end-to-end test trust this fake to behave like GitHub
(api-reference.md §1), so the behaviours they depend on are pinned here: pagination and its
Link header, ETag/304 sparing the rate limit, label and comment semantics, the pull-request
rules against a real bare repository (pushed over smart HTTP with and without the token),
primary/secondary rate limits and injected failures, and webhook signing (checked against
GitHub's documented test vector and by a local receiver).
"""
import hashlib
import hmac
import http.client
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import check, fake, finish  # noqa: E402

TOKEN = "ghp_FAKEtoken1234567890abcdef"
REPO = "/repos/acme/app"


class Api:
    def __init__(self, port):
        self.port = port

    def call(self, method, path, body=None, headers=None, ua=True, auth=True):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        h = {"Accept": "application/vnd.github+json"}
        if ua:
            h["User-Agent"] = "baton-test"
        if auth:
            h["Authorization"] = "Bearer " + TOKEN
        if body is not None:
            h["Content-Type"] = "application/json"
            if not isinstance(body, (bytes, str)):
                body = json.dumps(body)
        h.update(headers or {})
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        raw = r.read()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        c.close()
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = raw.decode("utf-8", "replace")
        return r.status, hdrs, data


def links(value):
    """{rel: url} from a Link header."""
    return {m.group(2): m.group(1) for m in re.finditer(r'<([^>]+)>;\s*rel="(\w+)"', value or "")}


def path_of(url, port):
    prefix = "http://127.0.0.1:%d" % port
    return url[len(prefix):] if url.startswith(prefix) else None


def git(*args, cwd=None, env=None, check_rc=True):
    r = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=60)
    if check_rc and r.returncode != 0:
        raise SystemExit("git %s failed: %s" % (" ".join(args), r.stderr))
    return r


def main():
    tmp = tempfile.mkdtemp(prefix="bt-fakegh-")
    gh = fake("github_server.py", "--token", TOKEN, "--git-root", os.path.join(tmp, "git"))
    try:
        run_checks(gh, tmp)
    finally:
        gh.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    finish()


def run_checks(gh, tmp):
    api = Api(gh.port)
    base = gh.url

    # ---- basics: user agent, credentials, repository ----
    st, _, body = api.call("GET", "/user", ua=False)
    check(st == 403 and "User-Agent" in body["message"], "no User-Agent -> 403 (%s)" % st)
    st, _, body = api.call("GET", "/user", auth=False)
    check(st == 401 and body["message"] == "Bad credentials", "no token -> 401 Bad credentials")
    st, _, body = api.call("GET", "/user", headers={"Authorization": "Bearer wrong"})
    check(st == 401, "a wrong token -> 401")
    st, h, body = api.call("GET", "/user", headers={"Authorization": "token " + TOKEN})
    check(st == 200 and body["login"] == "baton-bot", "'token T' is accepted too")
    for k in ("limit", "remaining", "used", "reset", "resource"):
        check("x-ratelimit-" + k in h, "x-ratelimit-%s on every response" % k)
    st, _, body = api.call("GET", REPO)
    check(st == 200 and body["default_branch"] == "main" and body["full_name"] == "acme/app"
          and body["clone_url"] == base + "/acme/app.git", "GET /repos/acme/app")
    st, _, body = api.call("GET", "/repos/acme/other")
    check(st == 404 and body["message"] == "Not Found", "another repository -> 404")
    st, _, body = api.call("GET", "/nowhere")
    check(st == 404 and body["message"] == "Not Found", "unknown route -> 404 Not Found")
    st, _, body = api.call("POST", REPO + "/pulls", body="{not json")
    check(st == 400 and body["message"] == "Problems parsing JSON", "bad JSON -> 400")

    # ---- git smart HTTP and pull-request rules ----
    genv = dict(os.environ, HOME=tmp, GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0",
                GIT_ASKPASS="", SSH_ASKPASS="", GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t",
                GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    genv.pop("GIT_DIR", None)
    authed_url = "http://x-access-token:%s@127.0.0.1:%d/acme/app.git" % (TOKEN, gh.port)
    plain_url = base + "/acme/app.git"
    work = os.path.join(tmp, "clone")
    r = git("clone", "--quiet", authed_url, work, env=genv, check_rc=False)
    check(r.returncode == 0 and os.path.exists(os.path.join(work, "README.md")),
          "clone with the token over smart HTTP has README.md (%s)" % r.stderr.strip())
    r = git("ls-remote", plain_url, env=genv, check_rc=False)
    check(r.returncode != 0, "ls-remote without the token fails")

    st, _, body = api.call("POST", REPO + "/pulls",
                           {"title": "t", "head": "ai-feature/issue-1", "base": "main"})
    check(st == 422 and body["message"] == "Validation Failed"
          and body["errors"][0].get("field") == "head", "PR from a missing branch -> 422 head")

    git("checkout", "--quiet", "-b", "ai-feature/issue-1", cwd=work, env=genv)
    git("push", "--quiet", "origin", "ai-feature/issue-1", cwd=work, env=genv)
    st, _, body = api.call("POST", REPO + "/pulls",
                           {"title": "t", "head": "ai-feature/issue-1", "base": "main"})
    check(st == 422 and "No commits between main and ai-feature/issue-1"
          in body["errors"][0].get("message", ""), "PR without new commits -> 422 No commits")

    with open(os.path.join(work, "feature.txt"), "w") as f:
        f.write("done\n")
    git("add", "feature.txt", cwd=work, env=genv)
    git("commit", "--quiet", "-m", "feature", cwd=work, env=genv)
    git("remote", "add", "plain", plain_url, cwd=work, env=genv)
    gh.control("POST", "/_control/requests/clear")
    r = git("push", "plain", "ai-feature/issue-1", cwd=work, env=genv, check_rc=False)
    check(r.returncode != 0, "push without the token is refused")
    _, log = gh.control("GET", "/_control/requests")
    gitlog = [e for e in log if e["kind"] == "git"]
    check(gitlog and all(e["status"] == 401 and not e["authenticated"] for e in gitlog),
          "every unauthenticated git request was answered 401, and logged as such")
    _, state = gh.control("GET", "/_control/state")
    sha_before = state["branches"].get("ai-feature/issue-1")
    r = git("push", "--quiet", "origin", "ai-feature/issue-1", cwd=work, env=genv,
            check_rc=False)
    check(r.returncode == 0, "push with the token succeeds (%s)" % r.stderr.strip())
    head = git("rev-parse", "HEAD", cwd=work, env=genv).stdout.strip()
    _, log = gh.control("GET", "/_control/requests")
    check(any(e["kind"] == "git" and e["authenticated"] and "git-receive-pack" in e["path"]
              and e["status"] == 200 for e in log), "request log: authenticated receive-pack")
    _, state = gh.control("GET", "/_control/state")
    check(state["branches"].get("ai-feature/issue-1") == head != sha_before,
          "the bare repository has the pushed commit")

    st, _, pr = api.call("POST", REPO + "/pulls", {"title": "Feature", "head":
                                                   "acme:ai-feature/issue-1", "base": "main",
                                                   "body": "closes #1", "draft": False})
    check(st == 201 and pr["state"] == "open" and pr["head"]["ref"] == "ai-feature/issue-1"
          and pr["head"]["sha"] == head and pr["base"]["ref"] == "main"
          and pr["html_url"] == "%s/acme/app/pull/%d" % (base, pr["number"]),
          "PR from a pushed branch -> 201 (%s)" % st)
    st, _, body = api.call("POST", REPO + "/pulls", {"title": "again", "head":
                                                     "ai-feature/issue-1", "base": "main"})
    check(st == 422 and body["errors"][0].get("message") ==
          "A pull request already exists for acme:ai-feature/issue-1.",
          "a second PR for the same head -> 422 already exists")
    st, _, body = api.call("GET", REPO + "/pulls?state=open&head=acme:ai-feature/issue-1")
    check(st == 200 and [p["number"] for p in body] == [pr["number"]],
          "GET pulls?head=owner:branch finds it")
    st, _, body = api.call("GET", REPO + "/pulls?state=open&head=acme:other")
    check(st == 200 and body == [], "GET pulls?head=... for another branch is empty")

    # ---- pagination (the PR is element number 1; 250 issues after it) ----
    for i in range(250):
        gh.control("POST", "/_control/issues",
                   {"title": "issue %d" % i, "body": "b", "labels": ["ai-ready"]
                    if i % 2 == 0 else ["other"]})
    st, h, page1 = api.call("GET", REPO + "/issues?state=all&per_page=100&sort=created"
                                          "&direction=asc")
    lk = links(h.get("link"))
    check(st == 200 and len(page1) == 100 and set(lk) == {"next", "last"},
          "page 1: 100 items, Link rel next+last (%s)" % sorted(lk))
    check(all(u.startswith(base + REPO + "/issues?") for u in lk.values())
          and "page=2" in lk.get("next", "") and "page=3" in lk.get("last", "")
          and "per_page=100" in lk.get("next", ""), "Link URLs are absolute with per_page")
    seen = list(page1)
    url, pages = lk.get("next"), 1
    rels = []
    while url and pages < 10:
        st, h, items = api.call("GET", path_of(url, gh.port))
        pages += 1
        seen += items
        lk = links(h.get("link"))
        rels.append(sorted(lk))
        url = lk.get("next")
    check(pages == 3, "following next visits 3 pages (%d)" % pages)
    check(rels == [["first", "last", "next", "prev"], ["first", "prev"]],
          "later pages carry prev/first (%s)" % rels)
    numbers = [i["number"] for i in seen]
    check(numbers == list(range(1, 252)), "all 251 elements reached once, in creation order")
    prs = [i for i in seen if "pull_request" in i]
    check(len(prs) == 1 and prs[0]["number"] == pr["number"]
          and prs[0]["pull_request"]["html_url"] == pr["html_url"],
          "the PR is in the issue list with a pull_request key")
    st, h, body = api.call("GET", REPO + "/issues?labels=AI-READY&per_page=100")
    check(st == 200 and len(body) == 100 and all(
        any(x["name"] == "ai-ready" for x in i["labels"]) for i in body),
        "labels= filter matches case-insensitively")
    st, h, body = api.call("GET", REPO + "/issues?labels=ai-ready,other")
    check(st == 200 and body == [] and "link" not in h, "labels=a,b needs all of them")
    st, h, body = api.call("GET", REPO + "/issues?labels=ai-ready&per_page=100&page=2")
    check(len(body) == 25 and set(links(h.get("link"))) == {"prev", "first"},
          "the last page has no next")
    st, h, body = api.call("GET", REPO + "/issues")
    check(len(body) == 30 and body[0]["number"] == 251, "default: 30 per page, newest first")

    # ---- ETag / 304 ----
    st, h, _ = api.call("GET", REPO + "/issues/2")
    etag, rem = h.get("etag"), int(h["x-ratelimit-remaining"])
    check(st == 200 and etag and etag.startswith('W/"'), "a 200 GET has an ETag")
    st, h, body = api.call("GET", REPO + "/issues/2", headers={"If-None-Match": etag})
    check(st == 304 and body is None, "If-None-Match with the ETag -> 304 without body")
    check(int(h["x-ratelimit-remaining"]) == rem, "a 304 costs no rate limit")
    st, h, _ = api.call("GET", REPO + "/issues/2")
    check(int(h["x-ratelimit-remaining"]) == rem - 1, "a 200 costs one request")
    gh.control("POST", "/_control/issues/2/labels", {"add": ["bug"]})
    st, h, _ = api.call("GET", REPO + "/issues/2", headers={"If-None-Match": etag})
    check(st == 200 and h.get("etag") != etag, "a changed issue -> 200 and a new ETag")

    # ---- labels ----
    n = 8  # created with ai-ready
    st, _, body = api.call("POST", REPO + "/issues/%d/labels" % n,
                           {"labels": ["ai-in-progress", "Priority: High"]})
    names = [x["name"] for x in body]
    check(st == 200 and names == ["ai-ready", "ai-in-progress", "Priority: High"],
          "POST labels -> 200 with the full list (%s)" % names)
    st, _, body = api.call("POST", REPO + "/issues/%d/labels" % n, {"labels": ["AI-READY"]})
    check(len(body) == 3, "adding a label that is there (other case) adds nothing")
    st, _, body = api.call("DELETE", REPO + "/issues/%d/labels/ai-ready" % n)
    check(st == 200 and [x["name"] for x in body] == ["ai-in-progress", "Priority: High"],
          "DELETE a label -> 200 with the remaining ones")
    st, _, body = api.call("DELETE", REPO + "/issues/%d/labels/priority%%3A%%20high" % n)
    check(st == 200 and [x["name"] for x in body] == ["ai-in-progress"],
          "DELETE takes a URL-encoded name, compared case-insensitively")
    st, _, body = api.call("DELETE", REPO + "/issues/%d/labels/ai-ready" % n)
    check(st == 404 and body["message"] == "Label does not exist",
          "DELETE a label not on the issue -> 404 Label does not exist")
    st, _, body = api.call("PUT", REPO + "/issues/%d/labels" % n, {"labels": ["ai-completed"]})
    check(st == 200 and [x["name"] for x in body] == ["ai-completed"], "PUT replaces the set")
    st, _, body = api.call("PATCH", REPO + "/issues/%d" % n,
                           {"state": "closed", "state_reason": "not_planned"})
    check(st == 200 and body["state"] == "closed" and body["state_reason"] == "not_planned"
          and body["closed_at"], "PATCH closes with a reason")
    st, _, body = api.call("GET", REPO + "/issues?state=open&per_page=100&page=3")
    check(all(i["number"] != n for i in body), "a closed issue leaves state=open lists")

    # ---- comments ----
    st, _, c = api.call("POST", REPO + "/issues/4/comments", {"body": "<!-- baton -->\nhi"})
    check(st == 201 and c["user"] == {"login": "baton-bot", "id": 1, "type": "Bot"}
          and c["body"].startswith("<!-- baton -->") and "#issuecomment-" in c["html_url"],
          "POST comment -> 201 by baton-bot")
    st, _, body = api.call("GET", REPO + "/issues/4/comments")
    check(st == 200 and [x["id"] for x in body] == [c["id"]], "GET comments lists it")
    st, _, body = api.call("GET", REPO + "/issues/4")
    check(body["comments"] == 1, "the issue counts its comments")
    st, _, body = api.call("POST", REPO + "/issues/4/comments", {"body": ""})
    check(st == 422, "an empty comment -> 422")
    _, state = gh.control("GET", "/_control/state")
    check(state["issues"]["4"]["comments"][0]["body"] == c["body"]
          and state["pulls"][0]["number"] == pr["number"], "control state shows both")

    # ---- rate limits and injected failures ----
    gh.control("POST", "/_control/ratelimit", {"remaining": 2, "reset_in": 60})
    st1, h1, _ = api.call("GET", "/user")
    st2, h2, _ = api.call("GET", "/user")
    st3, h3, body = api.call("GET", "/user")
    check(st1 == st2 == 200 and h2["x-ratelimit-remaining"] == "0",
          "the last allowed request leaves remaining 0")
    check(st3 == 403 and h3["x-ratelimit-remaining"] == "0"
          and body["message"].startswith("API rate limit exceeded")
          and int(h3["x-ratelimit-reset"]) > time.time() + 30,
          "then 403 rate limit exceeded with remaining 0 and the reset")
    st, h, body = api.call("GET", "/rate_limit")
    check(st == 200 and body["resources"]["core"]["remaining"] == 0,
          "GET /rate_limit still answers and shows 0")
    gh.control("POST", "/_control/ratelimit", {"remaining": 0, "reset_in": 1})
    time.sleep(1.2)
    st, h, _ = api.call("GET", "/user")
    check(st == 200 and int(h["x-ratelimit-remaining"]) == 4999,
          "after the reset the limit is back")
    gh.control("POST", "/_control/ratelimit", {"secondary": 2, "retry_after": 7})
    st, h, body = api.call("GET", REPO + "/issues")
    check(st == 403 and h.get("retry-after") == "7" and "secondary rate limit" in
          body["message"] and int(h["x-ratelimit-remaining"]) > 0,
          "secondary limit: 403 with retry-after and remaining > 0")
    api.call("GET", REPO + "/issues")
    st, _, _ = api.call("GET", REPO + "/issues")
    check(st == 200, "the secondary limit lasts for the given count")
    gh.control("POST", "/_control/fail", {"count": 2, "status": 502, "path_prefix": "/repos"})
    st_user, _, _ = api.call("GET", "/user")
    st_a, _, _ = api.call("GET", REPO + "/issues")
    st_b, _, _ = api.call("POST", REPO + "/issues/5/comments", {"body": "x"})
    st_c, _, _ = api.call("GET", REPO + "/issues")
    check(st_user == 200 and st_a == 502 and st_b == 502 and st_c == 200,
          "injected failures hit only matching paths, count times (%s %s %s %s)"
          % (st_user, st_a, st_b, st_c))
    _, state = gh.control("GET", "/_control/state")
    check(state["issues"]["5"]["comments"] == [], "a failed write changed nothing")

    # ---- request log ----
    _, log = gh.control("GET", "/_control/requests")
    check(any(e["kind"] == "api" and e["headers"].get("authorization") == "Bearer " + TOKEN
              for e in log), "the request log keeps full header values")
    check(not any(e["path"].startswith("/_control") for e in log), "control calls not logged")

    # ---- webhooks ----
    vector = "sha256=" + hmac.new(b"It's a Secret to Everybody", b"Hello, World!",
                                  hashlib.sha256).hexdigest()
    check(vector == "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
          "HMAC test vector from api-reference.md §1.5")
    got = []

    class Recv(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            got.append(({k.lower(): v for k, v in self.headers.items()}, raw))
            self.send_response(202)
            self.send_header("Content-Length", "8")
            self.end_headers()
            self.wfile.write(b"accepted")

    rs = http.server.HTTPServer(("127.0.0.1", 0), Recv)
    threading.Thread(target=rs.serve_forever, daemon=True).start()
    hook = "http://127.0.0.1:%d/webhooks/github" % rs.server_address[1]
    try:
        gh.control("POST", "/_control/issues/6/labels", {"add": ["ai-ready"]})
        st, res = gh.control("POST", "/_control/webhook", {
            "url": hook, "secret": "s3cret", "event": "issues", "action": "labeled",
            "number": 6, "label": "ai-ready", "delivery": "d-1"})
        check(st == 200 and res["status"] == 202 and res["body"] == "accepted"
              and res["delivery"] == "d-1", "webhook: the receiver's answer comes back")
        h, raw = got[-1]
        want = "sha256=" + hmac.new(b"s3cret", raw, hashlib.sha256).hexdigest()
        check(h.get("x-hub-signature-256") == want, "signature = HMAC-SHA256 over the raw body")
        check(h.get("x-github-event") == "issues" and h.get("x-github-delivery") == "d-1"
              and h.get("user-agent", "").startswith("GitHub-Hookshot/")
              and h.get("content-type") == "application/json", "webhook headers")
        p = json.loads(raw)
        check(p["action"] == "labeled" and p["label"] == {"name": "ai-ready"}
              and p["issue"]["number"] == 6 and p["repository"]["full_name"] == "acme/app"
              and p["repository"]["owner"]["login"] == "acme" and p["sender"]["login"]
              and any(x["name"] == "ai-ready" for x in p["issue"]["labels"])
              and p["issue"]["html_url"].endswith("/acme/app/issues/6"),
              "issues labeled payload built from the current state")
        gh.control("POST", "/_control/webhook", {"url": hook, "secret": "s3cret",
                                                 "number": 6, "signature": ""})
        check("x-hub-signature-256" not in got[-1][0], "signature '' omits the header")
        check(re.match(r"^[0-9a-f-]{36}$", got[-1][0].get("x-github-delivery", "")),
              "the default delivery id is a fresh GUID")
        gh.control("POST", "/_control/webhook", {"url": hook, "secret": "s3cret", "number": 6,
                                                 "signature": "sha256=00"})
        check(got[-1][0].get("x-hub-signature-256") == "sha256=00", "signature override")
        gh.control("POST", "/_control/webhook", {"url": hook, "secret": "s3cret",
                                                 "event": "issue_comment", "number": 6,
                                                 "comment": "/baton retry"})
        p = json.loads(got[-1][1])
        check(got[-1][0].get("x-github-event") == "issue_comment" and p["action"] == "created"
              and p["comment"]["body"] == "/baton retry" and p["comment"]["user"]["type"]
              == "User" and p["issue"]["number"] == 6, "issue_comment payload")
        st, res = gh.control("POST", "/_control/webhook", {"url": hook, "secret": "s3cret",
                                                           "number": 999})
        check(st == 404, "a webhook for an unknown issue -> 404 from the control API")
    finally:
        rs.shutdown()
        rs.server_close()


if __name__ == "__main__":
    main()
