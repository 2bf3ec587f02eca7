#!/usr/bin/env python3
"""HTTP server layer (src/http/) through real HTTP on loopback, via tests/tools/http_probe.c.

Covers: keep-alive reuse, routing (params, query, literal precedence), 404, 405 + Allow,
413 (Content-Length and chunked), 400 on bad JSON with line/column, auth 401/403, async
(suspend/resume) answers, SSE streaming + heartbeats + fast disconnect detection, no busy
loop while idle, graceful SIGTERM with a live stream and in-flight requests, and a clean
sanitizer exit (uv_loop_close() == 0, no leaks).
"""
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time

TOOL = os.path.join(os.environ.get("BT_TOOL_DIR", "tools"), "bt-http_probe")
FAILS = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        FAILS.append(what)


class Probe:
    def __init__(self, *args):
        self.p = subprocess.Popen([TOOL, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
        line = self.p.stdout.readline()
        if not line.startswith("listening on "):
            raise SystemExit("probe did not start: %r %s" % (line, self.p.stderr.read()))
        self.port = int(line.strip().rsplit(":", 1)[1])

    def conn(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

    def get(self, path, method="GET", body=None, headers=None):
        c = self.conn()
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        c.close()
        return r, data

    def stats(self):
        return json.loads(self.get("/stats")[1])

    def cpu_ticks(self):
        with open("/proc/%d/stat" % self.p.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime

    def stop(self, timeout=15):
        self.p.send_signal(signal.SIGTERM)
        try:
            rc = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            rc = "hung"
        err = self.p.stderr.read()
        return rc, err


def raw_sse(port, path, extra=""):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (path, extra)).encode())
    return s


def read_until(s, needle, limit=5.0):
    buf = b""
    end = time.time() + limit
    s.settimeout(0.2)
    while time.time() < end and needle not in buf:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        if not chunk:
            break
        buf += chunk
    return buf


def clean_exit(rc, err, what):
    bad = [l for l in err.splitlines() if "Sanitizer" in l or "runtime error" in l or
           "leftover handle" in l or "uv_loop_close" in l]
    check(rc == 0 and not bad, "%s: exit %s, clean (%s)" % (what, rc, bad[:3]))


def main():
    p = Probe("--heartbeat-ms", "400")

    # keep-alive: several requests over one socket
    c = p.conn()
    names = set()
    closes = 0
    for path in ["/health", "/api/tasks/42?q=hello", "/api/tasks/stats", "/health", "/nope"]:
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        names.add(c.sock.getsockname())
        closes += (r.getheader("Connection", "") or "").lower() == "close"
    c.close()
    check(len(names) == 1 and closes == 0, "keep-alive: 5 requests on one socket")

    r, d = p.get("/api/tasks/42?q=hello")
    check(r.status == 200 and json.loads(d) == {"id": "42", "q": "hello"}, "path param + query")
    r, d = p.get("/api/tasks/stats")
    check(json.loads(d) == {"stats": True}, "literal segment beats {id}")
    r, d = p.get("/api/tasks/7/")
    check(r.status == 200 and json.loads(d)["id"] == "7", "trailing slash ignored")

    r, d = p.get("/nope")
    e = json.loads(d)
    check(r.status == 404 and e["error"]["code"] == "not_found", "404 JSON error")
    r, d = p.get("/api/tasks/1", method="DELETE")
    check(r.status == 405 and r.getheader("Allow") == "GET, PATCH, HEAD" and
          json.loads(d)["error"]["code"] == "method_not_allowed", "405 with Allow")
    r, d = p.get("/health", method="HEAD")
    check(r.status == 200 and d == b"", "HEAD served by GET route")

    r, d = p.get("/echo", "POST", b'{"a": [1, 2}', {"Content-Type": "application/json"})
    e = json.loads(d)["error"]
    check(r.status == 400 and e["code"] == "invalid_json" and "line 1" in e["message"] and
          "column" in e["message"], "400 on malformed JSON names line/column: " + e["message"])
    deep = b"[" * 100 + b"]" * 100
    r, d = p.get("/echo", "POST", deep)
    check(r.status == 400, "400 on JSON nested too deep")
    r, d = p.get("/echo", "POST", b"")
    check(r.status == 400, "400 on empty body")
    r, d = p.get("/echo", "POST", b'{"ok": true}')
    check(r.status == 200 and json.loads(d) == {"ok": True}, "POST JSON echo")
    r, d = p.get("/api/tasks/9", "PATCH", b'{"title": "x"}')
    check(r.status == 200 and json.loads(d) == {"title": "x"}, "PATCH JSON echo")

    big = b"x" * (1024 * 1024 + 1)
    r, d = p.get("/echo", "POST", big)
    check(r.status == 413 and json.loads(d)["error"]["code"] == "too_large",
          "413 on Content-Length over 1 MiB")
    # chunked upload without Content-Length: limit enforced while reading
    s = socket.create_connection(("127.0.0.1", p.port), timeout=10)
    s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"y" * 65536
    try:
        for _ in range(20):
            s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        s.sendall(b"0\r\n\r\n")
    except OSError:
        pass
    resp = read_until(s, b"}}", 5)
    s.close()
    check(b" 413 " in resp.split(b"\r\n", 1)[0], "413 on chunked body over 1 MiB")
    r, d = p.get("/echo", "POST", b"z" * (1024 * 1024 - 10))
    check(r.status == 400, "body just under the limit is read (then 400: not JSON)")

    r, d = p.get("/secret")
    check(r.status == 401 and r.getheader("WWW-Authenticate", "").startswith("Bearer"),
          "401 + WWW-Authenticate without a token")
    r, d = p.get("/secret", headers={"Authorization": "Bearer nope"})
    check(r.status == 401 and json.loads(d)["error"]["message"] == "unknown token",
          "401 on a bad token with the auth's reason")
    r, d = p.get("/secret", "POST", headers={"Authorization": "Bearer r"})
    check(r.status == 403 and json.loads(d)["error"]["code"] == "forbidden",
          "403 on a read token for a write route")
    r, d = p.get("/secret", "POST", headers={"Authorization": "Bearer w"})
    check(r.status == 200, "200 with the write scope")

    t0 = time.time()
    r, d = p.get("/async?ms=120")
    dt = time.time() - t0
    check(r.status == 200 and json.loads(d) == {"async": True} and 0.1 < dt < 2,
          "async answer after suspend (%.0f ms)" % (dt * 1e3))
    # async on a keep-alive connection, then a normal request on the same socket
    c = p.conn()
    c.request("GET", "/async?ms=20")
    c.getresponse().read()
    n1 = c.sock.getsockname()
    c.request("GET", "/health")
    c.getresponse().read()
    check(c.sock.getsockname() == n1, "keep-alive survives a suspended/resumed request")
    c.close()

    # SSE: a finite stream
    s = raw_sse(p.port, "/sse?n=3&interval=30")
    buf = read_until(s, b"0\r\n\r\n", 5)
    s.close()
    check(b"text/event-stream" in buf and buf.count(b"event: tick") == 3 and
          b"data: line2" in buf and b"id: 3" in buf, "SSE: 3 events then a clean end")

    # SSE: heartbeat on an idle stream, then disconnect detection
    before = p.stats()["streams_closed"]
    s = raw_sse(p.port, "/sse?n=0&interval=100000", "Last-Event-ID: 5\r\n")
    buf = read_until(s, b": heartbeat", 3)
    check(b": heartbeat" in buf, "SSE heartbeat on an idle stream")
    # idle: no busy loop (an idle stream + idle keep-alive connection)
    c = p.conn()
    c.request("GET", "/health")
    c.getresponse().read()
    t0 = p.cpu_ticks()
    time.sleep(2.0)
    used = p.cpu_ticks() - t0
    check(used <= 3, "no busy loop: %d CPU ticks in 2 s idle with a live stream" % used)
    c.close()
    check(p.stats()["streams_open"] == 1, "one stream open")
    gone_at = time.time()
    s.close()
    detected = None
    for _ in range(200):
        st = p.stats()
        if st["streams_closed"] > before:
            detected = st["last_close_ms"] / 1e3 - gone_at
            break
        time.sleep(0.01)
    check(detected is not None and detected < 0.5,
          "SSE client disconnect detected in %s ms" %
          (None if detected is None else int(detected * 1e3)))

    # metrics table
    m = json.loads(p.get("/metrics")[1])
    rows = {(x["method"], x["pattern"], x["status"]): x["count"] for x in m}
    check(rows.get(("GET", "/api/tasks/{id}", 200), 0) >= 2 and
          rows.get(("GET", "(unmatched)", 404), 0) >= 2 and
          rows.get(("POST", "/echo", 413), 0) >= 2, "metrics by route pattern and status")

    # graceful SIGTERM with a live SSE stream and an in-flight async request
    s = raw_sse(p.port, "/sse?n=0&interval=50")
    read_until(s, b"event: tick", 3)
    a = p.conn()
    a.request("GET", "/async?ms=400")
    time.sleep(0.1)
    t0 = time.time()
    p.p.send_signal(signal.SIGTERM)
    tail = read_until(s, b"0\r\n\r\n", 5)
    check(tail.endswith(b"0\r\n\r\n"), "SIGTERM ends the SSE stream cleanly")
    r = a.getresponse()
    check(r.status == 200, "in-flight async request finishes during the grace period")
    rc = p.p.wait(10)
    err = p.p.stderr.read()
    clean_exit(rc, err, "SIGTERM with live stream (%.2f s)" % (time.time() - t0))
    s.close()

    # grace period over: the held request gets 503, the process still exits cleanly
    p = Probe("--grace-ms", "200")
    a = p.conn()
    a.request("GET", "/async?ms=1500")
    time.sleep(0.1)
    p.p.send_signal(signal.SIGTERM)
    r = a.getresponse()
    body = json.loads(r.read())
    check(r.status == 503 and body["error"]["code"] == "shutting_down",
          "request still pending after the grace period gets 503")
    rc = p.p.wait(10)
    clean_exit(rc, p.p.stderr.read(), "exit after grace expiry")

    # the client disconnects while a request is suspended; its late answer is dropped
    p = Probe()
    s = socket.create_connection(("127.0.0.1", p.port))
    s.sendall(b"GET /async?ms=200 HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.05)
    s.close()
    time.sleep(0.4)
    r, d = p.get("/health")
    check(r.status == 200, "server fine after an async client vanished")
    rc, err = p.stop()
    clean_exit(rc, err, "exit after vanished async client")

    if FAILS:
        print("%d failure(s)" % len(FAILS))
        sys.exit(1)
    print("all ok")


if __name__ == "__main__":
    main()
