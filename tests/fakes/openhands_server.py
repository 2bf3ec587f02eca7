#!/usr/bin/env python3
"""A stateful fake of the OpenHands agent server's REST API (api-reference.md section 6),
for baton's openhands adapter tests. Python standard library only.

    python3 openhands_server.py [--session-key KEY] [--polls N]

Prints "PORT n" on stdout once listening on 127.0.0.1 (port 0 = any free port).

What it models (paths, shapes and status codes of openhands-agent-server):
  GET  /alive, /health                               {"status":"ok"}, no key needed
  GET  /api/conversations/search?limit=             ConversationPage
  POST /api/conversations                            201 ConversationInfo (200 if the
                                                     conversation_id already exists)
  GET  /api/conversations/{id}                       ConversationInfo with execution_status
                                                     and stats.usage_to_metrics
  GET  /api/conversations/{id}/events/search?page_id=&limit=
                                                     {items, next_page_id}; page_id is the
                                                     first event returned (inclusive)
  GET  /api/conversations/{id}/agent_final_response  {"response": ...}, "" until finished
  POST /api/conversations/{id}/pause                 {"success": true}
  DELETE /api/conversations/{id}                     {"success": true}
With --session-key every /api call needs "X-Session-API-Key: KEY", else 401.

A conversation advances one step per GET of its info: idle (on creation), running
(with the first events) and, after --polls GETs, its terminal status with the rest of
the events. The initial message text scripts it:
  FAIL      ends in "error" after a ConversationErrorEvent (LLMServiceUnavailableError)
  AUTHFAIL  ends in "error" after an LLMAuthenticationError (classified authentication)
  STUCK     ends in "stuck"
  CONFIRM   waits in "waiting_for_confirmation" for two polls, then finishes
  SLOW      stays "running" forever (for cancel and timeout tests)
  MANY      the agent sends 150 messages (more than one page of events)
otherwise it finishes with a MessageEvent, an ActionEvent (TerminalTool), an
ObservationEvent, an unknown kind, an AgentErrorEvent and a final answer.

Test control (no key needed):
  GET /_control/requests    every request so far: [{method, path, query, session_key, body}]
"""

import argparse
import json
import sys
import threading
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


def now_iso():
    return datetime.now(timezone.utc).isoformat()


class Conversation:
    def __init__(self, cid, request):
        self.id = cid
        self.request = request
        msg = request.get("initial_message") or {}
        parts = msg.get("content") or []
        self.text = " ".join(p.get("text", "") for p in parts if isinstance(p, dict))
        self.status = "idle"
        self.polls = 0
        self.events = []
        self.final = ""
        self.cost = 0.0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.paused = False
        self.confirm_polls = 0

    def event(self, kind, source, **fields):
        ev = {"kind": kind, "id": str(uuid.uuid4()), "timestamp": now_iso(), "source": source}
        ev.update(fields)
        self.events.append(ev)

    def agent_message(self, text):
        self.event("MessageEvent", "agent",
                   llm_message={"role": "assistant", "content": [{"type": "text", "text": text}]})

    def advance(self, polls_to_finish):
        """One step of the scripted run, on each GET of the conversation."""
        if self.status in ("finished", "error", "stuck", "paused", "deleting"):
            return
        self.polls += 1
        if self.polls == 1:
            self.status = "running"
            self.event("MessageEvent", "user",
                       llm_message={"role": "user",
                                    "content": [{"type": "text", "text": self.text}]})
            self.agent_message("Let me look at the repository.")
            self.event("ActionEvent", "agent", tool_name="TerminalTool", tool_call_id="call_1",
                       thought=[{"type": "text", "text": "list the files"}],
                       action={"kind": "TerminalAction", "command": "ls -la"},
                       summary=None)
            self.event("ObservationEvent", "environment", tool_name="TerminalTool",
                       tool_call_id="call_1", action_id=self.events[-1]["id"],
                       observation={"kind": "TerminalObservation",
                                    "content": [{"type": "text", "text": "README.md"}]})
            self.event("FancyNewEvent", "environment", sparkle=True)
            self.cost, self.prompt_tokens, self.completion_tokens = 0.004, 1000, 50
            return
        if "SLOW" in self.text:
            return
        if "CONFIRM" in self.text and self.confirm_polls < 2:
            self.confirm_polls += 1
            self.status = "waiting_for_confirmation"
            return
        if self.polls < polls_to_finish:
            return
        if "AUTHFAIL" in self.text:
            self.event("ConversationErrorEvent", "environment", code="LLMAuthenticationError",
                       detail="litellm.AuthenticationError: invalid api key",
                       classification={"origin": "provider", "cause": "authentication",
                                       "blame": "user_configuration", "impact": "run_stopped",
                                       "retry": "after_user_action",
                                       "user_action": "reauthenticate",
                                       "presentation": "warning", "telemetry": "outcome"})
            self.status = "error"
            return
        if "FAIL" in self.text:
            self.event("ConversationErrorEvent", "environment",
                       code="LLMServiceUnavailableError",
                       detail="the model provider returned 503")
            self.status = "error"
            return
        if "STUCK" in self.text:
            self.agent_message("Let me look at the repository.")
            self.status = "stuck"
            return
        if "MANY" in self.text:
            for i in range(150):
                self.agent_message("line %d\n" % i)
        self.event("ActionEvent", "agent", tool_name="FileEditorTool", tool_call_id="call_2",
                   thought=[], action={"kind": "FileEditorAction", "command": "str_replace",
                                       "path": "/w/README.md"},
                   summary="fix the typo in the README")
        self.event("AgentErrorEvent", "agent", tool_name="FileEditorTool",
                   tool_call_id="call_2", error="old_str not found; retrying")
        self.agent_message("I fixed the typo.")
        self.final = "Done: the README typo is fixed."
        self.cost, self.prompt_tokens, self.completion_tokens = 0.0125, 2400, 310
        self.status = "finished"

    def info(self):
        llm = dict(((self.request.get("agent") or {}).get("llm")) or {})
        llm.pop("api_key", None)
        return {
            "id": self.id,
            "execution_status": self.status,
            "workspace": {"kind": "LocalWorkspace",
                          "working_dir": (self.request.get("workspace") or {}).get(
                              "working_dir")},
            "agent": {"kind": "Agent", "llm": llm,
                      "tools": (self.request.get("agent") or {}).get("tools", [])},
            "max_iterations": self.request.get("max_iterations", 500),
            "stats": {"usage_to_metrics": {
                "agent": {"model_name": llm.get("model", "default"),
                          "accumulated_cost": self.cost,
                          "accumulated_token_usage": {
                              "model": llm.get("model", ""),
                              "prompt_tokens": self.prompt_tokens,
                              "completion_tokens": self.completion_tokens,
                              "cache_read_tokens": 0, "cache_write_tokens": 0,
                              "reasoning_tokens": 0, "context_window": 0,
                              "per_turn_token": 0, "response_id": ""}}}},
            "created_at": now_iso(),
            "updated_at": now_iso(),
        }


class State:
    def __init__(self, key, polls):
        self.key = key
        self.polls = polls
        self.lock = threading.Lock()
        self.conversations = {}
        self.requests = []


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state = None  # set in main

    def log_message(self, fmt, *args):
        pass

    def send_json(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a cancelled call); nothing to tell it

    def handle_any(self, method):
        st = self.state
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                return self.send_json(400, {"detail": "body is not JSON"})
        path = url.path
        with st.lock:
            if path == "/_control/requests":
                return self.send_json(200, st.requests)
            st.requests.append({"method": method, "path": path, "query": query,
                                "session_key": self.headers.get("X-Session-API-Key"),
                                "body": body})
            if path in ("/alive", "/health") and method == "GET":
                return self.send_json(200, {"status": "ok"})
            if not path.startswith("/api/"):
                return self.send_json(404, {"detail": "Not Found"})
            if st.key and self.headers.get("X-Session-API-Key") != st.key:
                return self.send_json(401, {"detail": "Unauthorized"})
            parts = path.strip("/").split("/")  # api conversations [id [sub...]]
            if parts[:2] != ["api", "conversations"]:
                return self.send_json(404, {"detail": "Not Found"})
            rest = parts[2:]
            if not rest and method == "POST":
                return self.create(body)
            if rest == ["search"] and method == "GET":
                items = [c.info() for c in st.conversations.values()]
                limit = int(query.get("limit", 100))
                return self.send_json(200, {"items": items[:limit], "next_page_id": None})
            if not rest:
                return self.send_json(405, {"detail": "Method Not Allowed"})
            conv = st.conversations.get(rest[0])
            if conv is None:
                return self.send_json(404, {"detail": "Not Found"})
            sub = rest[1:]
            if not sub and method == "GET":
                conv.advance(st.polls)
                return self.send_json(200, conv.info())
            if not sub and method == "DELETE":
                del st.conversations[conv.id]
                return self.send_json(200, {"success": True})
            if sub == ["pause"] and method == "POST":
                conv.paused = True
                conv.status = "paused"
                return self.send_json(200, {"success": True})
            if sub == ["agent_final_response"] and method == "GET":
                return self.send_json(200, {"response": conv.final})
            if sub == ["events", "search"] and method == "GET":
                return self.search_events(conv, query)
            return self.send_json(404, {"detail": "Not Found"})

    def create(self, body):
        st = self.state
        if not isinstance(body, dict):
            return self.send_json(422, {"detail": "body must be an object"})
        problems = []
        agent = body.get("agent") or {}
        llm = agent.get("llm") or {}
        if not llm.get("model"):
            problems.append("agent.llm.model is required")
        if not isinstance(agent.get("tools", []), list) or any(
                not isinstance(t, dict) or not t.get("name") for t in agent.get("tools", [])):
            problems.append("agent.tools must be a list of {name, params}")
        wd = (body.get("workspace") or {}).get("working_dir")
        if not wd:
            problems.append("workspace.working_dir is required")
        msg = body.get("initial_message") or {}
        content = msg.get("content")
        if not isinstance(content, list) or not content or content[0].get("type") != "text":
            problems.append("initial_message.content must be a list of text parts")
        if problems:
            return self.send_json(422, {"detail": [{"msg": p} for p in problems]})
        cid = body.get("conversation_id") or str(uuid.uuid4())
        if cid in st.conversations:
            return self.send_json(200, st.conversations[cid].info())
        conv = Conversation(cid, body)
        st.conversations[cid] = conv
        return self.send_json(201, conv.info())

    def search_events(self, conv, query):
        limit = int(query.get("limit", 100))
        if limit < 1 or limit > 100:
            return self.send_json(422, {"detail": "limit must be 1..100"})
        start = 0
        page_id = query.get("page_id")
        if page_id:
            for i, ev in enumerate(conv.events):
                if ev["id"] == page_id:
                    start = i
                    break
        items = conv.events[start:start + limit]
        nxt = conv.events[start + limit]["id"] if start + limit < len(conv.events) else None
        return self.send_json(200, {"items": items, "next_page_id": nxt})

    def do_GET(self):
        self.handle_any("GET")

    def do_POST(self):
        self.handle_any("POST")

    def do_DELETE(self):
        self.handle_any("DELETE")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--session-key", default=None)
    ap.add_argument("--polls", type=int, default=2,
                    help="GETs of a conversation until it reaches its terminal status")
    args = ap.parse_args()
    Handler.state = State(args.session_key, args.polls)
    # a burst of new connections must not wait for a SYN retry (the default backlog is 5)
    ThreadingHTTPServer.request_queue_size = 128
    srv = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    srv.daemon_threads = True
    print("PORT %d" % srv.server_address[1], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
