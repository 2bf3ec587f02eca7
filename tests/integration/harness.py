"""Shared helpers for the integration tests written in Python (import harness).

- check(cond, what): print ok/FAIL and remember failures; finish() exits 1 if any.
- serve(tmp, config_text, name): start `baton serve --port 0` with that config in tmp;
  returns a Server with .port, .request(method, path, body=None, token=None) ->
  (status, parsed JSON or text), .stop() (SIGTERM, waits, returns the exit code).
- fake(script, *args): start a fake server from tests/fakes that prints "PORT n";
  returns a Fake with .port, .url, .control(method, path, body) and .stop().
- run(args, **kw): run the baton binary, return CompletedProcess (text mode).
"""
import http.client
import json
import os
import re
import signal
import subprocess
import sys

BATON = os.environ.get("BATON_BINARY", "baton")
SRC = os.environ.get("BATON_SOURCE_DIR",
                     os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
FAKES = os.path.join(SRC, "tests", "fakes")
FAILS = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        FAILS.append(what)
    return cond


def finish():
    if FAILS:
        print(f"\n{len(FAILS)} check(s) failed:", *FAILS, sep="\n  ")
        sys.exit(1)
    print("\nall checks passed")
    sys.exit(0)


def clean_env(extra=None):
    """The test's environment without variables that would configure baton."""
    e = {k: v for k, v in os.environ.items()
         if not k.startswith(("ORCHESTRATOR_", "DATABASE_URL", "BATON_CONFIG", "JWT_SECRET",
                              "GITHUB_", "LOG_LEVEL", "OPENAI_", "ANTHROPIC_", "OLLAMA_",
                              "OPENHANDS_", "LLM_"))}
    if extra:
        e.update(extra)
    return e


def http_request(port, method, path, body=None, token=None, timeout=60):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {}
    if body is not None:
        headers["Content-Type"] = "application/json"
        if not isinstance(body, (bytes, str)):
            body = json.dumps(body)
    if token:
        headers["Authorization"] = "Bearer " + token
    c.request(method, path, body=body, headers=headers)
    r = c.getresponse()
    data = r.read().decode("utf-8", "replace")
    c.close()
    try:
        return r.status, json.loads(data)
    except ValueError:
        return r.status, data


class Server:
    def __init__(self, proc, port, errpath):
        self.proc, self.port, self.errpath = proc, port, errpath

    def request(self, method, path, body=None, token=None, timeout=60):
        return http_request(self.port, method, path, body, token, timeout)

    def stderr(self):
        with open(self.errpath) as f:
            return f.read()

    def stop(self, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return -9


def serve(tmp, config_text, name="baton", env=None):
    cfg = os.path.join(tmp, name + ".yaml")
    with open(cfg, "w") as f:
        f.write(config_text)
    errpath = os.path.join(tmp, name + ".err")
    errf = open(errpath, "w")
    p = subprocess.Popen([BATON, "serve", "--port", "0", "--config", cfg,
                          "--store", "sqlite:" + os.path.join(tmp, name + ".db")],
                         stdout=subprocess.PIPE, stderr=errf, text=True, cwd=tmp,
                         env=env or clean_env())
    errf.close()
    for _ in range(5):
        line = p.stdout.readline()
        m = re.search(r"listening on http://[^:]+:(\d+)", line)
        if m:
            return Server(p, int(m.group(1)), errpath)
        if not line:
            break
    p.kill()
    p.wait()
    with open(errpath) as f:
        raise SystemExit("baton serve did not start:\n" + f.read())


class Fake:
    def __init__(self, proc, port):
        self.proc, self.port = proc, port
        self.url = f"http://127.0.0.1:{port}"

    def control(self, method, path, body=None):
        return http_request(self.port, method, path, body)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def fake(script, *args):
    p = subprocess.Popen([sys.executable, os.path.join(FAKES, script), "--port", "0", *args],
                         stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    m = re.match(r"PORT (\d+)", line)
    if not m:
        p.kill()
        raise SystemExit(f"{script} did not start: {line!r}")
    return Fake(p, int(m.group(1)))


def run(args, env=None, timeout=120, **kw):
    return subprocess.run([BATON, *args], capture_output=True, text=True, timeout=timeout,
                          env=env or clean_env(), **kw)
