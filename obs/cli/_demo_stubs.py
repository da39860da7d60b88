"""The local stand-ins `obs demo` talks to: one small HTTP server on 127.0.0.1, so nothing leaves the machine.

It answers, in the shape the real services use:

- ``POST /v1/chat/completions`` as OpenAI (a ``ChatCompletion``, or with ``"stream": true`` SSE chunks with
  the usage last when ``stream_options.include_usage`` asks for it);
- ``POST /v1/messages`` as Anthropic (a ``Message``);
- ``POST /flags/`` as PostHog's flags endpoint (v2 ``flags`` records for the keys asked).

Every reply says :data:`REPLY` with fixed token counts, so the demo's summary is the same on every run.
This is a demo prop, not a test server: it has no scripting, no error replies and no recording.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

REPLY = "Your order ships on Monday."
INPUT_TOKENS = 42
OUTPUT_TOKENS = 7
JSON = dict[str, Any]


def chat_completion(model: str) -> JSON:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": REPLY, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": _openai_usage(),
    }


def chat_chunks(model: str, include_usage: bool) -> list[JSON]:
    """The SSE chunks of a streamed chat completion: the role, one delta per word, the finish, the usage."""
    base = {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }

    def chunk(delta: JSON, finish: str | None = None) -> JSON:
        c: JSON = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        if include_usage:
            c["usage"] = None
        return c

    words = [w + " " for w in REPLY.split(" ")]
    words[-1] = words[-1].rstrip()
    out = [chunk({"role": "assistant", "content": ""})]
    out += [chunk({"content": w}) for w in words]
    out.append(chunk({}, "stop"))
    if include_usage:
        out.append({**base, "choices": [], "usage": _openai_usage()})
    return out


def _openai_usage() -> JSON:
    return {
        "prompt_tokens": INPUT_TOKENS,
        "completion_tokens": OUTPUT_TOKENS,
        "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS,
    }


def anthropic_message(model: str) -> JSON:
    return {
        "id": f"msg_{uuid.uuid4().hex[:24]}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": REPLY}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": OUTPUT_TOKENS},
    }


def flags_answer(flags: dict[str, bool | str], asked: list[str]) -> JSON:
    """PostHog's v2 ``/flags`` answer for the ``asked`` keys this server knows."""
    records = {
        key: {
            "key": key,
            "enabled": bool(flags[key]),
            "variant": flags[key] if isinstance(flags[key], str) else None,
            "reason": {"code": "condition_match", "description": "Matched condition set 1"},
            "metadata": {"id": 1, "version": 1, "payload": None},
        }
        for key in asked
        if key in flags
    }
    return {"flags": records, "errorsWhileComputingFlags": False, "requestId": str(uuid.uuid4())}


class StubServer:
    """The stubs above on ``127.0.0.1`` (a free port), served from a daemon thread until :meth:`close`."""

    def __init__(self, flags: dict[str, bool | str]) -> None:
        flag_values = dict(flags)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # the demo's output is its own
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                path = self.path.split("?", 1)[0].rstrip("/")
                model = str(body.get("model") or "")
                if path.endswith("/chat/completions") and body.get("stream"):
                    options = body.get("stream_options") or {}
                    self._sse(chat_chunks(model, bool(options.get("include_usage"))))
                elif path.endswith("/chat/completions"):
                    self._json(200, chat_completion(model))
                elif path.endswith("/v1/messages"):
                    self._json(200, anthropic_message(model))
                elif path == "/flags":
                    self._json(200, flags_answer(flag_values, list(body.get("flag_keys_to_evaluate") or [])))
                else:
                    self._json(404, {"error": {"message": f"the demo stub does not serve {path}"}})

            def _json(self, status: int, obj: JSON) -> None:
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _sse(self, chunks: list[JSON]) -> None:
                data = b"".join(b"data: %s\n\n" % json.dumps(c).encode() for c in chunks)
                data += b"data: [DONE]\n\n"
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="obs-demo-stubs", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
