#!/usr/bin/env python3
"""libpq and libcurl are loaded on first use (src/store/pq_dl.h, src/http/curl_dl.h),
not linked (issue 4: idle RSS of `baton serve` < 10 MB):

1. an idle `baton serve` on SQLite (the example config), after answering requests, has
   mapped neither libpq nor libcurl (/proc/PID/maps);
2. `baton worker` maps libcurl once it has started (its HTTP client loaded it);
3. with a broken libpq.so.5 / libcurl.so.4 first on the library path, `baton serve
   --store postgres://...` and `baton worker` fail with a message naming the library
   and the Debian package;
4. with BATON_TEST_PG_URL set, `baton serve --store postgres://...` maps libpq and
   stores and reads a task (skipped, loudly, without it).
"""
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

BATON = os.environ.get("BATON_BINARY", "baton")
SRC = os.environ.get("BATON_SOURCE_DIR", ".")
FAILS = []
PROCS = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        FAILS.append(what)


def clean_env(**extra):
    e = {k: v for k, v in os.environ.items()
         if not k.startswith(("ORCHESTRATOR_", "WORKER_", "WORKSPACE_DIR", "DATABASE_URL",
                              "BATON_CONFIG", "LOG_LEVEL", "LD_LIBRARY_PATH"))}
    e.update(extra)
    return e


def serve(tmp, store, name):
    p = subprocess.Popen([BATON, "serve", "--config", os.path.join(SRC, "examples/baton.yaml"),
                          "--port", "0", "--store", store],
                         stdout=subprocess.PIPE, stderr=open(os.path.join(tmp, name + ".err"), "w"),
                         text=True, cwd=tmp, env=clean_env())
    PROCS.append(p)
    line = p.stdout.readline()
    m = re.search(r"listening on http://([\d.]+):(\d+)", line)
    if not m:
        p.kill()
        p.wait()
        with open(os.path.join(tmp, name + ".err")) as f:
            raise SystemExit("serve (%s) did not start: %r %s" % (name, line, f.read()))
    return p, int(m.group(2))


def call(port, method, path, body=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    data = json.dumps(body) if body is not None else None
    c.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
    r = c.getresponse()
    d = r.read()
    c.close()
    try:
        return r.status, json.loads(d) if d else None
    except ValueError:
        return r.status, d


def mapped(pid):
    """Basenames of the shared objects mapped by pid."""
    with open("/proc/%d/maps" % pid) as f:
        return sorted({os.path.basename(l.split()[5]) for l in f
                       if len(l.split()) >= 6 and ".so" in l.split()[5]})


def has(libs, prefix):
    return any(l.startswith(prefix + ".so") for l in libs)


def stop(p, what):
    p.send_signal(signal.SIGTERM)
    try:
        rc = p.wait(15)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        rc = "hung"
    check(rc == 0, "%s: SIGTERM -> exit %s" % (what, rc))


def task_roundtrip(port, what):
    st, t = call(port, "POST", "/api/tasks", {"title": "lazy libs", "body": "b"})
    check(st == 201, "%s: POST /api/tasks -> %s" % (what, st))
    if st == 201:
        st, g = call(port, "GET", "/api/tasks/" + t["id"])
        check(st == 200 and g.get("title") == "lazy libs", "%s: the task reads back" % what)


def idle_sqlite(tmp):
    p, port = serve(tmp, "sqlite:" + os.path.join(tmp, "idle.db"), "idle")
    st, _ = call(port, "GET", "/health")
    check(st == 200, "sqlite serve: /health -> %s" % st)
    task_roundtrip(port, "sqlite serve")
    time.sleep(0.5)
    libs = mapped(p.pid)
    check(not has(libs, "libpq"), "idle sqlite serve has not mapped libpq")
    check(not has(libs, "libcurl"), "idle sqlite serve has not mapped libcurl")
    print("     mapped: " + " ".join(libs))
    return p, port


def worker_maps_curl(tmp, port):
    env = clean_env(ORCHESTRATOR_URL="http://127.0.0.1:%d" % port, WORKER_ID="w-lazy",
                    WORKER_POLL_INTERVAL="1", WORKSPACE_DIR=os.path.join(tmp, "ws"),
                    WORKER_COMMAND="true")
    p = subprocess.Popen([BATON, "worker"], stdout=subprocess.PIPE,
                         stderr=open(os.path.join(tmp, "worker.err"), "w"), text=True, cwd=tmp,
                         env=env)
    PROCS.append(p)
    banner = p.stdout.readline()
    check("polling" in banner, "worker started: %r" % banner.strip())
    if p.poll() is None:
        check(has(mapped(p.pid), "libcurl"), "the running worker has loaded libcurl")
        stop(p, "worker")


def broken_libs(tmp, port):
    fake = os.path.join(tmp, "fakelib")
    os.makedirs(fake)
    for so in ("libpq.so.5", "libcurl.so.4"):
        open(os.path.join(fake, so), "w").close()  # an empty file: dlopen refuses it
    env = clean_env(LD_LIBRARY_PATH=fake)
    r = subprocess.run([BATON, "serve", "--port", "0", "--store",
                        "postgres://nobody@127.0.0.1:1/none"], capture_output=True, text=True,
                       cwd=tmp, env=env, timeout=60)
    check(r.returncode != 0, "serve without a usable libpq exits %d (non-zero)" % r.returncode)
    check("PostgreSQL support needs libpq.so.5 (Debian package libpq5" in r.stderr,
          "serve names libpq.so.5 and libpq5: %r" % r.stderr.strip())
    env.update(ORCHESTRATOR_URL="http://127.0.0.1:%d" % port, WORKER_ID="w-broken",
               WORKSPACE_DIR=os.path.join(tmp, "ws-broken"), WORKER_COMMAND="true")
    r = subprocess.run([BATON, "worker"], capture_output=True, text=True, cwd=tmp, env=env,
                       timeout=60)
    check(r.returncode != 0, "worker without a usable libcurl exits %d (non-zero)" % r.returncode)
    check("needs libcurl.so.4 (Debian package libcurl4" in r.stderr,
          "worker names libcurl.so.4 and libcurl4: %r" % r.stderr.strip())


def postgres(tmp):
    url = os.environ.get("BATON_TEST_PG_URL")
    if not url:
        print("#" * 72 + "\n## SKIPPED: BATON_TEST_PG_URL is not set; `baton serve` on "
              "PostgreSQL (lazy libpq) not tested\n" + "#" * 72, file=sys.stderr)
        return
    url += ("&" if "?" in url else "?") + "schema=bt_lazy_libs"
    p, port = serve(tmp, url, "pg")
    task_roundtrip(port, "postgres serve")
    check(has(mapped(p.pid), "libpq"), "postgres serve has loaded libpq")
    stop(p, "postgres serve")


def main():
    with tempfile.TemporaryDirectory(prefix="baton-lazy-") as tmp:
        try:
            p, port = idle_sqlite(tmp)
            worker_maps_curl(tmp, port)
            broken_libs(tmp, port)
            stop(p, "sqlite serve")
            postgres(tmp)
        finally:
            for q in PROCS:
                if q.poll() is None:
                    q.kill()
                    q.wait()
    if FAILS:
        print("%d check(s) failed" % len(FAILS), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
