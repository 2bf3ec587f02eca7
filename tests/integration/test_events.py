#!/usr/bin/env python3
"""Live events through the real binary: GET /api/events (SSE) and /ws/workflow-updates
(WebSocket, a minimal raw-socket client written here).

- An SSE client that disconnects and reconnects with Last-Event-ID receives every event
  exactly once, in order, across a replay longer than one store page and with events
  created while the replay runs (the replay -> live hand-over).
- Filters (?type=, ?task=) and bad resume points (400).
- A WebSocket client receives the same events (same JSON) as the SSE client, live ones
  too; ping -> pong; the close handshake; bad handshakes (400/426); ?token= auth.
- SIGTERM with open SSE and WebSocket clients: the socket gets close 1001, the stream
  ends, baton exits 0 with no sanitizer report and no handle left open.
"""
import base64
import hashlib
import http.client
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

# These tests hand tasks out through the worker protocol (/work/next) or watch the queue
# untouched: the daemon's own executor must not run them.
os.environ["BATON_LOCAL_RUNS"] = "0"

BATON = os.environ.get("BATON_BINARY", "baton")
FAILS = []
TOKEN = "events-test-token-0123"


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        FAILS.append(what)


def env():
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("ORCHESTRATOR_", "DATABASE_URL", "BATON_CONFIG", "JWT_SECRET",
                                 "GITHUB_"))}


def start(tmp, config=None):
    cmd = [BATON, "serve", "--port", "0", "--store", "sqlite:" + os.path.join(tmp, "ev.db")]
    if config:
        path = os.path.join(tmp, "baton.yaml")
        with open(path, "w") as f:
            f.write(config)
        cmd += ["--config", path]
    # stderr (one access-log line per request, hundreds here) goes to a file: a pipe
    # nobody reads until the end would fill up and block the server.
    errf = open(os.path.join(tmp, "stderr.log"), "w+")
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errf, text=True, cwd=tmp,
                         env=env())
    p.errf = errf
    line = p.stdout.readline()
    m = re.search(r"listening on http://([\d.]+):(\d+)", line)
    if not m:
        p.kill()
        errf.seek(0)
        raise SystemExit("serve did not start: %r %s" % (line, errf.read()))
    return p, int(m.group(2))


def stop(p, what):
    p.send_signal(signal.SIGTERM)
    try:
        rc = p.wait(20)
    except subprocess.TimeoutExpired:
        p.kill()
        rc = "hung"
    p.errf.seek(0)
    err = p.errf.read()
    p.errf.close()
    bad = [l for l in err.splitlines()
           if "Sanitizer" in l or "runtime error" in l or "left open" in l
           or "upgraded" in l]
    check(rc == 0 and not bad, "%s: SIGTERM -> exit %s, clean %s" % (what, rc, bad[:3]))
    return err


def request(port, method, path, body=None, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    h = dict(headers or {})
    data = None
    if body is not None:
        data = json.dumps(body)
        h["Content-Type"] = "application/json"
    c.request(method, path, body=data, headers=h)
    r = c.getresponse()
    d = r.read()
    c.close()
    return r.status, d, r


def create_tasks(port, titles, threads=4, headers=None):
    ids = [None] * len(titles)
    errors = []

    def work(k):
        for i in range(k, len(titles), threads):
            st, d, _ = request(port, "POST", "/api/tasks", {"title": titles[i]}, headers)
            if st != 201:
                errors.append((st, d[:200]))
            else:
                ids[i] = json.loads(d)["id"]

    ts = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise SystemExit("POST /api/tasks failed: %r" % errors[:3])
    return ids


# ---------------------------------------------------------------------------------------
# A minimal SSE client on a raw socket (chunked transfer decoded by hand).

class SSE:
    def __init__(self, port, path, headers=None):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        h = "".join("%s: %s\r\n" % kv for kv in (headers or {}).items())
        self.s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n%s\r\n"
                        % (path, h)).encode())
        self.raw = b""
        self.text = ""
        self.eof = False
        head = self._read_until(b"\r\n\r\n")
        self.status = int(head.split(b" ", 2)[1])
        self.head = head.decode()
        self.chunked = "chunked" in self.head.lower()

    def _fill(self):
        try:
            d = self.s.recv(65536)
        except socket.timeout:
            return False
        if not d:
            self.eof = True
            return False
        self.raw += d
        return True

    def _read_until(self, sep):
        while sep not in self.raw:
            if not self._fill():
                raise RuntimeError("connection ended before %r" % sep)
        head, self.raw = self.raw.split(sep, 1)
        return head

    def _decode(self):
        # Move whole chunks from raw into text.
        while True:
            if not self.chunked:
                self.text += self.raw.decode()
                self.raw = b""
                return
            i = self.raw.find(b"\r\n")
            if i < 0:
                return
            n = int(self.raw[:i].split(b";")[0], 16)
            if n == 0:
                self.eof = True
                return
            if len(self.raw) < i + 2 + n + 2:
                return
            self.text += self.raw[i + 2:i + 2 + n].decode()
            self.raw = self.raw[i + 2 + n + 2:]

    def events(self, until, timeout=15):
        """Read until `until(events)` is true or timeout; return the parsed events."""
        out = []
        deadline = time.time() + timeout
        while True:
            while "\n\n" in self.text:
                block, self.text = self.text.split("\n\n", 1)
                ev = {}
                for line in block.split("\n"):
                    if line.startswith(":"):
                        continue
                    k, _, v = line.partition(": ")
                    ev[k] = ev.get(k, "") + v if k != "data" else v
                if "data" in ev:
                    out.append(ev)
            if until(out) or self.eof or time.time() > deadline:
                return out
            self.s.settimeout(max(0.05, min(1, deadline - time.time())))
            self._fill()
            self._decode()

    def close(self):
        self.s.close()


# ---------------------------------------------------------------------------------------
# A minimal WebSocket client.

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def ws_handshake(port, path, headers=None, key=None):
    """Returns (socket, status, head). headers=None sends a correct handshake."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = key or base64.b64encode(os.urandom(16)).decode()
    if headers is None:
        headers = {"Upgrade": "websocket", "Connection": "Upgrade",
                   "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": key}
    h = "".join("%s: %s\r\n" % kv for kv in headers.items())
    s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (path, h)).encode())
    head = b""
    while b"\r\n\r\n" not in head:
        d = s.recv(1)
        if not d:
            break
        head += d
    status = int(head.split(b" ", 2)[1]) if head else 0
    return s, status, head.decode(), key


def ws_send(s, op, payload=b"", fin=True):
    mask = os.urandom(4)
    n = len(payload)
    hdr = bytes([(0x80 if fin else 0) | op])
    if n < 126:
        hdr += bytes([0x80 | n])
    elif n < 65536:
        hdr += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        hdr += bytes([0x80 | 127]) + struct.pack(">Q", n)
    s.sendall(hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))


def recv_exact(s, n):
    b = b""
    while len(b) < n:
        d = s.recv(n - len(b))
        if not d:
            raise EOFError
        b += d
    return b


def ws_recv(s, timeout=10):
    """One frame: (opcode, payload); (None, b"") on EOF or timeout."""
    s.settimeout(timeout)
    try:
        h = recv_exact(s, 2)
        n = h[1] & 0x7F
        if h[1] & 0x80:
            return ("masked!", b"")
        if n == 126:
            n = struct.unpack(">H", recv_exact(s, 2))[0]
        elif n == 127:
            n = struct.unpack(">Q", recv_exact(s, 8))[0]
        return (h[0] & 0x0F, recv_exact(s, n) if n else b"")
    except (EOFError, socket.timeout, ConnectionResetError):
        return (None, b"")


def ws_messages(s, want, timeout=15):
    """Collect text messages (parsed JSON) until `want` of them or a non-text frame."""
    out = []
    deadline = time.time() + timeout
    while len(out) < want and time.time() < deadline:
        op, d = ws_recv(s, max(0.1, deadline - time.time()))
        if op == 1:
            out.append(json.loads(d))
        elif op == 9:
            ws_send(s, 0xA, d)
        else:
            break
    return out


def seqs(events):
    return [int(e["id"]) for e in events]


def main():
    with tempfile.TemporaryDirectory() as tmp:
        p, port = start(tmp)
        try:
            try:
                scenario(port)
            except Exception as e:  # report, then still stop the server cleanly
                check(False, "scenario raised %r" % (e,))
            sigterm_with_open_clients(p, port)
        finally:
            if p.poll() is None:  # never leave a server behind, whatever failed
                p.kill()
                p.wait()

    # Auth: ?token= for the WebSocket (browsers cannot set headers), Bearer for SSE.
    with tempfile.TemporaryDirectory() as tmp:
        cfg = ("server:\n  tokens:\n"
               "    - {name: ui, token: \"%s\", scopes: [read]}\n" % TOKEN)
        p, port = start(tmp, cfg)
        try:
            try:
                auth_scenario(port)
            except Exception as e:
                check(False, "auth scenario raised %r" % (e,))
            stop(p, "serve with tokens")
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()

    if FAILS:
        print("%d check(s) failed" % len(FAILS))
        sys.exit(1)
    print("all checks passed")


def scenario(port):
    # 1. Live client from the start of the log.
    a = SSE(port, "/api/events?after=0")
    check(a.status == 200 and "text/event-stream" in a.head, "SSE: 200 text/event-stream")
    first = create_tasks(port, ["first %d" % i for i in range(5)])
    evs = a.events(lambda ev: len(ev) >= 5)
    check(seqs(evs) == [1, 2, 3, 4, 5], "SSE live: seq 1..5, got %s" % seqs(evs))
    check(all(e["event"] == "task.created" for e in evs), "SSE: event: is the type")
    d0 = json.loads(evs[0]["data"])
    check(set(d0) == {"seq", "type", "task_id", "run_id", "ts", "data"} and d0["seq"] == 1
          and d0["task_id"] in first, "SSE data: event JSON %s" % sorted(d0))
    last = int(evs[-1]["id"])
    a.close()

    # 2. While disconnected: more than one store page (500) of events.
    missed = create_tasks(port, ["missed %d" % i for i in range(520)], threads=8)

    # 3. Reconnect with Last-Event-ID; more events arrive during the replay.
    b = SSE(port, "/api/events", {"Last-Event-ID": str(last)})
    during = []
    t = threading.Thread(target=lambda: during.extend(
        create_tasks(port, ["during %d" % i for i in range(40)], threads=4)))
    t.start()
    t.join()
    total = 5 + 520 + 40
    evs = b.events(lambda ev: len(ev) >= total - last, timeout=30)
    got = seqs(evs)
    check(got == list(range(last + 1, total + 1)),
          "SSE resume: every event after %d exactly once, in order (got %d, first %s, "
          "last %s, dups %d)" % (last, len(got), got[:3], got[-3:], len(got) - len(set(got))))
    ids = {json.loads(e["data"])["task_id"] for e in evs}
    check(ids == set(missed) | set(during), "SSE resume: every missed and concurrent task")
    # Nothing more arrives (no duplicates after the hand-over).
    extra = b.events(lambda ev: False, timeout=1.0)
    check(extra == [], "SSE: no duplicate after the hand-over (%d extra)" % len(extra))
    # ...and live events still flow.
    one = create_tasks(port, ["after"])
    evs = b.events(lambda ev: len(ev) >= 1)
    check(seqs(evs) == [total + 1] and json.loads(evs[0]["data"])["task_id"] == one[0],
          "SSE: live after the replay: %s" % seqs(evs))
    b.close()
    total += 1

    # 4. ?after= and filters.
    st, d, _ = request(port, "POST", "/api/tasks/%s/cancel" % first[0], {"reason": "test"})
    check(st == 200, "cancel a task for a task.status event (%d)" % st)
    total += 1  # task.status
    c = SSE(port, "/api/events?after=0&type=task.status")
    evs = c.events(lambda ev: len(ev) >= 1, timeout=5)
    evs += c.events(lambda ev: False, timeout=0.5)
    check(len(evs) == 1 and evs[0]["event"] == "task.status" and int(evs[0]["id"]) == total,
          "SSE ?type=task.status: only the status change (%s)" % [e["event"] for e in evs])
    c.close()
    c = SSE(port, "/api/events?after=0&task=%s" % first[0])
    evs = c.events(lambda ev: len(ev) >= 2, timeout=5)
    check([e["event"] for e in evs] == ["task.created", "task.status"],
          "SSE ?task=: that task's events only (%s)" % [e["event"] for e in evs])
    c.close()
    c = SSE(port, "/api/events?after=%d" % (total - 2))
    evs = c.events(lambda ev: len(ev) >= 2, timeout=5)
    check(seqs(evs) == [total - 1, total], "SSE ?after=N: from N+1 (%s)" % seqs(evs))
    c.close()
    st, d, _ = request(port, "GET", "/api/events?after=abc")
    check(st == 400 and b"after" in d, "SSE ?after=abc: 400 naming the parameter")
    st, d, _ = request(port, "GET", "/api/events", headers={"Last-Event-ID": "-3"})
    check(st == 400 and b"Last-Event-ID" in d, "SSE Last-Event-ID: -3: 400")

    # 5. The WebSocket carries the same events as SSE.
    s, st, head, key = ws_handshake(port, "/ws/workflow-updates?after=0")
    want = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
    check(st == 101 and ("Sec-WebSocket-Accept: " + want) in head,
          "WS: 101 with the right Sec-WebSocket-Accept")
    msgs = ws_messages(s, total, timeout=30)
    sse = SSE(port, "/api/events?after=0")
    sevs = sse.events(lambda ev: len(ev) >= total, timeout=30)
    sse.close()
    check([m["seq"] for m in msgs] == list(range(1, total + 1)),
          "WS replay: seq 1..%d exactly once (got %d)" % (total, len(msgs)))
    check(msgs == [json.loads(e["data"]) for e in sevs],
          "WS: the same event JSON as SSE, message for message")
    two = create_tasks(port, ["ws live"])
    m = ws_messages(s, 1)
    check(len(m) == 1 and m[0]["seq"] == total + 1 and m[0]["task_id"] == two[0]
          and m[0]["type"] == "task.created", "WS: live event after the replay")
    total += 1
    ws_send(s, 0x9, b"are you there")
    op, d = ws_recv(s)
    check(op == 0xA and d == b"are you there", "WS: ping -> pong with the same payload")
    ws_send(s, 0x8, struct.pack(">H", 1000) + b"done")
    op, d = ws_recv(s)
    check(op == 0x8 and struct.unpack(">H", d[:2])[0] == 1000, "WS: close 1000 echoed")
    op, _ = ws_recv(s, 5)
    check(op is None, "WS: server closes the TCP connection after the close handshake")
    s.close()

    # WS filters: ?type= and ?after=.
    s, st, _, _ = ws_handshake(port, "/ws/workflow-updates?after=0&type=task.status")
    msgs = ws_messages(s, 1, timeout=5)
    check(st == 101 and [m["type"] for m in msgs] == ["task.status"], "WS ?type= filter")
    s.close()

    # An unmasked client frame is a protocol error: close 1002.
    s, st, _, _ = ws_handshake(port, "/ws/workflow-updates")
    s.sendall(bytes([0x81, 0x02]) + b"hi")
    op, d = ws_recv(s)
    check(op == 0x8 and struct.unpack(">H", d[:2])[0] == 1002, "WS: unmasked frame -> 1002")
    s.close()

    # 6. Bad handshakes.
    _, st, head, _ = ws_handshake(port, "/ws/workflow-updates", headers={})
    check(st == 426 and "Upgrade: websocket" in head, "WS: plain GET -> 426 Upgrade Required")
    _, st, head, _ = ws_handshake(port, "/ws/workflow-updates", headers={
        "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "8",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode()})
    check(st == 426 and "Sec-WebSocket-Version: 13" in head, "WS: version 8 -> 426 naming 13")
    _, st, head, _ = ws_handshake(port, "/ws/workflow-updates", headers={
        "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "not-a-key"})
    check(st == 400, "WS: bad Sec-WebSocket-Key -> 400 (%d)" % st)
    _, st, _, _ = ws_handshake(port, "/ws/workflow-updates", headers={
        "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode()})
    check(st == 400, "WS: no Connection: Upgrade -> 400")



def sigterm_with_open_clients(p, port):
    """SIGTERM while a WebSocket and an SSE stream are open: the socket gets close 1001
    (answered, then the server closes it), the stream ends, baton exits 0 promptly."""
    ws, st, _, _ = ws_handshake(port, "/ws/workflow-updates")
    sse = SSE(port, "/api/events")
    check(st == 101 and sse.status == 200, "open a WebSocket and an SSE stream")
    seen = {}

    def watch_ws():
        while True:
            op, d = ws_recv(ws, 20)
            if op == 9:
                ws_send(ws, 0xA, d)
                continue
            seen["ws"] = struct.unpack(">H", d[:2])[0] if op == 8 and len(d) >= 2 else op
            if op == 8:
                ws_send(ws, 0x8, d[:2])
                seen["ws_eof"] = ws_recv(ws, 10)[0] is None
            return

    def watch_sse():
        sse.events(lambda ev: False, timeout=20)
        seen["sse_eof"] = sse.eof

    ts = [threading.Thread(target=watch_ws), threading.Thread(target=watch_sse)]
    for t in ts:
        t.start()
    t0 = time.time()
    stop(p, "serve with open SSE and WebSocket clients")
    for t in ts:
        t.join(25)
    check(seen.get("ws") == 1001, "SIGTERM: the WebSocket got close 1001 (%s)" % seen.get("ws"))
    check(seen.get("ws_eof") is True, "SIGTERM: then the server closed the socket")
    check(seen.get("sse_eof") is True, "SIGTERM: the SSE stream ended")
    check(time.time() - t0 < 10, "SIGTERM: exit within 10 s with open clients")
    ws.close()
    sse.close()


def auth_scenario(port):
    s, st, _, _ = ws_handshake(port, "/ws/workflow-updates")
    check(st == 401, "auth: WS without a token -> 401 (%d)" % st)
    s.close()
    s, st, _, _ = ws_handshake(port, "/ws/workflow-updates?token=wrong-token-xyz")
    check(st == 401, "auth: WS with a wrong ?token= -> 401 (%d)" % st)
    s.close()
    s, st, _, _ = ws_handshake(port, "/ws/workflow-updates?token=" + TOKEN)
    check(st == 101, "auth: WS with ?token= -> 101 (%d)" % st)
    s.close()
    st, _, _ = request(port, "GET", "/api/events")
    check(st == 401, "auth: SSE without a token -> 401 (%d)" % st)
    c = SSE(port, "/api/events?token=" + TOKEN)
    check(c.status == 200, "auth: SSE with ?token= (EventSource cannot send headers) -> 200")
    c.close()
    c = SSE(port, "/api/events", {"Authorization": "Bearer " + TOKEN})
    check(c.status == 200, "auth: SSE with a Bearer token -> 200")
    c.close()
    st, _, _ = request(port, "GET", "/api/tasks?token=" + TOKEN)
    check(st == 401, "auth: other routes do not take ?token= (%d)" % st)


if __name__ == "__main__":
    main()
