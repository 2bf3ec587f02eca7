#!/usr/bin/env python3
"""bench/workflow.py - what does the workflow engine cost per step?

Starts `baton serve` (a Release build, SQLite store in a temp dir) with one workflow of
three shell-command steps running `true` (the cheapest real action: a fork+exec of
/bin/sh), creates RUNS tasks at once through POST /api/tasks, and waits until every one
is completed. Each step is persisted before and after it runs (step row started and
finished, events appended), each run is created, updated and completed, and each task is
claimed, heart-beaten and completed through the queue - all included.

Reports, for concurrency 1 (one run at a time: the latency of one step) and for the
configured concurrency (throughput):
  - wall time from the first POST to the last completion;
  - ms per step = wall / (RUNS x 3) and runs/s;
  - baton's peak RSS.
And, as the floor no engine can beat, the cost of `sh -c true` alone (spawned from
Python with the same fork+exec, sequentially).

    bench/workflow.py [BUILD_DIR]     (default: build-bench, configured Release here)

Env: RUNS (1000), CONCURRENCY (8). Target (issue 6): < 5 ms per step including
persistence.
"""
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import time

SRC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = sys.argv[1] if len(sys.argv) > 1 else os.path.join(SRC, "build-bench")
RUNS = int(os.environ.get("RUNS", "1000"))
CONC = int(os.environ.get("CONCURRENCY", "8"))

WORKFLOW = """metadata: {id: noop3, name: Three no-op steps, version: 1.0.0}
steps:
  - {id: a, action: shell-command, inputs: {command: "true"}}
  - {id: b, action: shell-command, inputs: {command: "true"}}
  - {id: c, action: shell-command, inputs: {command: "true"}}
"""


def build():
    if not os.path.exists(os.path.join(BUILD, "CMakeCache.txt")):
        subprocess.run(["cmake", "-S", SRC, "-B", BUILD, "-DCMAKE_BUILD_TYPE=Release",
                        "-DBATON_TESTS=OFF"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", BUILD, "-j2", "--target", "baton"], check=True,
                   stdout=subprocess.DEVNULL)
    return os.path.join(BUILD, "baton")


def rss_kb(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def request(conn, method, path, body=None):
    headers = {"Content-Type": "application/json"} if body is not None else {}
    conn.request(method, path, body=json.dumps(body) if body is not None else None,
                 headers=headers)
    r = conn.getresponse()
    data = r.read()
    return r.status, json.loads(data) if data else None


def one(baton, conc):
    with tempfile.TemporaryDirectory(prefix="bt-bench-wf-") as tmp:
        wf = os.path.join(tmp, "wf")
        os.mkdir(wf)
        with open(os.path.join(wf, "noop3.yaml"), "w") as f:
            f.write(WORKFLOW)
        cfg = os.path.join(tmp, "baton.yaml")
        with open(cfg, "w") as f:
            # server.rate_limit off: RUNS creates at once exceed the default 1200/min.
            f.write(f"workflows_dir: {wf}\nworkspace: {{root: {tmp}/ws}}\n"
                    f"concurrency: {{global: {conc}}}\nlog: {{level: warn}}\n"
                    f"server: {{rate_limit: {{requests: 0}}}}\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCHESTRATOR_",
                                                                          "DATABASE_URL"))}
        p = subprocess.Popen([baton, "serve", "--port", "0", "--config", cfg, "--store",
                              "sqlite:" + os.path.join(tmp, "b.db")], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, env=env, cwd=tmp)
        port = int(re.search(r":(\d+) ", p.stdout.readline()).group(1))
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        t0 = time.perf_counter()
        for i in range(RUNS):
            st, _ = request(conn, "POST", "/api/tasks", {"title": f"noop {i}",
                                                         "workflow": "noop3"})
            assert st == 201, st
        done = 0
        while True:
            st, body = request(conn, "GET", "/api/status")
            counts = (body or {}).get("queue", {}) if isinstance(body, dict) else {}
            done = counts.get("completed", 0) + counts.get("failed", 0)
            if done >= RUNS:
                break
            time.sleep(0.02)
        wall = time.perf_counter() - t0
        failed = counts.get("failed", 0)
        peak = rss_kb(p.pid, "VmHWM")
        p.terminate()
        p.wait()
        return wall, failed, peak


def floor():
    n = 300
    t0 = time.perf_counter()
    for _ in range(n):
        subprocess.run(["/bin/sh", "-c", "true"])
    return (time.perf_counter() - t0) / n * 1000


def main():
    baton = build()
    print(f"RUNS={RUNS} x 3 steps; machine: {os.cpu_count()} cores")
    print(f"floor: sh -c true spawned from Python, sequential: {floor():.2f} ms each")
    for conc in (1, CONC):
        wall, failed, peak = one(baton, conc)
        steps = RUNS * 3
        print(f"concurrency {conc}: {wall:.2f} s for {RUNS} runs ({failed} failed): "
              f"{wall / steps * 1000:.2f} ms/step, {RUNS / wall:.0f} runs/s, "
              f"peak RSS {peak / 1024:.1f} MB")


if __name__ == "__main__":
    main()
