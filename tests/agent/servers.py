"""Loopback HTTP servers for the agent tests: one speaks OpenAI chat completions, one
Anthropic messages. Each replays a scripted list of replies, one per request, and
records every request, so a test drives the REAL SDK clients (base_url pointed here)
through a scripted tool-calling conversation and then reads what the client sent.

Bound to 127.0.0.1:0 (a free port), served from a thread; nothing leaves the machine.
A request past the end of the script gets HTTP 400 (not retried by the SDKs), so an
over-long conversation fails the test instead of hanging it.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    body: dict[str, Any]
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Request:
    path: str
    headers: dict[str, str]  # names lower-cased
    body: dict[str, Any]

    @property
    def text(self) -> str:
        """The body as JSON text, for `in` checks."""
        return json.dumps(self.body)


class ScriptedServer:
    """Replays `replies` in order; `path_suffix` is the endpoint it answers."""

    path_suffix = "/"

    def __init__(self, replies: list[Reply]) -> None:
        self.replies = list(replies)
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else {}
                with server._lock:
                    server.requests.append(Request(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    index = len(server.requests) - 1
                if not self.path.endswith(server.path_suffix):
                    reply = Reply({"error": {"message": f"unexpected path {self.path}"}}, status=404)
                elif index < len(server.replies):
                    reply = server.replies[index]
                else:
                    reply = Reply({"error": {"type": "invalid_request_error",
                                             "message": f"script exhausted after {len(server.replies)} replies"}},
                                  status=400)  # fmt: skip
                data = json.dumps(reply.body).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


# -- OpenAI chat completions ----------------------------------------------------------------


class OpenAIServer(ScriptedServer):
    path_suffix = "/chat/completions"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


def openai_reply(calls: list[tuple[str, dict | str]] = (), text: str | None = None,
                 usage: tuple[int, int] = (100, 20), model: str = "scripted-model") -> Reply:  # fmt: skip
    """A chat completion with tool calls `(name, arguments)`; arguments as a dict, or as a
    raw string (to send malformed JSON)."""
    tool_calls = [
        {"id": f"call_{i}_{name}", "type": "function",
         "function": {"name": name, "arguments": args if isinstance(args, str) else json.dumps(args)}}
        for i, (name, args) in enumerate(calls)
    ]  # fmt: skip
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return Reply({
        "id": "chatcmpl-scripted", "object": "chat.completion", "created": 0, "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if tool_calls else "stop"}],
        "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)},
    })  # fmt: skip


def openai_error(status: int, message: str = "slow down", headers: dict[str, str] | None = None) -> Reply:
    return Reply({"error": {"message": message, "type": "rate_limit_error" if status == 429 else "error"}},
                 status=status, headers=headers or {})  # fmt: skip


# -- Anthropic messages ---------------------------------------------------------------------


class AnthropicServer(ScriptedServer):
    path_suffix = "/v1/messages"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def anthropic_reply(calls: list[tuple[str, dict]] = (), text: str | None = None,
                    usage: tuple[int, int] = (100, 20), model: str = "scripted-claude") -> Reply:  # fmt: skip
    content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    content += [{"type": "tool_use", "id": f"toolu_{i}_{name}", "name": name, "input": args}
                for i, (name, args) in enumerate(calls)]  # fmt: skip
    return Reply({
        "id": "msg_scripted", "type": "message", "role": "assistant", "model": model, "content": content,
        "stop_reason": "tool_use" if calls else "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": usage[0], "output_tokens": usage[1]},
    })  # fmt: skip


def anthropic_error(status: int, message: str = "slow down", headers: dict[str, str] | None = None) -> Reply:
    kind = "rate_limit_error" if status == 429 else "invalid_request_error"
    return Reply({"type": "error", "error": {"type": kind, "message": message}}, status=status, headers=headers or {})


# A server-directed retry delay of a few milliseconds keeps the 429 tests fast; both SDKs
# honour `retry-after-ms` before their own exponential backoff.
FAST_RETRY = {"retry-after-ms": "5"}
