#!/usr/bin/env python3
"""test_store_crash.py - the store survives kill -9 at any instant.

A child (bt-store_crasher, tests/tools/store_crasher.c) enqueues items, claims and
completes them, and abandons some claims so their leases expire, printing ACK / CLAIM /
DONE lines only from the store's (durable) callbacks. We SIGKILL it at random moments,
ROUNDS times, restarting it each time against the same store, and after every restart
check:
  - every acknowledged enqueue is present exactly once;
  - every acknowledged completion is still completed, and was never claimed again
    (no completed item is re-run);
and at the end, after the leases ran out, a drain claims and completes everything:
every acknowledged item ends completed, and abandoned (expired) leases were claimable
again.

Runs against SQLite always and PostgreSQL when BATON_TEST_PG_URL is set (the keys carry
a unique prefix, so a shared test database is fine).
"""
import collections
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

ROUNDS = int(os.environ.get("CRASH_ROUNDS", "22"))
LEASE_S = 0.3  # the crasher's lease in run mode


def tool():
    d = os.environ.get("BT_TOOL_DIR")
    if not d:
        here = os.path.dirname(os.path.abspath(__file__))
        d = os.path.join(here, "..", "..", "build", "tools")
    path = os.path.join(d, "bt-store_crasher")
    if not os.path.exists(path):
        sys.exit(f"FAIL: {path} not built (BT_TOOL_DIR={d})")
    return path


def parse(text):
    """Complete lines only: a kill may cut the last one."""
    lines = text.split("\n")
    return [ln.split() for ln in lines[:-1] if ln]


def verify(exe, url, prefix):
    out = subprocess.run([exe, url, "verify", prefix], capture_output=True, text=True,
                         timeout=60)
    if out.returncode != 0:
        raise AssertionError(f"verify failed: {out.stderr}")
    rows = collections.defaultdict(list)
    for f in parse(out.stdout):
        rows[f[1]].append((f[2], int(f[3])))
    return rows


def check(rows, acked, done, label):
    for key in acked:
        n = len(rows.get(key, []))
        assert n == 1, f"{label}: acknowledged {key} present {n} times"
    for key in done:
        st = rows[key][0][0]
        assert st == "completed", f"{label}: {key} was acknowledged completed, now {st}"


def run_backend(name, url):
    exe = tool()
    prefix = f"c{os.getpid()}x{random.randrange(1 << 30)}"
    acked, done = set(), set()
    claims = collections.Counter()
    abandoned = set()
    rng = random.Random(os.environ.get("CRASH_SEED"))
    t0 = time.time()
    for rnd in range(ROUNDS):
        p = subprocess.Popen([exe, url, "run", f"{prefix}-{rnd}"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        time.sleep(rng.uniform(0.05, 0.5))
        p.send_signal(signal.SIGKILL)
        out, err = p.communicate(timeout=30)
        if p.returncode != -signal.SIGKILL:
            raise AssertionError(f"{name} round {rnd}: crasher exited {p.returncode}: {err}")
        for f in parse(out):
            verb, key = f[0], f[1]
            if verb == "ACK":
                acked.add(key)
            elif verb == "CLAIM":
                # a re-run of something whose completion was acknowledged
                assert key not in done, f"{name} round {rnd}: completed {key} was claimed again"
                claims[key] += 1
            elif verb == "ABANDON":
                abandoned.add(key)
            elif verb == "DONE":
                done.add(key)
        check(verify(exe, url, prefix), acked, done, f"{name} after kill {rnd + 1}")
    # Let every lease run out, then drain: expired leases must be claimable again.
    time.sleep(LEASE_S + 0.1)
    d = subprocess.run([exe, url, "drain", prefix], capture_output=True, text=True, timeout=120)
    assert d.returncode == 0, f"{name}: drain failed: {d.stderr}"
    for f in parse(d.stdout):
        if f[0] == "CLAIM":
            assert f[1] not in done, f"{name}: drain re-ran completed {f[1]}"
            claims[f[1]] += 1
        elif f[0] == "DONE":
            done.add(f[1])
    rows = verify(exe, url, prefix)
    check(rows, acked, done, f"{name} after drain")
    for key in acked:
        assert rows[key][0][0] == "completed", f"{name}: {key} ended {rows[key][0][0]}"
    reclaimed = [k for k in abandoned if claims[k] >= 2]
    assert abandoned and len(reclaimed) == len(abandoned), (
        f"{name}: {len(abandoned)} abandoned leases, only {len(reclaimed)} claimed again")
    print(f"{name}: {ROUNDS} SIGKILLs in {time.time() - t0:.1f}s; {len(acked)} acknowledged "
          f"enqueues, {len(done)} completions, {len(abandoned)} expired leases re-claimed: OK")


def main():
    random.seed()
    with tempfile.TemporaryDirectory(prefix="baton-crash-") as d:
        run_backend("sqlite", f"sqlite:{d}/crash.db")
    pg = os.environ.get("BATON_TEST_PG_URL")
    if pg:
        run_backend("postgres", pg)
    else:
        print("*** PostgreSQL crash test SKIPPED: BATON_TEST_PG_URL not set ***",
              file=sys.stderr)


if __name__ == "__main__":
    main()
