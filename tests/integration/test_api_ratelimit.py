#!/usr/bin/env python3
"""The API's per-client rate limit (server.rate_limit, seed 004 TokenBucketRateLimiter)
through the real binary: with 5 requests per 2 s, a token's 6th quick request (API and
seed routes share the bucket) is refused 429 {"error": {"code": "rate_limited"}} with
Retry-After, every limited response carries X-RateLimit-Limit/-Remaining/-Reset, another
token has its own bucket, /health, /ready and /metrics are never limited, and after
Retry-After the token is served again. Without tokens the client address is the key;
requests: 0 turns the limit off."""
import http.client
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check  # noqa: E402

ALICE, BOB = "alice-token-0123456789", "bob-token-0123456789"
CONFIG = """server:
  rate_limit: {requests: 5, per: 2s}
  tokens:
    - {name: alice, token: "%s", scopes: [read]}
    - {name: bob, token: "%s", scopes: [read]}
""" % (ALICE, BOB)


class Client:
    """One keep-alive connection, so a burst of requests is quick."""

    def __init__(self, port, token=None):
        self.port, self.token = port, token
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def get(self, path):
        headers = {"Authorization": "Bearer " + self.token} if self.token else {}
        self.conn.request("GET", path, headers=headers)
        r = self.conn.getresponse()
        data = r.read().decode("utf-8", "replace")
        try:
            body = json.loads(data)
        except ValueError:
            body = data
        return r, body

    def close(self):
        self.conn.close()


def limit_headers(r):
    return {h: r.getheader(h) for h in
            ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "Retry-After")}


def test_tokens(tmp):
    srv = harness.serve(tmp, CONFIG, "tokens")
    try:
        alice = Client(srv.port, ALICE)
        # API and seed routes draw from one bucket per token.
        paths = ["/api/status", "/api/tasks", "/queue", "/workers", "/api/agents", "/api/tasks"]
        t0 = time.monotonic()
        got = [alice.get(p) for p in paths]
        elapsed = time.monotonic() - t0
        first5 = got[:5]
        check(all(r.status == 200 for r, _ in first5),
              "the first 5 requests are served: %s" % [r.status for r, _ in first5])
        check([r.getheader("X-RateLimit-Limit") for r, _ in first5] == ["5"] * 5,
              "X-RateLimit-Limit: 5 on every limited response")
        check([r.getheader("X-RateLimit-Remaining") for r, _ in first5] == ["4", "3", "2", "1", "0"],
              "X-RateLimit-Remaining counts down: %s"
              % [r.getheader("X-RateLimit-Remaining") for r, _ in first5])
        check(all((r.getheader("X-RateLimit-Reset") or "").isdigit() for r, _ in first5),
              "X-RateLimit-Reset (seconds) on every limited response")
        r6, b6 = got[5]
        # One request is back 400 ms after the bucket emptied; the burst takes far less.
        check(r6.status == 429 or elapsed >= 0.4,
              "the 6th quick request is refused: %d after %.3f s" % (r6.status, elapsed))
        if r6.status == 429:
            err = b6.get("error", {}) if isinstance(b6, dict) else {}
            check(err.get("code") == "rate_limited" and "retry" in err.get("message", ""),
                  "429 body is the error shape with code rate_limited: %s" % b6)
            ra = r6.getheader("Retry-After")
            check(ra is not None and ra.isdigit() and 1 <= int(ra) <= 2,
                  "Retry-After in whole seconds, rounded up: %r" % ra)
            check(r6.getheader("X-RateLimit-Remaining") == "0"
                  and r6.getheader("X-RateLimit-Limit") == "5",
                  "the 429 carries the X-RateLimit headers too: %s" % limit_headers(r6))
            retry_after = int(ra)
        else:
            retry_after = 1

        # Another token: its own bucket.
        bob = Client(srv.port, BOB)
        r, _ = bob.get("/api/tasks")
        check(r.status == 200 and r.getheader("X-RateLimit-Remaining") == "4",
              "another token has its own bucket: %d %s" % (r.status, limit_headers(r)))

        # Probes and scrapes are never limited, and carry no limit headers.
        probe = Client(srv.port, ALICE)
        statuses = set()
        headers_seen = False
        for _ in range(15):
            for p in ("/health", "/ready", "/metrics"):
                r, _ = probe.get(p)
                statuses.add((p, r.status))
                headers_seen |= r.getheader("X-RateLimit-Limit") is not None
        check(all(s != 429 for _, s in statuses) and ("/health", 200) in statuses,
              "/health, /ready and /metrics are never refused: %s" % sorted(statuses))
        check(not headers_seen, "probes carry no X-RateLimit headers")
        r, _ = alice.get("/api/status")
        check(r.status == 429 or elapsed >= 0.4, "alice is still limited (probes took nothing)")

        # A bad token is refused by auth (401), not counted against anyone.
        bad = Client(srv.port, "not-a-valid-token-000")
        r, _ = bad.get("/api/tasks")
        check(r.status == 401, "an unknown token gets 401, not 429: %d" % r.status)

        # After Retry-After, alice is served again.
        time.sleep(retry_after + 0.05)
        r, _ = alice.get("/api/tasks")
        check(r.status == 200, "after Retry-After the token is served again: %d" % r.status)
        for c in (alice, bob, probe, bad):
            c.close()
    finally:
        check(srv.stop() == 0, "server stops cleanly")


def test_open_server(tmp):
    # No tokens: the client address is the key.
    srv = harness.serve(tmp, "server:\n  rate_limit: {requests: 3, per: 1m}\n", "open")
    try:
        c = Client(srv.port)
        st = [c.get("/api/tasks")[0].status for _ in range(4)]
        check(st == [200, 200, 200, 429], "without auth the address is limited: %s" % st)
        other = Client(srv.port)  # a new connection from the same address shares it
        r, _ = other.get("/api/status")
        check(r.status == 429 and r.getheader("Retry-After") == "20",
              "same address, same bucket; Retry-After 20 s (3/min): %d %r"
              % (r.status, r.getheader("Retry-After")))
        r, _ = other.get("/health")
        check(r.status == 200, "/health still answers")
        c.close()
        other.close()
    finally:
        check(srv.stop() == 0, "server stops cleanly")


def test_disabled(tmp):
    srv = harness.serve(tmp, "server:\n  rate_limit: {requests: 0}\n", "off")
    try:
        c = Client(srv.port)
        rs = [c.get("/api/tasks")[0] for _ in range(60)]
        check(all(r.status == 200 for r in rs), "requests: 0 -> never limited")
        check(all(r.getheader("X-RateLimit-Limit") is None for r in rs),
              "requests: 0 -> no X-RateLimit headers")
        c.close()
    finally:
        check(srv.stop() == 0, "server stops cleanly")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        test_tokens(tmp)
        test_open_server(tmp)
        test_disabled(tmp)
    harness.finish()


if __name__ == "__main__":
    main()
