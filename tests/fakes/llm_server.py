#!/usr/bin/env python3
"""llm_server.py - a scripted fake LLM server for baton's tests (standard library only).

It speaks, on 127.0.0.1, just enough of each provider's wire format for baton's HTTP agent
adapters and for the genuine Claude Code / Codex CLIs to run against it offline
(../../shared/reference/api-reference.md section 4 and real-cli.md):

  POST /v1/chat/completions, /chat/completions  OpenAI-compatible (SSE with [DONE], or JSON)
  POST /v1/messages                              Anthropic Messages (named SSE events, or JSON);
                                                 plays Claude Code's two-turn Write tool loop
  POST /v1/responses                             OpenAI Responses API (Codex's apply_patch or
                                                 exec_command tool loop)
  POST /api/chat                                 Ollama native (NDJSON, or one object)
  GET  /api/tags, POST /api/pull, DELETE /api/delete, GET /api/ps, GET /api/version
  GET  /health, /v1/health                       llama.cpp (200, or 503 "Loading model")
  GET  /v1/models, /models                       OpenAI-style list of the model set
  anything else (HEAD / included)                404 JSON

Usage:
  python3 llm_server.py [--port 0] [--log FILE] [--models a,b] [--workdir DIR]
                        [--exit-on-stdin-eof]
prints "PORT <n>" on its own line once listening, then serves until SIGTERM/SIGINT (or EOF
on stdin with --exit-on-stdin-eof).

Control endpoints (never logged themselves):
  POST /_control/script   {"path": "/v1/chat/completions" | "*", "actions": [ACTION, ...]}
                          queue actions, consumed one per matching request in order; "*"
                          matches any model endpoint (chat/messages/responses/api/chat) that
                          has no action queued for its exact path. An action may carry
                          "times": N to be used for N requests.
  GET  /_control/requests the request log: [{"method","path","query","headers" (names in
                          lower case),"body" (parsed JSON, else text),"time" (epoch s)}]
  POST /_control/reset    clear the log and every queued action
ACTION keys (combinable where it makes sense):
  {"status":429,"headers":{"Retry-After":"1"},"body":{...}|"text"}  an error reply (the body
                          defaults to the provider's error shape for that status)
  {"reply":"text","usage":{"input":N,"output":M}}  scripted text and usage
  {"chunk_delay_ms":N}    stream pieces N ms apart (chunked transfer encoding)
  {"hang":true}           read the request, send nothing, hold the connection
  {"garbage":true}        200 with a body that is not JSON / not valid SSE
  {"truncate":true}       stream some text, then end the body before the terminal marker
  {"error_event":"overloaded_error"}  200, some text, then Anthropic's error event (Ollama:
                          an {"error":...} line; Responses: response.failed; OpenAI: the
                          stream just stops)
  {"tool_call":{"name":"f","arguments":{...}}}  answer with a tool call
  {"loading":true}        503 {"error":{"code":503,"message":"Loading model",...}} (llama.cpp)
  {"quota":true}          429 insufficient_quota (OpenAI) / enforced_spend_limit_reached
                          (Anthropic) / "insufficient_quota" (Ollama)

Defaults: the reply is "fake reply to: <first 60 characters of the last user message>";
usage input = number of whitespace-separated words in all message texts (plus the system
prompt / instructions), output = words in the reply (25 for a tool-call turn). Without
delays a whole response goes out with a Content-Length (the form the real CLIs were
verified with); with chunk_delay_ms it is sent with chunked transfer encoding.
"""

import argparse
import hashlib
import json
import os
import re
import select
import signal
import socket
import sys
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

MODEL_PATHS = ("/v1/chat/completions", "/chat/completions", "/v1/messages", "/v1/responses",
               "/api/chat")
CWD_PATTERNS = (re.compile(r" - Primary working directory: ([^\n]+)"),
                re.compile(r"CWD: ([^\n]+)"),
                re.compile(r"<cwd>([^<]+)</cwd>"))


class State:
    def __init__(self, models, workdir, log_path):
        self.lock = threading.Lock()
        self.log = []
        self.scripts = {}
        self.models = list(models)
        self.used = {}  # model -> last /api/chat time
        self.workdir = workdir
        self.log_file = open(log_path, "a", encoding="utf-8") if log_path else None
        self.counter = 0
        self.stopping = threading.Event()

    def next_id(self):
        with self.lock:
            self.counter += 1
            return self.counter

    def record(self, entry):
        with self.lock:
            self.log.append(entry)
            if self.log_file:
                self.log_file.write(json.dumps(entry) + "\n")
                self.log_file.flush()

    def take(self, path):
        with self.lock:
            for key in (path, "*"):
                if key == "*" and path not in MODEL_PATHS:
                    continue
                q = self.scripts.get(key)
                if q:
                    action = q[0]
                    left = action.get("times", 1) - 1
                    if left > 0:
                        action["times"] = left
                    else:
                        q.popleft()
                    return action
        return {}


def words(text):
    return len(text.split()) if isinstance(text, str) else 0


def text_of(content):
    """The text of a message content: a string or a list of blocks/parts."""
    if isinstance(content, str):
        return content
    out = []
    if isinstance(content, list):
        for part in content:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, dict):
                for key in ("text", "content", "output", "input"):
                    v = part.get(key)
                    if isinstance(v, str):
                        out.append(v)
                    elif isinstance(v, list):
                        out.append(text_of(v))
    return " ".join(out)


def piece_split(text):
    """Split text into stream pieces: words with their trailing spaces."""
    parts = re.findall(r"\S+\s*|\s+", text)
    return parts or [""]


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % int((t % 1) * 1000)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes
    server_version = "fake-llm/1"
    state = None  # set in main

    def log_message(self, fmt, *args):  # quiet
        pass

    # ---- plumbing ----

    def read_body(self):
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            data = b""
            while True:
                line = self.rfile.readline()
                n = int(line.split(b";")[0].strip() or b"0", 16)
                if n == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(n)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def begin(self):
        u = urlsplit(self.path)
        self.route = u.path
        self.query = u.query
        raw = self.read_body()
        try:
            self.body = json.loads(raw) if raw else None
        except ValueError:
            self.body = raw.decode("utf-8", "replace")
        if not isinstance(self.body, dict):
            self.json = {}
        else:
            self.json = self.body
        if not self.route.startswith("/_control/"):
            self.state.record({"method": self.command, "path": self.route, "query": self.query,
                               "headers": {k.lower(): v for k, v in self.headers.items()},
                               "body": self.body, "time": time.time()})

    headers_sent = False

    def send_response(self, code, message=None):
        self.headers_sent = True
        super().send_response(code, message)

    def send_whole(self, status, body, ctype="application/json", headers=None):
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()

    def send_stream(self, ctype, pieces, delay_ms, status=200):
        """pieces: list of str/bytes. Without a delay: one body with Content-Length."""
        pieces = [p.encode() if isinstance(p, str) else p for p in pieces]
        if not delay_ms:
            self.send_whole(status, b"".join(pieces), ctype,
                            {"Cache-Control": "no-cache"})
            return
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        try:
            for i, p in enumerate(pieces):
                if i:
                    time.sleep(delay_ms / 1000.0)
                if p:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(p), p))
                    self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def hang(self):
        """Send nothing; hold until the client goes away or the server stops."""
        self.close_connection = True
        sock = self.connection
        deadline = time.time() + 600
        while time.time() < deadline and not self.state.stopping.is_set():
            r, _, _ = select.select([sock], [], [], 0.1)
            if r:
                try:
                    if not sock.recv(1, socket.MSG_PEEK):
                        return
                except OSError:
                    return

    def error_reply(self, action, kind):
        status = int(action.get("status", 500))
        headers = action.get("headers") or {}
        body = action.get("body")
        if body is None:
            body = default_error(kind, status)
        ctype = "application/json" if isinstance(body, (dict, list)) else "text/plain"
        self.send_whole(status, body, ctype, headers)

    def common_action(self, action, kind):
        """Handle the actions every model endpoint shares; True when answered."""
        if action.get("hang"):
            self.hang()
            return True
        if action.get("loading"):
            self.send_whole(503, {"error": {"code": 503, "message": "Loading model",
                                            "type": "unavailable_error"}})
            return True
        if action.get("quota"):
            self.send_whole(429, quota_error(kind), "application/json", action.get("headers"))
            return True
        if "status" in action and int(action["status"]) >= 300:
            self.error_reply(action, kind)
            return True
        return False

    # ---- dispatch ----

    def do_GET(self):
        self.dispatch()

    def do_POST(self):
        self.dispatch()

    def do_DELETE(self):
        self.dispatch()

    def do_HEAD(self):
        self.dispatch()

    def do_PUT(self):
        self.dispatch()

    def do_PATCH(self):
        self.dispatch()

    def dispatch(self):
        try:
            self.begin()
            m, p = self.command, self.route
            routes = {
                ("POST", "/_control/script"): self.ctl_script,
                ("GET", "/_control/requests"): self.ctl_requests,
                ("POST", "/_control/reset"): self.ctl_reset,
                ("POST", "/v1/chat/completions"): self.chat_completions,
                ("POST", "/chat/completions"): self.chat_completions,
                ("POST", "/v1/messages"): self.messages,
                ("POST", "/v1/responses"): self.openai_responses,
                ("POST", "/api/chat"): self.ollama_chat,
                ("GET", "/api/tags"): self.ollama_tags,
                ("POST", "/api/pull"): self.ollama_pull,
                ("DELETE", "/api/delete"): self.ollama_delete,
                ("GET", "/api/ps"): self.ollama_ps,
                ("GET", "/api/version"): self.ollama_version,
                ("GET", "/health"): self.health,
                ("GET", "/v1/health"): self.health,
                ("GET", "/v1/models"): self.model_list,
                ("GET", "/models"): self.model_list,
            }
            fn = routes.get((m, p))
            if fn is None:
                self.send_whole(404, {"error": {"message": "not found: %s %s" % (m, p),
                                                "type": "not_found_error"}})
                return
            fn()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception:  # a bug in the fake: say so instead of closing silently
            import traceback
            traceback.print_exc()
            self.close_connection = True
            if not self.headers_sent:
                self.send_whole(500, {"error": {"message": "fake server bug: "
                                                + traceback.format_exc(limit=1),
                                                "type": "fake_bug"}})

    # ---- control ----

    def ctl_script(self):
        path = self.json.get("path") or "*"
        actions = self.json.get("actions") or []
        if not isinstance(actions, list):
            self.send_whole(400, {"error": "actions must be a list"})
            return
        with self.state.lock:
            q = self.state.scripts.setdefault(path, deque())
            q.extend(a if isinstance(a, dict) else {} for a in actions)
            n = len(q)
        self.send_whole(200, {"ok": True, "path": path, "queued": n})

    def ctl_requests(self):
        with self.state.lock:
            log = list(self.state.log)
        self.send_whole(200, log)

    def ctl_reset(self):
        with self.state.lock:
            self.state.log.clear()
            self.state.scripts.clear()
        self.send_whole(200, {"ok": True})

    # ---- shared reply logic ----

    def last_user_text(self, messages):
        for msg in reversed(messages or []):
            if isinstance(msg, dict) and msg.get("role") == "user":
                return text_of(msg.get("content"))
        return ""

    def default_reply(self, action, last_user):
        if "reply" in action:
            return str(action["reply"])
        return "fake reply to: " + last_user[:60]

    def usage_of(self, action, input_words, reply, tool=False):
        u = action.get("usage") or {}
        inp = int(u.get("input", input_words))
        out = int(u.get("output", 25 if tool else words(reply)))
        return inp, out

    # ---- OpenAI chat completions ----

    def chat_completions(self):
        action = self.state.take(self.route)
        if self.common_action(action, "openai"):
            return
        b = self.json
        model = b.get("model") or "fake-model"
        messages = b.get("messages") or []
        in_words = sum(words(text_of(m.get("content"))) for m in messages if isinstance(m, dict))
        reply = self.default_reply(action, self.last_user_text(messages))
        tool = action.get("tool_call")
        inp, out = self.usage_of(action, in_words, "" if tool else reply, bool(tool))
        cid = "chatcmpl-fake-%d" % self.state.next_id()
        created = int(time.time())
        usage = {"prompt_tokens": inp, "completion_tokens": out, "total_tokens": inp + out}
        if action.get("garbage"):
            if b.get("stream"):
                self.send_stream("text/event-stream",
                                 ["data: {\"id\": \"x\", \"choices\": [{\"delta\": {\"con",
                                  "\n\n<html>502 Bad Gateway</html>\n\n"], 0)
            else:
                self.send_whole(200, "<html><body>this is not JSON</body></html>", "text/html")
            return
        tool_calls = None
        if tool:
            args = json.dumps(tool.get("arguments", {}))
            tool_calls = [{"id": "call_1", "type": "function",
                           "function": {"name": tool.get("name", "f"), "arguments": args}}]
        if not b.get("stream"):
            msg = {"role": "assistant", "content": None if tool else reply}
            if tool_calls:
                msg["tool_calls"] = tool_calls
            self.send_whole(200, {"id": cid, "object": "chat.completion", "created": created,
                                  "model": model,
                                  "choices": [{"index": 0, "message": msg, "logprobs": None,
                                               "finish_reason": "tool_calls" if tool else "stop"}],
                                  "usage": usage})
            return
        include_usage = bool((b.get("stream_options") or {}).get("include_usage"))

        def chunk(delta, finish=None, choices=True):
            c = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model}
            c["choices"] = [{"index": 0, "delta": delta, "logprobs": None,
                             "finish_reason": finish}] if choices else []
            if include_usage:
                c["usage"] = None
            return "data: " + json.dumps(c) + "\n\n"

        events = [chunk({"role": "assistant", "content": ""})]
        if tool:
            args = tool_calls[0]["function"]["arguments"]
            half = len(args) // 2
            events.append(chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                                 "function": {"name": tool.get("name", "f"),
                                                              "arguments": ""}}]}))
            for part in (args[:half], args[half:]):
                events.append(chunk({"tool_calls": [{"index": 0,
                                                     "function": {"arguments": part}}]}))
            finish = "tool_calls"
        else:
            for p in piece_split(reply):
                events.append(chunk({"content": p}))
            finish = "stop"
        cut = action.get("truncate") or action.get("error_event")
        if cut:
            events = events[:max(2, len(events) // 2 + 1)]
        else:
            events.append(chunk({}, finish))
            if include_usage:
                u = {"id": cid, "object": "chat.completion.chunk", "created": created,
                     "model": model, "choices": [], "usage": usage}
                events.append("data: " + json.dumps(u) + "\n\n")
            events.append("data: [DONE]\n\n")
        self.send_stream("text/event-stream", events, action.get("chunk_delay_ms", 0))

    # ---- Anthropic messages ----

    def claude_cwd(self, system):
        for pat in CWD_PATTERNS[:2]:
            m = pat.search(system)
            if m:
                return m.group(1).strip()
        return self.state.workdir or os.getcwd()

    def messages(self):
        action = self.state.take(self.route)
        if self.common_action(action, "anthropic"):
            return
        b = self.json
        model = b.get("model") or "fake-model"
        messages = b.get("messages") or []
        system = text_of(b.get("system"))
        in_words = words(system) + sum(words(text_of(m.get("content")))
                                       for m in messages if isinstance(m, dict))
        tools = [t.get("name") for t in (b.get("tools") or []) if isinstance(t, dict)]
        has_result = any(isinstance(blk, dict) and blk.get("type") == "tool_result"
                         for m in messages if isinstance(m, dict)
                         and isinstance(m.get("content"), list) for blk in m["content"])
        blocks = []  # (type, payload): ("text", str) or ("tool_use", (name, input dict))
        scripted_tool = action.get("tool_call")
        reply = None
        if scripted_tool:
            blocks.append(("tool_use", (scripted_tool.get("name", "f"),
                                        scripted_tool.get("arguments", {}))))
        elif ("Write" in tools or "Edit" in tools) and not has_result and "reply" not in action:
            path = os.path.join(self.claude_cwd(system), "hello.txt")
            if "Write" in tools:
                blocks.append(("tool_use", ("Write", {"file_path": path, "content": "hi\n"})))
            else:
                blocks.append(("tool_use", ("Edit", {"file_path": path, "old_string": "",
                                                     "new_string": "hi\n"})))
        elif ("Write" in tools or "Edit" in tools) and "reply" not in action:
            reply = "Created hello.txt containing hi."
        elif not tools and "reply" not in action and "title" in json.dumps(
                b.get("output_config") or {}):
            reply = json.dumps({"title": "Fake session title"})
        else:
            reply = self.default_reply(action, self.last_user_text(messages))
        if reply is not None:
            blocks.append(("text", reply))
        is_tool = any(k == "tool_use" for k, _ in blocks)
        inp, out = self.usage_of(action, in_words, reply or "", is_tool)
        mid = "msg_fake%06d" % self.state.next_id()
        stop = "tool_use" if is_tool else "end_turn"
        if action.get("garbage"):
            if b.get("stream"):
                self.send_stream("text/event-stream",
                                 ["event: message_start\ndata: {\"type\": \"message_sta",
                                  "\n\n<html>upstream error</html>\n\n"], 0)
            else:
                self.send_whole(200, "<html><body>this is not JSON</body></html>", "text/html")
            return
        content = []
        for i, (kind, payload) in enumerate(blocks):
            if kind == "text":
                content.append({"type": "text", "text": payload})
            else:
                content.append({"type": "tool_use", "id": "toolu_fake%06d_%d" % (self.state.next_id(), i),
                                "name": payload[0], "input": payload[1]})
        usage_full = {"input_tokens": inp, "output_tokens": out,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        if not b.get("stream"):
            self.send_whole(200, {"id": mid, "type": "message", "role": "assistant",
                                  "model": model, "content": content, "stop_reason": stop,
                                  "stop_sequence": None, "usage": usage_full})
            return

        def ev(name, data):
            data = dict(type=name, **data)
            return "event: %s\ndata: %s\n\n" % (name, json.dumps(data))

        events = [ev("message_start", {"message": {
            "id": mid, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": inp, "output_tokens": 1,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}}),
            ev("ping", {})]
        for i, blk in enumerate(content):
            if blk["type"] == "text":
                events.append(ev("content_block_start",
                                 {"index": i, "content_block": {"type": "text", "text": ""}}))
                for p in piece_split(blk["text"]):
                    events.append(ev("content_block_delta", {"index": i, "delta": {
                        "type": "text_delta", "text": p}}))
            else:
                events.append(ev("content_block_start", {"index": i, "content_block": {
                    "type": "tool_use", "id": blk["id"], "name": blk["name"], "input": {}}}))
                js = json.dumps(blk["input"])
                half = len(js) // 2
                for part in (js[:half], js[half:]):
                    events.append(ev("content_block_delta", {"index": i, "delta": {
                        "type": "input_json_delta", "partial_json": part}}))
            events.append(ev("content_block_stop", {"index": i}))
        events.append(ev("message_delta", {"delta": {"stop_reason": stop, "stop_sequence": None},
                                           "usage": {"output_tokens": out}}))
        events.append(ev("message_stop", {}))
        if action.get("error_event") or action.get("truncate"):
            events = events[:4]  # message_start, ping, block start, first delta
            if action.get("error_event"):
                etype = action["error_event"]
                etype = etype if isinstance(etype, str) else "overloaded_error"
                msg = {"overloaded_error": "Overloaded", "api_error": "Internal server error"}
                events.append(ev("error", {"error": {"type": etype,
                                                     "message": msg.get(etype, etype)}}))
        self.send_stream("text/event-stream", events, action.get("chunk_delay_ms", 0))

    # ---- OpenAI Responses (Codex) ----

    def openai_responses(self):
        action = self.state.take(self.route)
        if self.common_action(action, "openai"):
            return
        b = self.json
        model = b.get("model") or "fake-model"
        items = b.get("input") if isinstance(b.get("input"), list) else []
        if isinstance(b.get("input"), str):
            items = [{"type": "message", "role": "user", "content": b["input"]}]
        in_words = words(b.get("instructions") or "") + sum(
            words(text_of(it.get("content"))) + words(it.get("output") if isinstance(
                it.get("output"), str) else "") for it in items if isinstance(it, dict))
        has_output = any(isinstance(it, dict) and it.get("type") in (
            "function_call_output", "custom_tool_call_output") for it in items)
        tools = [t.get("name") for t in (b.get("tools") or []) if isinstance(t, dict)]
        n = self.state.next_id()
        scripted_tool = action.get("tool_call")
        item = None
        reply = None
        if scripted_tool:
            item = {"type": "function_call", "id": "fc_fake%06d" % n, "call_id": "call_1",
                    "name": scripted_tool.get("name", "f"),
                    "arguments": json.dumps(scripted_tool.get("arguments", {})),
                    "status": "completed"}
        elif not has_output and "reply" not in action and "apply_patch" in tools:
            item = {"type": "custom_tool_call", "id": "ctc_fake%06d" % n, "call_id": "call_1",
                    "name": "apply_patch", "status": "completed",
                    "input": "*** Begin Patch\n*** Add File: hello.txt\n+hi\n*** End Patch\n"}
        elif not has_output and "reply" not in action and "exec_command" in tools:
            item = {"type": "function_call", "id": "fc_fake%06d" % n, "call_id": "call_1",
                    "name": "exec_command", "status": "completed",
                    "arguments": json.dumps({"cmd": "printf 'hi\n' > hello.txt"})}
        else:
            if has_output and "reply" not in action:
                reply = "Created hello.txt containing hi."
            else:
                last = ""
                for it in reversed(items):
                    if isinstance(it, dict) and it.get("role") == "user":
                        last = text_of(it.get("content"))
                        break
                reply = self.default_reply(action, last)
            item = {"type": "message", "id": "msg_fake%06d" % n, "role": "assistant",
                    "status": "completed",
                    "content": [{"type": "output_text", "text": reply, "annotations": []}]}
        inp, out = self.usage_of(action, in_words, reply or "", reply is None)
        rid = "resp_fake%06d" % n
        created = int(time.time())
        usage = {"input_tokens": inp, "input_tokens_details": {"cached_tokens": 0},
                 "output_tokens": out, "output_tokens_details": {"reasoning_tokens": 0},
                 "total_tokens": inp + out}
        done = {"id": rid, "object": "response", "created_at": created, "status": "completed",
                "model": model, "output": [item], "usage": usage}
        if action.get("garbage"):
            self.send_stream("text/event-stream", ["event: response.created\ndata: {oops\n\n"], 0)
            return
        if not b.get("stream"):
            self.send_whole(200, done)
            return
        seq = [0]

        def ev(name, data):
            data = dict(type=name, **data)
            data["sequence_number"] = seq[0]
            seq[0] += 1
            return "event: %s\ndata: %s\n\n" % (name, json.dumps(data))

        started = dict(item, status="in_progress")
        if item["type"] == "message":
            started["content"] = []
        events = [ev("response.created", {"response": {
            "id": rid, "object": "response", "created_at": created, "status": "in_progress",
            "model": model, "output": []}}),
            ev("response.output_item.added", {"output_index": 0, "item": started})]
        if reply is not None:
            for p in piece_split(reply):
                events.append(ev("response.output_text.delta", {
                    "item_id": item["id"], "output_index": 0, "content_index": 0, "delta": p}))
        events.append(ev("response.output_item.done", {"output_index": 0, "item": item}))
        events.append(ev("response.completed", {"response": done}))
        if action.get("truncate"):
            events = events[:-1]
        elif action.get("error_event"):
            events = events[:-1]
            events.append(ev("response.failed", {"response": dict(
                done, status="failed", output=[],
                error={"code": "server_error", "message": str(action["error_event"])})}))
        self.send_stream("text/event-stream", events, action.get("chunk_delay_ms", 0))

    # ---- Ollama ----

    def ollama_chat(self):
        action = self.state.take(self.route)
        if self.common_action(action, "ollama"):
            return
        b = self.json
        model = b.get("model") or ""
        with self.state.lock:
            known = model in self.state.models
            if known:
                self.state.used[model] = time.time()
        if not known:
            self.send_whole(404, {"error": "model \"%s\" not found, try pulling it first" % model})
            return
        messages = b.get("messages") or []
        in_words = sum(words(text_of(m.get("content"))) for m in messages if isinstance(m, dict))
        reply = self.default_reply(action, self.last_user_text(messages))
        tool = action.get("tool_call")
        inp, out = self.usage_of(action, in_words, "" if tool else reply, bool(tool))
        stream = b.get("stream", True) is not False
        if action.get("garbage"):
            self.send_stream("application/x-ndjson", ["this is not json\n", "<html>\n"], 0)
            return
        now = time.time()
        final = {"model": model, "created_at": iso(now),
                 "message": {"role": "assistant", "content": ""}, "done": True,
                 "done_reason": "stop", "total_duration": 123456789, "load_duration": 1234567,
                 "prompt_eval_count": inp, "prompt_eval_duration": 2345678, "eval_count": out,
                 "eval_duration": 98765432}
        calls = None
        if tool:
            calls = [{"function": {"name": tool.get("name", "f"),
                                   "arguments": tool.get("arguments", {})}}]
        if not stream:
            msg = {"role": "assistant", "content": "" if tool else reply}
            if calls:
                msg["tool_calls"] = calls
            self.send_whole(200, dict(final, message=msg))
            return
        lines = []
        if tool:
            lines.append({"model": model, "created_at": iso(now),
                          "message": {"role": "assistant", "content": "", "tool_calls": calls},
                          "done": False})
        else:
            for p in piece_split(reply):
                lines.append({"model": model, "created_at": iso(now),
                              "message": {"role": "assistant", "content": p}, "done": False})
        if action.get("truncate") or action.get("error_event"):
            lines = lines[:max(1, len(lines) // 2)]
            if action.get("error_event"):
                e = action["error_event"]
                lines.append({"error": e if isinstance(e, str) else
                              "an error was encountered while running the model"})
        else:
            lines.append(final)
        self.send_stream("application/x-ndjson", [json.dumps(x) + "\n" for x in lines],
                         action.get("chunk_delay_ms", 0))

    def model_entry(self, name):
        digest = hashlib.sha256(name.encode()).hexdigest()
        family = re.split(r"[:\d.]", name)[0] or "fake"
        size_tag = name.split(":")[1] if ":" in name else "latest"
        return {"name": name, "model": name, "modified_at": "2025-01-01T00:00:00Z",
                "size": 1000000 + len(name) * 1000, "digest": digest,
                "details": {"format": "gguf", "family": family, "families": [family],
                            "parameter_size": size_tag.upper(), "quantization_level": "Q4_K_M"}}

    def ollama_tags(self):
        action = self.state.take(self.route)
        if self.common_action(action, "ollama"):
            return
        with self.state.lock:
            names = list(self.state.models)
        self.send_whole(200, {"models": [self.model_entry(n) for n in names]})

    def ollama_pull(self):
        action = self.state.take(self.route)
        if self.common_action(action, "ollama"):
            return
        name = self.json.get("model") or self.json.get("name") or ""
        stream = self.json.get("stream", True) is not False
        if not name:
            self.send_whole(400, {"error": "model is required"})
            return
        if "missing" in name:
            lines = [{"status": "pulling manifest"},
                     {"error": "pull model manifest: file does not exist"}]
            if not stream:
                self.send_whole(500, {"error": "pull model manifest: file does not exist"})
                return
        else:
            digest = "sha256:" + hashlib.sha256(name.encode()).hexdigest()
            total = 1000000 + len(name) * 1000
            lines = [{"status": "pulling manifest"},
                     {"status": "downloading " + digest, "digest": digest, "total": total}]
            for frac in (0.25, 0.5, 0.75, 1.0):
                lines.append({"status": "downloading " + digest, "digest": digest,
                              "total": total, "completed": int(total * frac)})
            lines += [{"status": "verifying sha256 digest"}, {"status": "writing manifest"},
                      {"status": "removing any unused layers"}, {"status": "success"}]
            with self.state.lock:
                if name not in self.state.models:
                    self.state.models.append(name)
            if not stream:
                self.send_whole(200, {"status": "success"})
                return
        self.send_stream("application/x-ndjson", [json.dumps(x) + "\n" for x in lines],
                         action.get("chunk_delay_ms", 0))

    def ollama_delete(self):
        action = self.state.take(self.route)
        if self.common_action(action, "ollama"):
            return
        name = self.json.get("model") or self.json.get("name") or ""
        with self.state.lock:
            if name in self.state.models:
                self.state.models.remove(name)
                self.state.used.pop(name, None)
                found = True
            else:
                found = False
        if found:
            self.send_whole(200, b"", "application/json")
        else:
            self.send_whole(404, {"error": "model '%s' not found" % name})

    def ollama_ps(self):
        now = time.time()
        with self.state.lock:
            live = [(n, t) for n, t in self.state.used.items()
                    if now - t < 300 and n in self.state.models]
        out = []
        for n, t in live:
            e = self.model_entry(n)
            out.append({"name": n, "model": n, "size": e["size"], "digest": e["digest"],
                        "details": e["details"], "expires_at": iso(t + 300),
                        "size_vram": e["size"]})
        self.send_whole(200, {"models": out})

    def ollama_version(self):
        self.send_whole(200, {"version": "0.12.6"})

    # ---- llama.cpp / model lists ----

    def health(self):
        action = self.state.take(self.route)
        if action.get("loading"):
            self.send_whole(503, {"error": {"code": 503, "message": "Loading model",
                                            "type": "unavailable_error"}})
            return
        if self.common_action(action, "openai"):
            return
        self.send_whole(200, {"status": "ok"})

    def model_list(self):
        action = self.state.take(self.route)
        if self.common_action(action, "openai"):
            return
        with self.state.lock:
            names = list(self.state.models)
        self.send_whole(200, {"object": "list", "data": [
            {"id": n, "object": "model", "type": "model", "display_name": n,
             "created": 1700000000, "created_at": "2025-01-01T00:00:00Z", "owned_by": "fake"}
            for n in names], "has_more": False})


def default_error(kind, status):
    """The provider's error document for an HTTP status."""
    text = {400: "invalid request", 401: "invalid x-api-key" if kind == "anthropic"
            else "Incorrect API key provided", 403: "permission denied",
            404: "not found", 408: "request timeout", 413: "request too large",
            429: "Rate limit reached; please retry after a moment",
            500: "internal server error", 502: "bad gateway", 503: "service unavailable",
            529: "Overloaded"}.get(status, "error %d" % status)
    if kind == "anthropic":
        etype = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
                 403: "permission_error", 404: "not_found_error", 413: "request_too_large",
                 429: "rate_limit_error", 529: "overloaded_error"}.get(status, "api_error")
        return {"type": "error", "error": {"type": etype, "message": text},
                "request_id": "req_fake"}
    if kind == "ollama":
        return {"error": text}
    etype = {400: "invalid_request_error", 401: "invalid_request_error",
             429: "rate_limit_exceeded"}.get(status, "server_error")
    code = {401: "invalid_api_key", 429: "rate_limit_exceeded"}.get(status)
    return {"error": {"message": text, "type": etype, "param": None, "code": code}}


def quota_error(kind):
    if kind == "anthropic":
        return {"type": "error", "error": {
            "type": "rate_limit_error",
            "message": "You have reached your specified API usage limits.",
            "details": {"error_code": "enforced_spend_limit_reached"}}, "request_id": "req_fake"}
    if kind == "ollama":
        return {"error": "insufficient_quota: you exceeded your current quota"}
    return {"error": {"message": "You exceeded your current quota, please check your plan and "
                                 "billing details.", "type": "insufficient_quota", "param": None,
                      "code": "insufficient_quota"}}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--log", default=None)
    ap.add_argument("--models", default="qwen2.5-coder:7b,llama3.2:1b")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--exit-on-stdin-eof", action="store_true")
    args = ap.parse_args()

    models = [m for m in args.models.split(",") if m]
    state = State(models, args.workdir, args.log)
    Handler.state = state
    ThreadingHTTPServer.allow_reuse_address = True
    ThreadingHTTPServer.daemon_threads = True
    # a burst of new connections must not wait for a SYN retry (the default backlog is 5)
    ThreadingHTTPServer.request_queue_size = 128
    srv = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)

    def stop(*_):
        state.stopping.set()
        threading.Thread(target=srv.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.exit_on_stdin_eof:
        def watch():
            try:
                while sys.stdin.buffer.read(4096):
                    pass
            except OSError:
                pass
            stop()
        threading.Thread(target=watch, daemon=True).start()

    print("PORT %d" % srv.server_address[1], flush=True)
    try:
        srv.serve_forever(poll_interval=0.1)
    finally:
        state.stopping.set()
        srv.server_close()
        if state.log_file:
            state.log_file.close()


if __name__ == "__main__":
    main()
