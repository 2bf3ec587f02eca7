#!/usr/bin/env python3
"""bench/agents.py - is the loop still responsive while many CLI agents stream output?

Starts `baton serve` (a Release build) with one CLI agent, `flood`, that prints LINES
lines of ~100 bytes each: `sh -c "yes ... | head -n LINES"` by default (FAKE=sh), or
the Python fake agent tests/fakes/fake-agent in its `lines` mode (FAKE=python).
Then fires AGENTS concurrent POST /api/agents/flood/test (each spawns one agent process
in its own process group, streams its stdout through the loop, and answers when the
agent exits) while one client probes GET /health back to back and a sampler reads
baton's VmRSS from /proc every 20 ms.

Reports: wall time, every agent's success and line count, /health latency p50/p99/max
during the run (and idle before it), baton's peak RSS (VmHWM) and RSS before/after.
Targets (issue 5): /health p99 < 20 ms during the run, RSS < 30 MB.

    bench/agents.py [BUILD_DIR]        (default: build-bench, configured Release here)

Env: AGENTS (100), LINES (1000), RUNS (3), FAKE (sh | python).
"""
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

SRC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = sys.argv[1] if len(sys.argv) > 1 else os.path.join(SRC, "build-bench")
AGENTS = int(os.environ.get("AGENTS", "100"))
LINES = int(os.environ.get("LINES", "1000"))
RUNS = int(os.environ.get("RUNS", "3"))
# sh: `yes | head` (costs the machine almost nothing, so what is measured is baton);
# python: tests/fakes/fake-agent in `lines` mode (100 Python start-ups saturate 2 cores,
# and /health then measures the kernel's scheduler as much as baton's loop).
FAKE = os.environ.get("FAKE", "sh")


def build():
    if not os.path.exists(os.path.join(BUILD, "CMakeCache.txt")):
        subprocess.run(["cmake", "-S", SRC, "-B", BUILD, "-DCMAKE_BUILD_TYPE=Release",
                        "-DBATON_TESTS=OFF"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", BUILD, "-j2", "--target", "baton"], check=True,
                   stdout=subprocess.DEVNULL)
    return os.path.join(BUILD, "baton")


def rss_kb(pid, key="VmRSS"):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = min(len(xs) - 1, max(0, int(round(p / 100.0 * (len(xs) - 1)))))
    return xs[k]


def one_run(baton, scratch):
    cfg = os.path.join(scratch, "baton.yaml")
    if FAKE == "python":
        fake = os.path.join(SRC, "tests", "fakes", "fake-agent")
        agent_spec = (f"    command: {fake}\n    args: [--as, generic]\n"
                      f"    env: {{FAKE_AGENT_MODE: lines, FAKE_AGENT_LINES: \"{LINES}\"}}")
    else:
        agent_spec = ("    command: /bin/sh\n    args: [-c, \"yes 'agent output line: lorem ipsum "
                      "dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor' | "
                      f"head -n {LINES}\"]")
    with open(cfg, "w") as f:
        f.write(f"""server: {{host: 127.0.0.1, port: 0}}
store: sqlite:{scratch}/baton.db
log: {{level: warn}}
workspace: {{root: {scratch}/ws}}
agents:
  flood:
    type: cli
{agent_spec}
    timeout: 5m
    stall_timeout: 1m
""")
    proc = subprocess.Popen([baton, "serve", "--config", cfg], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, cwd=scratch)
    line = proc.stdout.readline()
    m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
    if not m:
        proc.kill()
        raise SystemExit(f"baton did not start: {line!r}")
    port = int(m.group(1))

    def get_health(conn):
        t0 = time.perf_counter()
        conn.request("GET", "/health")
        r = conn.getresponse()
        r.read()
        return (time.perf_counter() - t0) * 1000.0

    probe = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    idle = [get_health(probe) for _ in range(200)]
    rss_before = rss_kb(proc.pid)

    results = [None] * AGENTS
    stop = threading.Event()
    busy_lat = []
    rss_samples = []

    def agent(i):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        c.request("POST", "/api/agents/flood/test", body=json.dumps({"prompt": f"bench {i}"}),
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        results[i] = (r.status, json.loads(r.read()))
        c.close()

    # The prober is a separate process so that the 100 client threads here (and
    # Python's GIL) cannot delay its requests: it measures baton, not this script.
    prober_src = (
        "import http.client,sys,time\n"
        f"c=http.client.HTTPConnection('127.0.0.1',{port},timeout=30)\n"
        "c.request('GET','/health'); c.getresponse().read(); print('ready', flush=True)\n"
        "while True:\n"
        "    t=time.perf_counter(); c.request('GET','/health'); c.getresponse().read()\n"
        "    print((time.perf_counter()-t)*1000.0, flush=True)\n"
        "    if sys.stdin.closed: break\n")
    prober_proc = subprocess.Popen([sys.executable, "-c", prober_src], stdout=subprocess.PIPE,
                                   text=True)

    prober_proc.stdout.readline()  # connected and warmed up: now measure

    def prober():
        for line in prober_proc.stdout:
            if stop.is_set():
                break
            busy_lat.append(float(line))

    def sampler():
        while not stop.is_set():
            rss_samples.append(rss_kb(proc.pid))
            time.sleep(0.02)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=agent, args=(i,)) for i in range(AGENTS)]
    aux = [threading.Thread(target=prober), threading.Thread(target=sampler)]
    for t in aux + threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    stop.set()
    prober_proc.kill()
    for t in aux:
        t.join()
    prober_proc.wait()
    hwm = rss_kb(proc.pid, "VmHWM")
    rss_after = rss_kb(proc.pid)
    proc.terminate()
    proc.wait(timeout=30)

    ok = sum(1 for s, b in results if s == 200 and b.get("success"))
    lines = [b.get("output", "").count("\n") for s, b in results if s == 200]
    return {
        "wall_s": wall,
        "ok": ok,
        "min_lines": min(lines) if lines else 0,
        "idle_p50": pct(idle, 50), "idle_p99": pct(idle, 99),
        "busy_n": len(busy_lat), "busy_p50": pct(busy_lat, 50), "busy_p99": pct(busy_lat, 99),
        "busy_max": max(busy_lat) if busy_lat else float("nan"),
        "rss_before_mb": rss_before / 1024.0, "rss_peak_mb": max(rss_samples + [0]) / 1024.0,
        "hwm_mb": hwm / 1024.0, "rss_after_mb": rss_after / 1024.0,
    }


def main():
    baton = build()
    print(f"# bench/agents.py: {AGENTS} concurrent CLI agents ({FAKE}) x {LINES} lines, {RUNS} runs, "
          f"baton {baton}")
    rows = []
    for i in range(RUNS):
        scratch = tempfile.mkdtemp(prefix="baton-bench-agents.")
        try:
            r = one_run(baton, scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        rows.append(r)
        print(f"run {i + 1}: {r['ok']}/{AGENTS} ok, >= {r['min_lines']} lines each, "
              f"wall {r['wall_s']:.2f} s; /health idle p50 {r['idle_p50']:.2f} ms "
              f"p99 {r['idle_p99']:.2f} ms; during run ({r['busy_n']} probes) p50 "
              f"{r['busy_p50']:.2f} ms p99 {r['busy_p99']:.2f} ms max {r['busy_max']:.2f} ms; "
              f"RSS before {r['rss_before_mb']:.1f} MB, peak {r['rss_peak_mb']:.1f} MB "
              f"(VmHWM {r['hwm_mb']:.1f} MB), after {r['rss_after_mb']:.1f} MB", flush=True)
    med = lambda k: statistics.median(x[k] for x in rows)
    print(f"median: wall {med('wall_s'):.2f} s; /health p99 during run {med('busy_p99'):.2f} ms "
          f"(max {med('busy_max'):.2f} ms); peak RSS {med('hwm_mb'):.1f} MB")
    bad = [r for r in rows if r["ok"] != AGENTS or r["min_lines"] < LINES]
    if bad:
        print("FAILED: some agents did not complete with all their lines", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
