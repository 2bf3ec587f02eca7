#!/usr/bin/env python3
"""`baton serve` through the real binary: banner, /health (seed 002's exact shape),
/ready, JSON 404/405, the loopback-only rule without tokens, token auth on a public
bind, a bad port, and a clean SIGTERM exit (sanitizers quiet, exit 0)."""
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile

BATON = os.environ.get("BATON_BINARY", "baton")
FAILS = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        FAILS.append(what)


def env():
    e = {k: v for k, v in os.environ.items()
         if not k.startswith(("ORCHESTRATOR_", "DATABASE_URL", "BATON_CONFIG", "JWT_SECRET"))}
    return e


def start(tmp, *args, config=None):
    cmd = [BATON, "serve", "--port", "0", "--store", "sqlite:" + os.path.join(tmp, "b.db")]
    if config:
        path = os.path.join(tmp, "baton.yaml")
        with open(path, "w") as f:
            f.write(config)
        cmd += ["--config", path]
    p = subprocess.Popen(cmd + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, cwd=tmp, env=env())
    banner = ""
    for _ in range(3):
        line = p.stdout.readline()
        banner += line
        if "listening on" in line or not line:
            break
    m = re.search(r"listening on http://([\d.]+):(\d+)", banner)
    if not m:
        p.kill()
        raise SystemExit("serve did not start: %r %s" % (banner, p.stderr.read()))
    return p, banner, m.group(1), int(m.group(2))


def get(port, path, method="GET", headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request(method, path, headers=headers or {})
    r = c.getresponse()
    d = r.read()
    c.close()
    return r, d


def stop(p, what):
    p.send_signal(signal.SIGTERM)
    try:
        rc = p.wait(15)
    except subprocess.TimeoutExpired:
        p.kill()
        rc = "hung"
    err = p.stderr.read()
    bad = [l for l in err.splitlines()
           if "Sanitizer" in l or "runtime error" in l or "left open" in l]
    check(rc == 0 and not bad, "%s: SIGTERM -> exit %s, clean %s" % (what, rc, bad[:3]))
    return err


def main():
    with tempfile.TemporaryDirectory() as tmp:
        p, banner, host, port = start(tmp)
        check(host == "127.0.0.1" and "loopback only" in banner, "banner: " + banner.strip())
        r, d = get(port, "/health")
        body = json.loads(d)
        check(r.status == 200 and body == {
            "status": "healthy", "workers": {"total": 0, "available": 0},
            "queue": {"pending": 0, "in_progress": 0, "completed": 0},
            "github_connected": False}, "/health has seed 002's shape: " + d.decode())
        check(list(body.keys()) == ["status", "workers", "queue", "github_connected"],
              "/health key order as in the seed")
        r, d = get(port, "/ready")
        check(r.status == 200 and json.loads(d) == {"status": "ready"}, "/ready")
        r, d = get(port, "/nope")
        check(r.status == 404 and json.loads(d)["error"]["code"] == "not_found", "404 JSON")
        r, d = get(port, "/health", "POST")
        check(r.status == 405 and r.getheader("Allow") == "GET, HEAD", "405 + Allow on /health")
        err = stop(p, "default config")
        check('"msg":"serving"' in err, "structured log line at start")

        # a public bind without tokens falls back to loopback
        p, banner, host, port = start(tmp, "--host", "0.0.0.0")
        check(host == "127.0.0.1" and "binding to 127.0.0.1 instead of 0.0.0.0" in banner,
              "no tokens: 0.0.0.0 refused, loopback used")
        stop(p, "loopback fallback")

        # with a token, a public bind is kept and /health stays public
        cfg = ("server:\n  host: 0.0.0.0\n  tokens:\n"
               "    - {name: ci, token: \"s3cret-token-value\", scopes: [read]}\n")
        p, banner, host, port = start(tmp, config=cfg)
        check(host == "0.0.0.0" and "loopback" not in banner, "token configured: binds 0.0.0.0")
        r, d = get(port, "/health")
        check(r.status == 200, "/health needs no token")
        err = stop(p, "with token")
        check("s3cret-token-value" not in err, "token never logged")

        # port in use -> exit 1 with an actionable message
        os.unlink(os.path.join(tmp, "baton.yaml"))
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        busy = s.getsockname()[1]
        r = subprocess.run([BATON, "serve", "--port", str(busy), "--store",
                            "sqlite:" + os.path.join(tmp, "b.db")], capture_output=True,
                           text=True, cwd=tmp, env=env(), timeout=30)
        s.close()
        check(r.returncode == 1 and "cannot listen on 127.0.0.1:%d" % busy in r.stderr,
              "busy port: exit %d and says so: %s" % (r.returncode, r.stderr.strip()[-400:]))
        r = subprocess.run([BATON, "serve", "--port", "99999"], capture_output=True, text=True,
                           cwd=tmp, env=env(), timeout=30)
        check(r.returncode == 2, "bad --port is a usage error")

    if FAILS:
        print("%d failure(s)" % len(FAILS))
        sys.exit(1)
    print("all ok")


if __name__ == "__main__":
    main()
