#!/usr/bin/env python3
"""Agents through the real binary (issue 5): `baton agents`, `baton test-agent` (live
output, tokens, cost, --record, replay of the recording), `baton models
status|list|pull|remove` against the fake LLM server's Ollama endpoints, and the HTTP
routes GET /api/agents (with each agent's breaker, statistics and limits), GET
/api/agents/{name}, GET /api/models/status, POST /api/agents/{name}/test.
"""
import json
import os
import tempfile

import harness
from harness import check

FAKE_AGENT = os.path.join(harness.FAKES, "fake-agent")


def config(llm_url, extra=""):
    return f"""
log: {{level: warn}}
agents:
  fake:
    type: cli
    command: {FAKE_AGENT}
    args: [--as, generic]
    role: implementation
    timeout: 1m
    stall_timeout: 30s
  ghost:
    type: cli
    command: /nonexistent/ghost-cli
  hosted:
    type: openai
    base_url: https://api.openai.com/v1
    model: gpt-4o-mini
  local:
    type: openai
    base_url: {llm_url}/v1
    model: qwen2.5-coder:7b
    role: review
    price: {{input: 2.0, output: 8.0}}
  dead:
    type: ollama
    base_url: http://127.0.0.1:9
    model: llama3.2:1b
{extra}
"""


def main():
    llm = harness.fake("llm_server.py")
    tmp = tempfile.mkdtemp(prefix="baton-agents-")
    try:
        cfg = os.path.join(tmp, "baton.yaml")
        with open(cfg, "w") as f:
            f.write(config(llm.url))
        cli_checks(tmp, cfg, llm)
        models_checks(tmp, cfg, llm)
        api_checks(tmp, llm)
    finally:
        llm.stop()
    harness.finish()


def cli_checks(tmp, cfg, llm):
    # ---- baton agents ----
    r = harness.run(["agents", "--config", cfg, "--json"])
    check(r.returncode == 1, f"baton agents exits 1 when some agent is unavailable (got {r.returncode})")
    doc = json.loads(r.stdout)
    by = {a["name"]: a for a in doc["agents"]}
    check(doc["count"] == 5 and set(by) == {"fake", "ghost", "hosted", "local", "dead"},
          "every configured agent is listed")
    check(by["fake"]["available"] and by["fake"]["type"] == "cli", "a CLI on disk is available")
    check(not by["ghost"]["available"] and "/nonexistent/ghost-cli" in by["ghost"]["detail"]
          and ("not found" in by["ghost"]["detail"] or "not an executable" in by["ghost"]["detail"]),
          f"a missing CLI is unavailable and says so: {by['ghost']['detail']!r}")
    check(not by["hosted"]["available"] and "key" in by["hosted"]["detail"].lower(),
          f"a hosted endpoint without a key is unavailable: {by['hosted']['detail']!r}")
    check(by["local"]["available"], f"the reachable endpoint is available: {by['local'].get('detail')!r}")
    check(not by["dead"]["available"] and by["dead"]["detail"] != "",
          f"an unreachable endpoint is unavailable: {by['dead']['detail']!r}")
    check(by["local"]["writes_workspace"] is False and by["fake"]["writes_workspace"] is True,
          "HTTP agents are advisory, CLI agents write the workspace")
    check(by["local"]["role"] == "review" and by["local"]["model"] == "qwen2.5-coder:7b",
          "role and model are reported")
    r = harness.run(["agents", "--config", cfg])
    check(all(n in r.stdout for n in ("fake", "ghost", "hosted", "local", "dead"))
          and "unavailable" in r.stdout and "2 of 5 agents available" in r.stdout,
          "the table lists every agent and the count")

    # ---- baton test-agent: a CLI agent, live output and summary ----
    ws = os.path.join(tmp, "ws")
    os.makedirs(ws)
    r = harness.run(["test-agent", "fake", "write the greeting", "--config", cfg,
                     "--workspace", ws])
    check(r.returncode == 0, f"test-agent on the fake CLI succeeds (rc {r.returncode}, {r.stderr[-300:]!r})")
    check(r.stdout.strip() != "", "the agent's output is printed on stdout")
    check("tokens:" in r.stderr and "cost:" in r.stderr and "succeeded" in r.stderr,
          "tokens, cost and the outcome follow on stderr")

    r = harness.run(["test-agent", "nobody", "x", "--config", cfg])
    check(r.returncode == 2 and "fake" in r.stderr and "nobody" in r.stderr,
          "an unknown agent is a usage error that lists the configured ones")
    r = harness.run(["test-agent", "ghost", "x", "--config", cfg, "--json"])
    check(r.returncode == 1, "a missing CLI fails with exit 1")
    if r.stdout.strip().startswith("{"):
        res = json.loads(r.stdout)
        check(res["error_class"] == "permanent" and "ghost-cli" in res["error"],
              f"... as a permanent error naming the program: {res['error']!r}")
    else:
        check("ghost-cli" in r.stderr, f"... naming the program: {r.stderr!r}")

    # ---- an HTTP agent, recorded, then replayed with the same figures ----
    rec = os.path.join(tmp, "local.jsonl")
    r = harness.run(["test-agent", "local", "explain quicksort briefly", "--config", cfg,
                     "--json", "--record", rec])
    check(r.returncode == 0, f"test-agent on the OpenAI-compatible agent succeeds ({r.stderr[-300:]!r})")
    live = json.loads(r.stdout) if r.returncode == 0 else {}
    check(live.get("tokens_in", 0) > 0 and live.get("tokens_out", 0) > 0,
          f"tokens are reported: {live.get('tokens_in')} in, {live.get('tokens_out')} out")
    want_cost = (live.get("tokens_in", 0) * 2.0 + live.get("tokens_out", 0) * 8.0) / 1e6
    check(abs(live.get("cost_usd", -1) - want_cost) < 1e-9 and not live.get("cost_reported"),
          f"cost is tokens x the configured price ({live.get('cost_usd')} vs {want_cost})")
    check(os.path.exists(rec) and os.path.getsize(rec) > 0, "--record wrote a recording")

    cfg2 = os.path.join(tmp, "replay.yaml")
    with open(cfg2, "w") as f:
        f.write(config(llm.url, f"""  rep:
    type: replay
    file: {rec}
    speed: 0
"""))
    r = harness.run(["test-agent", "rep", "anything", "--config", cfg2, "--json"])
    check(r.returncode == 0, f"the replay agent plays the recording ({r.stderr[-300:]!r})")
    rep = json.loads(r.stdout) if r.returncode == 0 else {}
    check(rep.get("replay") is True, "the replayed result is labelled as a replay")
    check(rep.get("output") == live.get("output") and rep.get("output"),
          "the replay prints the recorded output")
    check(rep.get("tokens_in") == live.get("tokens_in") and rep.get("tokens_out") == live.get("tokens_out")
          and abs(rep.get("cost_usd", -1) - live.get("cost_usd", -2)) < 1e-12,
          "the replay reports the same tokens and cost")
    r = harness.run(["test-agent", "rep", "anything", "--config", cfg2])
    check(r.returncode == 0 and live.get("output", "\0") in r.stdout and "[replay]" in r.stderr,
          "in text mode the replay prints the output and is labelled [replay]")
    check(f"{live.get('tokens_in')} in, {live.get('tokens_out')} out" in r.stderr,
          "in text mode the replay prints the recorded token figures")


def models_checks(tmp, cfg, llm):
    r = harness.run(["models", "status", "--config", cfg, "--json"])
    doc = json.loads(r.stdout)
    eps = {e["url"]: e for e in doc["endpoints"]}
    ep = eps.get(llm.url, {})
    check(ep.get("kind") == "ollama" and ep.get("ready") is True,
          f"the local endpoint is detected as Ollama and ready: {ep.get('kind')} {ep.get('detail')!r}")
    check(ep.get("configured_models", {}).get("qwen2.5-coder:7b") is True,
          "the configured model is present on it")
    dead = eps.get("http://127.0.0.1:9", {})
    check(dead.get("reachable") is False, "the dead endpoint is unreachable")
    check(r.returncode == 1, "models status exits 1 when an endpoint is not ready")

    ep_args = ["--config", cfg, "--endpoint", llm.url]
    r = harness.run(["models", "list", *ep_args])
    check(r.returncode == 0 and "qwen2.5-coder:7b" in r.stdout, "models list shows the models")
    r = harness.run(["models", "pull", "codellama:13b", *ep_args])
    check(r.returncode == 0 and "pulled codellama:13b" in r.stdout,
          f"models pull succeeds ({r.stdout!r} {r.stderr[-200:]!r})")
    check("success" in r.stderr or "pulling manifest" in r.stderr,
          "pull progress is shown while it runs")
    r = harness.run(["models", "list", *ep_args, "--json"])
    names = [m["name"] for e in json.loads(r.stdout)["endpoints"] for m in e["models"]]
    check("codellama:13b" in names, "the pulled model is listed afterwards")
    r = harness.run(["models", "pull", "missing-model", *ep_args])
    check(r.returncode == 1 and "does not exist" in r.stderr,
          f"an error line after 200 fails the pull with its message: {r.stderr[-200:]!r}")
    r = harness.run(["models", "remove", "codellama:13b", *ep_args])
    check(r.returncode == 0 and "removed" in r.stdout, "models remove succeeds")
    r = harness.run(["models", "remove", "codellama:13b", *ep_args])
    check(r.returncode == 1 and "not found" in r.stderr, "removing it again says not found")
    r = harness.run(["models", "frobnicate", *ep_args])
    check(r.returncode == 2, "an unknown subcommand is a usage error")


def api_checks(tmp, llm):
    srv = harness.serve(tmp, config(llm.url) + f"workspace: {{root: {tmp}/wsroot}}\n", "serve")
    try:
        st, doc = srv.request("GET", "/api/agents")
        check(st == 200 and doc.get("count") == 5, "GET /api/agents lists the agents")
        by = {a["name"]: a for a in doc.get("agents", [])}
        check(set(by.get("fake", {})) >= {"name", "role", "type", "available"},
              "each agent has seed 004's name, role, type, available")
        check(by.get("fake", {}).get("available") is True and by.get("ghost", {}).get("available") is False,
              "availability is checked")
        check(all((a.get("breaker") or {}).get("state") == "closed"
                  and (a.get("stats") or {}).get("calls") == 0
                  and (a.get("stats") or {}).get("success_rate", 0) is None
                  and "waiting" in (a.get("rate_limit") or {}) for a in by.values()),
              "each agent carries its breaker (closed), statistics (no calls) and rate limit")
        check(by.get("hosted", {}).get("provider") == "openai" and by.get("hosted", {}).get("local") is False
              and by.get("local", {}).get("local") is True and by.get("dead", {}).get("provider") == "ollama",
              "provider and locality are reported "
              f"({[(n, a.get('provider'), a.get('local')) for n, a in by.items()]})")
        st, one = srv.request("GET", "/api/agents/fake")
        check(st == 200 and one.get("name") == "fake" and one.get("available") is True
              and (one.get("breaker") or {}).get("state") == "closed",
              f"GET /api/agents/fake answers the one agent ({st})")
        st, one = srv.request("GET", "/api/agents/ghost")
        check(st == 200 and one.get("available") is False and "ghost-cli" in one.get("detail", ""),
              f"GET /api/agents/ghost says why it is unavailable ({one.get('detail')!r})")
        st, one = srv.request("GET", "/api/agents/nobody")
        msg = ((one or {}).get("error") or {}).get("message", "") if isinstance(one, dict) else ""
        check(st == 404 and "nobody" in msg and "fake" in msg and "dead" in msg,
              f"GET /api/agents/nobody is 404 naming the configured agents ({msg!r})")
        st, doc = srv.request("GET", "/api/models/status")
        check(st == 200 and any(e.get("kind") == "ollama" for e in doc.get("endpoints", [])),
              "GET /api/models/status reports the local endpoints")
        st, res = srv.request("POST", "/api/agents/local/test", {"prompt": "say hello"})
        check(st == 200 and res.get("success") is True and res.get("tokens_out", 0) > 0,
              f"POST /api/agents/local/test runs the agent: {st} {str(res)[:200]}")
        st, res = srv.request("POST", "/api/agents/fake/test", {"prompt": "do the thing"})
        check(st == 200 and res.get("success") is True, "a CLI agent runs through the API too")
        leftovers = os.listdir(os.path.join(tmp, "wsroot", ".agent-tests"))
        check(leftovers == [], f"the scratch directories are removed afterwards: {leftovers}")
        st, res = srv.request("POST", "/api/agents/nobody/test", {"prompt": "x"})
        check(st == 404, "an unknown agent is 404")
        st, res = srv.request("POST", "/api/agents/local/test", {"prompt": ""})
        check(st == 400, "an empty prompt is 400")
        st, res = srv.request("POST", "/api/agents/local/test", "{not json")
        check(st == 400, "malformed JSON is 400")
        st, res = srv.request("POST", "/api/agents/local/test", {"prompt": "x", "timeout": "2 weeks"})
        check(st == 400, "a bad timeout is 400")
    finally:
        rc = srv.stop()
        check(rc == 0, f"baton serve shuts down cleanly (rc {rc})")


if __name__ == "__main__":
    main()
