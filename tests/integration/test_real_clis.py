#!/usr/bin/env python3
"""The genuine Claude Code and Codex CLIs (from npm, at the versions scripts/install-deps.sh
--test pins) run by baton's `claude` and `codex` CLI presets against the scripted fake model
server (tests/fakes/llm_server.py) on loopback; nothing else is reachable by design
(../../shared/reference/real-cli.md has the settings that keep each CLI offline). Issue 5
item 9. For each CLI:

1. `baton test-agent NAME "create hello.txt containing hi" --json`: the CLI asks the fake,
   gets a file-writing tool call (Claude Code: Write; Codex: apply_patch), runs it itself,
   sends the tool result back and gets the final text. baton exits 0; hello.txt holds
   "hi" in the workspace; the result's output is the fake's final text; tokens_in/out are
   the sums of the usage the fake reported on its two turns (scripted through its control
   endpoint); Claude Code's own total_cost_usd is reported (cost_reported, $5/$25 per
   million for its default model), Codex reports no cost. The fake saw only the expected
   endpoints (Claude Code: POST /v1/messages?beta=true and its HEAD / preconnect; Codex:
   POST /v1/responses), and the second request carried the CLI's tool result.
2. The model endpoint down (a closed port, retries off): baton exits 1 within seconds with
   a failure whose error text is the CLI's own message.

The CLIs live in $BATON_CLI_DIR (default ${XDG_CACHE_HOME:-~/.cache}/baton/real-clis). When
they are missing this test fails and says to run scripts/install-deps.sh --test; it skips
only when BATON_SKIP_REAL_CLIS=1 is set. Codex runs in its workspace-write sandbox when
that sandbox works here (`codex sandbox -- true`), else with
--dangerously-bypass-approvals-and-sandbox (containers without user namespaces).
"""
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

BATON = os.environ.get("BATON_BINARY", "baton")
SRC = os.environ.get("BATON_SOURCE_DIR",
                     os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
PROMPT = "create hello.txt containing hi"
FINAL_TEXT = "Created hello.txt containing hi."  # the fake's text after a tool result
FAILS = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        FAILS.append(what)
    return cond


def pinned_versions():
    """The versions scripts/install-deps.sh installs (the one place they are written)."""
    with open(os.path.join(SRC, "scripts", "install-deps.sh")) as f:
        text = f.read()
    claude = re.search(r"^CLAUDE_CODE_VERSION=(\S+)", text, re.M)
    codex = re.search(r"^CODEX_VERSION=(\S+)", text, re.M)
    return claude.group(1), codex.group(1)


def cli_dir():
    d = os.environ.get("BATON_CLI_DIR")
    if not d:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"),
                                                                 ".cache")
        d = os.path.join(cache, "baton", "real-clis")
    return d


def version_of(path):
    try:
        p = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30,
                           stdin=subprocess.DEVNULL)
        return p.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def base_env(home):
    """baton's environment: the test's, minus anything that would configure baton or leak
    a real provider setting into the CLIs, with HOME in the scratch folder."""
    e = {k: v for k, v in os.environ.items()
         if not k.startswith(("ORCHESTRATOR_", "DATABASE_URL", "BATON_CONFIG", "JWT_SECRET",
                              "GITHUB_", "LOG_LEVEL", "OPENAI_", "ANTHROPIC_", "CLAUDE_",
                              "CODEX_", "GEMINI_"))}
    e["HOME"] = home
    return e


class Fake:
    def __init__(self, tmp, name):
        self.log = os.path.join(tmp, name + "-requests.jsonl")
        self.errf = open(os.path.join(tmp, name + "-fake.err"), "w")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(SRC, "tests", "fakes", "llm_server.py"), "--port",
             "0", "--log", self.log, "--exit-on-stdin-eof"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errf, text=True)
        line = self.proc.stdout.readline()
        m = re.match(r"PORT (\d+)", line)
        if not m:
            raise RuntimeError("fake LLM server did not start: %r" % line)
        self.port = int(m.group(1))
        self.url = "http://127.0.0.1:%d" % self.port

    def script(self, path, actions):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        c.request("POST", "/_control/script", json.dumps({"path": path, "actions": actions}),
                  {"Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        c.close()
        if r.status != 200:
            raise RuntimeError("fake /_control/script: HTTP %d" % r.status)

    def requests(self):
        if not os.path.exists(self.log):
            return []
        with open(self.log) as f:
            return [json.loads(line) for line in f if line.strip()]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.errf.close()


def git_repo(path):
    os.makedirs(path)
    subprocess.run(["git", "init", "-q", path], check=True)
    return path


def write_config(path, name, preset, command, env, args=()):
    """A baton config with one CLI agent. Values are JSON strings (valid YAML scalars)."""
    lines = ["agents:", "  %s:" % name, "    type: cli", "    preset: %s" % preset,
             "    command: %s" % json.dumps(command), "    timeout: 60s"]
    if args:
        lines.append("    args: [%s]" % ", ".join(json.dumps(a) for a in args))
    lines.append("    env:")
    for k, v in env.items():
        lines.append("      %s: %s" % (k, json.dumps(v)))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def test_agent(cfg, name, workspace, env, timeout=90):
    t0 = time.monotonic()
    p = subprocess.run([BATON, "test-agent", name, PROMPT, "--workspace", workspace, "--json",
                        "--config", cfg], capture_output=True, text=True, env=env,
                       timeout=timeout, stdin=subprocess.DEVNULL)
    elapsed = time.monotonic() - t0
    try:
        result = json.loads(p.stdout)
    except ValueError:
        result = {}
    if not result:
        print("baton stdout:\n" + p.stdout + "\nbaton stderr:\n" + p.stderr)
    return p, result, elapsed


def file_text(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


# ---------------------------------------------------------------- Claude Code


def claude_env(base_url, home):
    return {
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": "sk-ant-dummy",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_BUG_COMMAND": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "CLAUDE_CODE_MAX_RETRIES": "0",
        "HOME": home,
    }


def run_claude(tmp, claude_bin):
    print("\n== Claude Code ==", flush=True)
    home = os.path.join(tmp, "claude-home")
    os.makedirs(home)
    fake = Fake(tmp, "claude")
    try:
        # Usage per turn, so the expected sums are known: turn 1 (Write), turn 2 (text).
        fake.script("/v1/messages", [{"usage": {"input": 1200, "output": 25}},
                                     {"usage": {"input": 1300, "output": 9}}])
        repo = git_repo(os.path.join(tmp, "claude-repo"))
        cfg = os.path.join(tmp, "claude.yaml")
        write_config(cfg, "claude", "claude", claude_bin, claude_env(fake.url, home))
        p, r, elapsed = test_agent(cfg, "claude", repo, base_env(home))
        print("baton: exit %d in %.1fs; result %s" % (p.returncode, elapsed, json.dumps(r)))
        if p.returncode != 0:
            print("baton stderr:\n" + p.stderr)
        check(p.returncode == 0, "claude: baton test-agent exits 0")
        check(r.get("success") is True, "claude: result success")
        check(file_text(os.path.join(repo, "hello.txt")) == "hi\n",
              "claude: Claude Code's Write created hello.txt containing hi in the workspace")
        check(r.get("output", "").strip() == FINAL_TEXT,
              "claude: output is the fake's final text (%r)" % r.get("output"))
        check(r.get("tokens_in") == 2500 and r.get("tokens_out") == 34,
              "claude: tokens are Claude Code's usage, the sums of both turns "
              "(2500 in, 34 out; got %s, %s)" % (r.get("tokens_in"), r.get("tokens_out")))
        # Claude Code prices its default model (2.1.197: claude-opus-4-8) at $5/$25 per
        # million tokens; the figure is its total_cost_usd, not baton's price table (the
        # configuration has no price, so baton's own figure would be 0).
        want_cost = 2500 * 5e-6 + 34 * 25e-6
        cost = r.get("cost_usd") or 0
        check(r.get("cost_reported") is True and abs(cost - want_cost) < 1e-6,
              "claude: cost is Claude Code's total_cost_usd (%.6f, reported; got %s, %s)"
              % (want_cost, cost, r.get("cost_reported")))
        reqs = fake.requests()
        seen = sorted({(q["method"], q["path"], q["query"]) for q in reqs})
        allowed = {("HEAD", "/", ""), ("POST", "/v1/messages", "beta=true"),
                   ("POST", "/v1/messages", "")}
        check(set(seen) <= allowed, "claude: the fake saw only POST /v1/messages (and HEAD /): %s"
              % seen)
        posts = [q for q in reqs if q["method"] == "POST"]
        check(len(posts) == 2, "claude: exactly two model requests (got %d)" % len(posts))
        if len(posts) == 2:
            last = json.dumps(posts[1]["body"].get("messages", [])[-1:])
            check('"tool_result"' in last and "File created successfully" in last,
                  "claude: the second request carries Write's tool_result")
    finally:
        fake.stop()

    # The endpoint down: a closed port, no retries.
    home2 = os.path.join(tmp, "claude-home-down")
    os.makedirs(home2)
    repo = git_repo(os.path.join(tmp, "claude-repo-down"))
    cfg = os.path.join(tmp, "claude-down.yaml")
    write_config(cfg, "claude", "claude", claude_bin,
                 claude_env("http://127.0.0.1:%d" % free_port(), home2))
    p, r, elapsed = test_agent(cfg, "claude", repo, base_env(home2))
    print("baton: exit %d in %.1fs; result %s" % (p.returncode, elapsed, json.dumps(r)))
    check(p.returncode == 1 and r.get("success") is False,
          "claude, endpoint down: baton exits 1 with a failed result")
    check(elapsed < 20, "claude, endpoint down: fails quickly (%.1fs)" % elapsed)
    check("Unable to connect to API" in r.get("error", ""),
          "claude, endpoint down: the error is Claude Code's own message (%r)" % r.get("error"))


# ---------------------------------------------------------------- Codex


def codex_home(path, base_url):
    os.makedirs(path)
    with open(os.path.join(path, "config.toml"), "w") as f:
        f.write("""model = "gpt-5.5"
model_provider = "fake"
approval_policy = "never"
check_for_update_on_startup = false

[model_providers.fake]
name = "Fake local model"
base_url = "%s/v1"
env_key = "FAKE_API_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0

[features]
plugins = false
unbounded_connection_retries = false

[analytics]
enabled = false
""" % base_url)
    return path


def codex_env(chome, home):
    return {"CODEX_HOME": chome, "FAKE_API_KEY": "sk-dummy", "HOME": home}


def codex_sandbox_args(tmp, codex_bin, home):
    """[] when Codex's own Linux sandbox (bubblewrap) works here, else the bypass flag."""
    chome = os.path.join(tmp, "codex-probe-home")
    os.makedirs(chome)
    env = base_env(home)
    env["CODEX_HOME"] = chome
    try:
        p = subprocess.run([codex_bin, "sandbox", "--", "true"], capture_output=True,
                           text=True, env=env, timeout=30, stdin=subprocess.DEVNULL, cwd=tmp)
        ok = p.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    if ok:
        print("codex: its workspace-write sandbox works here; running sandboxed")
        return []
    print("codex: its sandbox cannot run here (no user namespaces?); running with "
          "--dangerously-bypass-approvals-and-sandbox")
    return ["--dangerously-bypass-approvals-and-sandbox"]


def run_codex(tmp, codex_bin):
    print("\n== Codex ==", flush=True)
    home = os.path.join(tmp, "codex-user-home")
    os.makedirs(home)
    args = codex_sandbox_args(tmp, codex_bin, home)
    fake = Fake(tmp, "codex")
    try:
        fake.script("/v1/responses", [{"usage": {"input": 3100, "output": 25}},
                                      {"usage": {"input": 3200, "output": 11}}])
        repo = git_repo(os.path.join(tmp, "codex-repo"))
        chome = codex_home(os.path.join(tmp, "codex-home"), fake.url)
        cfg = os.path.join(tmp, "codex.yaml")
        write_config(cfg, "codex", "codex", codex_bin, codex_env(chome, home), args)
        p, r, elapsed = test_agent(cfg, "codex", repo, base_env(home))
        print("baton: exit %d in %.1fs; result %s" % (p.returncode, elapsed, json.dumps(r)))
        if p.returncode != 0:
            print("baton stderr:\n" + p.stderr)
        check(p.returncode == 0, "codex: baton test-agent exits 0")
        check(r.get("success") is True, "codex: result success")
        check(file_text(os.path.join(repo, "hello.txt")) == "hi\n",
              "codex: Codex's apply_patch created hello.txt containing hi in the workspace")
        check(r.get("output", "").strip() == FINAL_TEXT,
              "codex: output is the fake's final text (%r)" % r.get("output"))
        check(r.get("tokens_in") == 6300 and r.get("tokens_out") == 36,
              "codex: tokens are Codex's turn.completed usage, the sums of both turns "
              "(6300 in, 36 out; got %s, %s)" % (r.get("tokens_in"), r.get("tokens_out")))
        check(r.get("cost_reported") is False, "codex: no cost reported (Codex reports none)")
        reqs = fake.requests()
        seen = sorted({(q["method"], q["path"]) for q in reqs})
        check(seen == [("POST", "/v1/responses")],
              "codex: the fake saw only POST /v1/responses: %s" % seen)
        check(len(reqs) == 2, "codex: exactly two model requests (got %d)" % len(reqs))
        if len(reqs) == 2:
            items = reqs[1]["body"].get("input", [])
            check(any(isinstance(it, dict) and it.get("type") == "custom_tool_call_output"
                      for it in items),
                  "codex: the second request carries apply_patch's tool output")
    finally:
        fake.stop()

    repo = git_repo(os.path.join(tmp, "codex-repo-down"))
    chome = codex_home(os.path.join(tmp, "codex-home-down"), "http://127.0.0.1:%d" % free_port())
    cfg = os.path.join(tmp, "codex-down.yaml")
    write_config(cfg, "codex", "codex", codex_bin, codex_env(chome, home), args)
    p, r, elapsed = test_agent(cfg, "codex", repo, base_env(home))
    print("baton: exit %d in %.1fs; result %s" % (p.returncode, elapsed, json.dumps(r)))
    check(p.returncode == 1 and r.get("success") is False,
          "codex, endpoint down: baton exits 1 with a failed result")
    check(elapsed < 20, "codex, endpoint down: fails quickly (%.1fs)" % elapsed)
    check("Connection failed" in r.get("error", ""),
          "codex, endpoint down: the error is Codex's own message (%r)" % r.get("error"))


def main():
    if os.environ.get("BATON_SKIP_REAL_CLIS") == "1":
        print("skipped: BATON_SKIP_REAL_CLIS=1 (the genuine Claude Code / Codex CLIs were "
              "not tested)")
        return 0
    want_claude, want_codex = pinned_versions()
    bindir = os.path.join(cli_dir(), "node_modules", ".bin")
    claude_bin = os.path.join(bindir, "claude")
    codex_bin = os.path.join(bindir, "codex")
    got_claude, got_codex = version_of(claude_bin), version_of(codex_bin)
    if got_claude != "%s (Claude Code)" % want_claude or got_codex != "codex-cli %s" % want_codex:
        print("FAIL the genuine CLIs are not installed in %s (want Claude Code %s and Codex %s; "
              "found %r and %r).\nRun scripts/install-deps.sh --test to install them, or set "
              "BATON_SKIP_REAL_CLIS=1 to skip this test."
              % (cli_dir(), want_claude, want_codex, got_claude or "none",
                 got_codex or "none"))
        return 1
    print("Claude Code %s, Codex %s from %s" % (want_claude, want_codex, bindir))
    tmp = tempfile.mkdtemp(prefix="baton-real-clis-")
    try:
        run_claude(tmp, claude_bin)
        run_codex(tmp, codex_bin)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if FAILS:
        print("\n%d check(s) failed:" % len(FAILS), *FAILS, sep="\n  ")
        return 1
    print("\nall checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
