#!/usr/bin/env python3
"""PostgreSQL multi-process guarantees, with real processes sharing one database.

1. Two processes claim concurrently from one queue of 10,000 items (batched claims, 4
   in flight each): no item is ever claimed twice and every item is claimed.
2. Three processes append events concurrently while one process LISTENs (store
   subscription: LISTEN/NOTIFY across processes) and another follows the log with
   "after seq N" reads: both see every event exactly once, in strictly increasing seq
   order, and the same sequence -- a late-committing lower seq is never skipped.

Needs BATON_TEST_PG_URL (scripts/pg-test-cluster.sh start); without it the test says
so loudly and passes. Uses its own schema (?schema=...), dropped at the end.
"""
import os
import subprocess
import sys
import time

URL = os.environ.get("BATON_TEST_PG_URL", "")
TOOL = os.path.join(os.environ.get("BT_TOOL_DIR", "build/tools"), "bt-pg_claimer")
N_ITEMS = 10000


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def tool(url, *args, **kw):
    return subprocess.Popen([TOOL, url] + [str(a) for a in args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def finish(p, what, timeout=120):
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        fail(f"{what} timed out; stderr: {err}")
    if p.returncode != 0:
        fail(f"{what} exited {p.returncode}; stderr: {err}")
    return out


def wait_ready(p, what):
    line = p.stdout.readline()
    if line.strip() != "READY":
        fail(f"{what} did not get ready: {line!r} {p.stderr.read()}")


def two_claimers(url):
    finish(tool(url, "enqueue", N_ITEMS), "enqueue")
    a = tool(url, "claim", "owner-a", 25)
    b = tool(url, "claim", "owner-b", 25)
    out_a = finish(a, "claimer a")
    out_b = finish(b, "claimer b")
    ids_a = [line.split()[1] for line in out_a.splitlines() if line.startswith("CLAIM ")]
    ids_b = [line.split()[1] for line in out_b.splitlines() if line.startswith("CLAIM ")]
    both = ids_a + ids_b
    dup = len(both) - len(set(both))
    if dup:
        fail(f"{dup} items were claimed twice")
    if len(set(both)) != N_ITEMS:
        fail(f"{len(set(both))} distinct items claimed, expected {N_ITEMS}")
    if not ids_a or not ids_b:
        fail(f"one claimer got nothing (a={len(ids_a)}, b={len(ids_b)}): not concurrent")
    print(f"two claimers: a={len(ids_a)} b={len(ids_b)}, {N_ITEMS} distinct, 0 duplicates")


def events_across_processes(url):
    per_writer, writers = 1000, 3
    total = per_writer * writers
    listener = tool(url, "listen", total)
    follower = tool(url, "follow", total)
    wait_ready(listener, "listener")
    wait_ready(follower, "follower")
    procs = [tool(url, "append", per_writer) for _ in range(writers)]
    for i, p in enumerate(procs):
        finish(p, f"writer {i}")
    seen_l = [int(l.split()[1]) for l in finish(listener, "listener").splitlines()
              if l.startswith("EV ")]
    seen_f = [int(l.split()[1]) for l in finish(follower, "follower").splitlines()
              if l.startswith("EV ")]
    for name, seen in (("listener", seen_l), ("follower", seen_f)):
        if len(seen) != total:
            fail(f"{name} saw {len(seen)} events, expected {total}")
        if any(b <= a for a, b in zip(seen, seen[1:])):
            fail(f"{name} saw events out of seq order")
    if seen_l != seen_f:
        fail("listener and follower saw different event sequences")
    print(f"events: {writers} writers x {per_writer}; listener and follower each saw all "
          f"{total}, in seq order, identically")


def main():
    if not URL:
        print("#" * 72 + "\n## SKIPPED: BATON_TEST_PG_URL is not set; PostgreSQL multi-process\n"
              "## tests did not run (eval \"$(scripts/pg-test-cluster.sh start)\")\n" + "#" * 72,
              file=sys.stderr)
        return 0
    sep = "&" if "?" in URL else "?"
    url = f"{URL}{sep}schema=it_claim_{os.getpid()}"
    finish(tool(url, "reset"), "reset")
    try:
        t0 = time.time()
        two_claimers(url)
        events_across_processes(url)
        print(f"ok ({time.time() - t0:.1f} s)")
    finally:
        subprocess.run([TOOL, url, "reset"], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
