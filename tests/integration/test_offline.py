#!/usr/bin/env python3
"""Offline mode through the real binary (issue 7 item 4; seed 004 OfflineDetector and
`--offline`). Every "provider" is on loopback: a closed port is an unreachable provider,
the fake LLM server (tests/fakes/llm_server.py) a reachable one (any HTTP answer counts).
The remote agents are an openai-type `codex` (its endpoint is probed; `local: false`
because a loopback address would make it local) and a preset CLI `claude` (provider
anthropic, probed at providers.anthropic.probe_url); `local-code` and `local-instruct`
are fake CLIs marked `local: true`, so the built-in offline-default can run.

1. `baton run "task"` with both providers unreachable prints "offline: no remote provider
   reachable: codex (...), anthropic (...); running workflow offline-default instead of
   default", runs offline-default (steps and agents in --json, with "offline") and exits 0.
2. With both providers reachable it runs online (quick runs codex against the fake
   server); `--offline` forces offline-default anyway ("forced: --offline").
3. One reachable provider keeps it online.
4. `baton serve`: GET /api/status says offline and why, then online once the provider
   comes up (probe_interval 300ms), with offline.changed events on /api/events;
   `baton serve --offline` reports the forced mode.

The tests set offline.mode: auto in the file (ctest's BATON_OFFLINE=off is only the
environment fallback, which the file overrides).
"""
import http.client
import json
import os
import re
import socket
import subprocess
import tempfile
import time

import harness
from harness import check

FAKE_AGENT = os.path.join(harness.FAKES, "fake-agent")


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def config(tmp, codex_url, anthropic_probe, extra=""):
    return f"""
store:
  url: sqlite:{tmp}/baton.db
offline:
  mode: auto
  probe_timeout: 3s
  probe_interval: 300ms
providers:
  anthropic:
    probe_url: {anthropic_probe}
agents:
  codex:
    type: openai
    model: gpt-test
    api_key: sk-test
    base_url: {codex_url}
    local: false
  claude:
    preset: claude
    command: {FAKE_AGENT}
  local-code:
    type: cli
    command: {FAKE_AGENT}
    args: ["--as", "generic"]
    local: true
  local-instruct:
    type: cli
    command: {FAKE_AGENT}
    args: ["--as", "generic"]
    local: true
{extra}"""


def write(tmp, name, text):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def run_json(tmp, cfg, *args):
    r = harness.run(["run", "add a health endpoint", "--config", cfg, "--json", *args],
                    cwd=tmp, timeout=120)
    try:
        out = json.loads(r.stdout)
    except ValueError:
        out = {}
    return r, out


def step_agents(out):
    return [s.get("agent") for s in out.get("step_details", [])]


def all_unreachable(tmp):
    c1, c2 = closed_port(), closed_port()
    codex_url = f"http://127.0.0.1:{c1}/v1"
    probe = f"http://127.0.0.1:{c2}/"
    cfg = write(tmp, "down.yaml", config(tmp, codex_url, probe))
    t0 = time.monotonic()
    r, out = run_json(tmp, cfg)
    took = time.monotonic() - t0
    line = next((l for l in r.stderr.splitlines() if l.startswith("offline: ")), "")
    check(r.returncode == 0, f"offline run exits 0 (got {r.returncode}; {r.stderr[-400:]})")
    check(line.startswith("offline: no remote provider reachable: "),
          f"stderr says why it is offline: {line!r}")
    check(f"codex ({codex_url}: " in line and f"anthropic ({probe}: " in line,
          "the line names both unreachable providers and their URLs")
    check(line.endswith("; running workflow offline-default instead of default"),
          "the line names the workflow that runs instead")
    check(r.stderr.find("offline: ") < r.stderr.find("implement"),
          "the offline line comes before the progress")
    check(out.get("workflow") == "offline-default", f"--json workflow {out.get('workflow')}")
    check(out.get("steps") == [" [OK] local-code (implement)", " [OK] local-instruct (review)"],
          f"the local agents ran the steps: {out.get('steps')}")
    off = out.get("offline") or {}
    check(off.get("requested") == "default" and off.get("workflow") == "offline-default" and
          "no remote provider reachable" in off.get("reason", ""),
          f"--json has the offline choice: {off}")
    check(took < 30, f"probing closed ports is quick ({took:.1f}s)")


def reachable_and_forced(tmp, llm):
    cfg = write(tmp, "up.yaml", config(tmp, llm.url + "/v1", llm.url + "/"))
    r, out = run_json(tmp, cfg, "--workflow", "quick")
    check(r.returncode == 0 and out.get("workflow") == "quick",
          f"providers reachable: quick runs online (rc {r.returncode}, {out.get('workflow')}; "
          f"{r.stderr[-300:]})")
    check("offline:" not in r.stderr and out.get("offline") is None,
          "no offline line and offline null when online")
    check(step_agents(out) == ["codex"], f"codex answered: {step_agents(out)}")

    r, out = run_json(tmp, cfg, "--offline")
    line = next((l for l in r.stderr.splitlines() if l.startswith("offline: ")), "")
    check(r.returncode == 0 and out.get("workflow") == "offline-default",
          f"--offline forces offline-default with providers up (rc {r.returncode}, "
          f"{out.get('workflow')})")
    check(line == "offline: forced: --offline; running workflow offline-default instead of "
          "default", f"--offline says so: {line!r}")
    check(step_agents(out) == ["local-code", "local-instruct"],
          f"only local agents ran: {step_agents(out)}")


def one_reachable(tmp, llm):
    cfg = write(tmp, "one.yaml", config(tmp, llm.url + "/v1", f"http://127.0.0.1:{closed_port()}/"))
    r, out = run_json(tmp, cfg, "--workflow", "quick")
    check(r.returncode == 0 and out.get("workflow") == "quick" and out.get("offline") is None,
          f"one reachable provider (codex) keeps it online (rc {r.returncode}, "
          f"{out.get('workflow')}, offline {out.get('offline')})")


def read_sse(port, path, want, timeout=10):
    """Events from an SSE stream until `want` have arrived or timeout."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request("GET", path)
    resp = c.getresponse()
    events, end = [], time.monotonic() + timeout
    try:
        while len(events) < want and time.monotonic() < end:
            line = resp.fp.readline().decode()
            if not line:
                break
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    except (socket.timeout, OSError):
        pass
    c.close()
    return events


def wait_mode(srv, mode, timeout=15):
    end = time.monotonic() + timeout
    st = {}
    while time.monotonic() < end:
        _, st = srv.request("GET", "/api/status")
        if isinstance(st, dict) and st.get("mode") == mode:
            return st
        time.sleep(0.1)
    return st


def serve_modes(tmp):
    port = closed_port()
    codex_url = f"http://127.0.0.1:{port}/v1"
    text = config(tmp, codex_url, f"http://127.0.0.1:{closed_port()}/")
    srv = harness.serve(tmp, text, "serve-auto")
    llm = None
    try:
        st = wait_mode(srv, "offline")
        check(st.get("mode") == "offline" and
              st.get("mode_reason", "").startswith("no remote provider reachable: "),
              f"/api/status: offline and why ({st.get('mode')}: {st.get('mode_reason')})")
        od = st.get("offline") or {}
        probes = {p["provider"]: p for p in od.get("probes", [])}
        check(set(probes) == {"codex", "anthropic"} and
              all(p["reachable"] is False for p in probes.values()),
              f"/api/status offline.probes: {probes}")
        check(od.get("forced") is False and od.get("setting") == "auto",
              f"not forced, setting auto: {od.get('forced')}, {od.get('setting')}")

        llm = harness.fake("llm_server.py", "--port", str(port))  # codex's provider comes up
        st = wait_mode(srv, "online")
        check(st.get("mode") == "online" and "reachable: codex" in st.get("mode_reason", ""),
              f"/api/status: online once codex answers ({st.get('mode')}: "
              f"{st.get('mode_reason')})")
        evs = read_sse(srv.port, "/api/events?after=0&type=offline.", 2)
        check([e["data"]["offline"] for e in evs] == [True, False] and
              all(e["type"] == "offline.changed" for e in evs),
              f"offline.changed events: {[(e['type'], e['data']) for e in evs]}")
    finally:
        check(srv.stop() == 0, "serve (auto) shuts down cleanly")
        if llm:
            llm.stop()

    # --offline: harness.serve takes no extra flags, so start it by hand
    cfg = write(tmp, "forced.yaml", text)
    errf = open(os.path.join(tmp, "forced.err"), "w")
    p = subprocess.Popen([harness.BATON, "serve", "--port", "0", "--config", cfg, "--offline",
                          "--store", "sqlite:" + os.path.join(tmp, "forced.db")],
                         stdout=subprocess.PIPE, stderr=errf, text=True, cwd=tmp,
                         env=harness.clean_env())
    errf.close()
    m = re.search(r"listening on http://[^:]+:(\d+)", p.stdout.readline())
    check(m is not None, "baton serve --offline starts")
    if m:
        srv = harness.Server(p, int(m.group(1)), os.path.join(tmp, "forced.err"))
        _, st = srv.request("GET", "/api/status")
        check(st.get("mode") == "offline" and st.get("mode_reason") == "forced: --offline" and
              st.get("offline", {}).get("forced") is True,
              f"serve --offline: {st.get('mode')}: {st.get('mode_reason')}")
        check(srv.stop() == 0, "serve --offline shuts down cleanly")
    else:
        p.kill()
        p.wait()


def main():
    with tempfile.TemporaryDirectory() as tmp:
        all_unreachable(tmp)
        llm = harness.fake("llm_server.py")
        try:
            reachable_and_forced(tmp, llm)
            one_reachable(tmp, llm)
        finally:
            llm.stop()
        serve_modes(tmp)
    harness.finish()


if __name__ == "__main__":
    main()
