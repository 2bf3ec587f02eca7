#!/usr/bin/env python3
"""`kill -TERM` during load (issue 4): 8 clients create tasks as fast as they can over
keep-alive connections; SIGTERM arrives mid-stream. The server must exit 0 within 5 s,
every request it answered must have a complete, well-formed answer (201, or 503 while
shutting down), and every task it acknowledged with 201 must be in the store after a
restart: nothing accepted is lost. Requests refused at the socket after the listener
closed were never accepted and are fine."""
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

BATON = os.environ.get("BATON_BINARY", "baton")
CLIENTS = 8
FAILS = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        FAILS.append(what)


def clean_env():
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("ORCHESTRATOR_", "DATABASE_URL", "BATON_CONFIG", "GITHUB_",
                                 "WORKER_", "JWT_SECRET"))}


def start(tmp, db, log):
    # A load test: the API's per-client rate limit (1200/min by default) would refuse it.
    cfg = os.path.join(tmp, "baton.yaml")
    with open(cfg, "w") as f:
        f.write("server:\n  rate_limit: {requests: 0}\n")
    p = subprocess.Popen([BATON, "serve", "--port", "0", "--config", cfg, "--store",
                          "sqlite:" + db],
                         stdout=subprocess.PIPE, stderr=log, text=True, cwd=tmp, env=clean_env())
    m = re.search(r"listening on http://([\d.]+):(\d+)", p.stdout.readline())
    if not m:
        p.kill()
        sys.exit("FAIL: serve did not start")
    return p, int(m.group(2))


def client(port, n, stop, acked, answers, lock):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    i = 0
    while not stop.is_set():
        body = json.dumps({"title": f"load {n}-{i}", "external_id": f"load-{n}-{i}"})
        try:
            conn.request("POST", "/api/tasks", body, {"Content-Type": "application/json"})
            r = conn.getresponse()
            data = r.read()
        except (ConnectionError, http.client.HTTPException, OSError):
            # Not accepted (listener closed) or closed after the last answer: reconnect
            # once; a refused connection means the server is gone.
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                conn.connect()
            except OSError:
                return
            continue
        with lock:
            answers.append(r.status)
            if r.status == 201:
                acked.append(json.loads(data)["id"])
        i += 1


def main():
    with tempfile.TemporaryDirectory(prefix="baton-term-") as tmp:
        db = os.path.join(tmp, "t.db")
        with open(os.path.join(tmp, "serve.log"), "w") as log:
            p, port = start(tmp, db, log)
            stop, lock = threading.Event(), threading.Lock()
            acked, answers = [], []
            threads = [threading.Thread(target=client, args=(port, n, stop, acked, answers, lock))
                       for n in range(CLIENTS)]
            for t in threads:
                t.start()
            time.sleep(1.5)
            with lock:
                before = len(acked)
            t0 = time.time()
            p.send_signal(signal.SIGTERM)
            try:
                rc = p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                rc = "hung"
            took = time.time() - t0
            stop.set()
            for t in threads:
                t.join(15)
            p.stdout.close()
        check(before > 100, f"load was real: {before} tasks acknowledged before SIGTERM")
        check(rc == 0, f"exit code after SIGTERM under load is 0 (got {rc})")
        check(took < 5.0, f"exited within 5 s of SIGTERM ({took:.2f} s)")
        bad = sorted({s for s in answers if s not in (201, 503)})
        check(not bad, f"every answer was 201 or 503 (unexpected: {bad})")
        with open(os.path.join(tmp, "serve.log")) as f:
            errs = [l for l in f if "AddressSanitizer" in l or "runtime error" in l
                    or "handle left open" in l]
        check(not errs, f"no sanitizer reports or leftover handles ({errs[:2]})")

        # Restart on the same store: every acknowledged task is there.
        with open(os.path.join(tmp, "serve2.log"), "w") as log:
            p, port = start(tmp, db, log)
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                missing = []
                for tid in acked:
                    conn.request("GET", "/api/tasks/" + tid)
                    r = conn.getresponse()
                    r.read()
                    if r.status != 200:
                        missing.append(tid)
                check(not missing, f"all {len(acked)} acknowledged tasks survive the shutdown "
                                   f"({len(missing)} missing)")
            finally:
                p.send_signal(signal.SIGTERM)
                p.wait(10)
                p.stdout.close()
    if FAILS:
        sys.exit(f"{len(FAILS)} check(s) failed")


if __name__ == "__main__":
    main()
