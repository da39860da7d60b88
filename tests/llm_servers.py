"""A local OpenAI- and Anthropic-shaped HTTP server for tests, on 127.0.0.1 only.

The real `openai` and `anthropic` clients, pointed at it through `base_url`, work end to end (JSON and SSE
streaming), so tests of LLM tracing need no mocks:

    with LLMServer() as srv:
        srv.script(LLMReply(text="Hi there", input_tokens=5))
        client = openai.OpenAI(base_url=srv.openai_base_url, api_key="sk-test", max_retries=0)
        anthropic.Anthropic(base_url=srv.anthropic_base_url, api_key="sk-ant-test", max_retries=0)

Endpoints (a leading `/v1` is optional; a query string is ignored):

- `POST /v1/chat/completions`: a `ChatCompletion`; with `"stream": true` SSE `data:` chunks: a first chunk
  with the role, one content delta per word, per tool call a header delta (id, name, empty arguments) then
  argument fragments, a finish chunk, then, only if `stream_options.include_usage` is true, a `"choices": []`
  chunk with the usage (with include_usage every other chunk carries `"usage": null`), and `data: [DONE]`.
- `POST /v1/responses`: a `Response` (a `message` item with `output_text` when `text` is not empty, then one
  `function_call` item per tool call); with `"stream": true` the `event:`/`data:` sequence response.created,
  response.in_progress, then per item response.output_item.added, (message) response.content_part.added,
  response.output_text.delta per word, response.output_text.done, response.content_part.done, (function call)
  response.function_call_arguments.delta per fragment, response.function_call_arguments.done, then
  response.output_item.done, and last response.completed carrying the usage. Every event has a
  `sequence_number`.
  A request with no `model` (a stored `prompt`) gets the reply's model or the default OpenAI model.
- `POST /v1/embeddings`: one small deterministic float32 vector per input (`dimensions` long, default 8),
  base64-encoded when `encoding_format` is "base64" (what the installed client sends unless told otherwise).
- `POST /v1/messages`: an Anthropic `Message` (a `text` block when `text` is not empty, then one `tool_use`
  block per tool call); with `"stream": true` the events message_start (usage: input and cache tokens,
  output_tokens 1), content_block_start, ping (after the first content_block_start), content_block_delta
  (`text_delta` per word; `input_json_delta` for tool_use: an empty `partial_json` first, as the real API
  sends, then fragments), content_block_stop, message_delta (stop_reason, usage {output_tokens}),
  message_stop.
- `POST /v1/messages/count_tokens`: `{"input_tokens": reply.input_tokens}`.
- Anything else: 404 with the provider's error body; it is recorded but does not use up a scripted reply.

`LLMReply` (every field optional) says how to answer one request:

- `text`: split into stream deltas, one per word; a word keeps its trailing spaces, concatenation gives `text`
  back (`split_words(text)` gives them). Set `text=""` for a reply made only of tool calls.
- `model`: the response's model; default the request's model, else `DEFAULT_OPENAI_MODEL`,
  `DEFAULT_ANTHROPIC_MODEL` (or `DEFAULT_EMBEDDING_MODEL` for embeddings).
- `input_tokens`, `output_tokens` (default: the number of stream deltas — words plus tool-argument fragments,
  not counting Anthropic's empty first `partial_json` — plus `reasoning_tokens`), `cached_tokens` (OpenAI
  `prompt_tokens_details.cached_tokens` / `input_tokens_details.cached_tokens`, Anthropic
  `cache_read_input_tokens`), `cache_write_tokens` (Anthropic `cache_creation_input_tokens`, OpenAI Responses
  `input_tokens_details.cache_write_tokens`), `reasoning_tokens` (OpenAI `reasoning_tokens` details).
- `tool_calls`: `(name, arguments)` pairs: OpenAI `tool_calls` (finish_reason "tool_calls"), Responses
  `function_call` items, Anthropic `tool_use` blocks (stop_reason "tool_use"). Arguments are streamed as the
  word-split fragments of their JSON text.
- `status`: anything but 2xx answers, at once and also for streaming requests, the provider's error body.
  OpenAI: `{"error": {"message", "type", "param", "code"}}`, see `OPENAI_ERRORS` (400/401/403/404/409/422
  invalid_request_error, 429 type "requests" code "rate_limit_exceeded" as the real API sends, 5xx
  server_error). Anthropic: `{"type": "error", "error": {"type", "message"}, "request_id"}`, see
  `ANTHROPIC_ERRORS` (400 invalid_request_error, 401 authentication_error, 402 billing_error, 403
  permission_error, 404 not_found_error, 413 request_too_large, 429 rate_limit_error, 500 api_error, 504
  timeout_error, 529 overloaded_error, other 5xx api_error). `error_type` / `error_message` override the type
  and message. Error replies carry `x-should-retry: false` unless `headers` names that header, so clients do
  not retry.
- `web_searches`: web searches the model made: OpenAI chat a `url_citation` annotation on the message (the
  first stream delta), Responses `web_search_call` items before the others, Anthropic
  `usage.server_tool_use.web_search_requests` (message and message_delta usage).
- `id_seed`: any string makes every id of the answer (tool calls, messages, the request id header and
  Anthropic's error `request_id`) a function of it, so one reply served twice answers alike; default random.
- `headers`: extra response headers (added to the defaults: content-type and `x-request-id` / `request-id`).
- `delay`: seconds to sleep before answering (client timeouts).
- `break_after`: streaming: write the headers (chunked) and this many SSE events (every `event:`/`data:`
  block counts, Anthropic's ping too; `data: [DONE]` is never sent), then shut the socket down with no final
  chunk, so the client sees a broken stream. Non-streaming: the headers and half the JSON body, then the same.
- `event_delay`: seconds to sleep between SSE events. Every event is written (and sent) on its own.

`LLMServer` (a context manager; it serves from construction until `close()`):

- `url`, `openai_base_url` (`url + "/v1"`), `anthropic_base_url` (`url`).
- `script(*replies)`: FIFO; each request to a known endpoint takes one; when empty, `default` (an `LLMReply()`
  unless a test sets it) answers.
- `requests`: every `Recorded` request (method, path without query, headers with lower-cased keys, `body`
  parsed JSON object or None — also readable as `.json` —, `raw` bytes, `at` = `time.monotonic()` on arrival,
  recorded before any delay or answer). `wait_for_requests(n, timeout)` waits for them.
- `close()`: stops serving and shuts down open connections (idempotent).

Run it alone with `python tests/llm_servers.py`: it prints its URL and serves until stdin closes.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import math
import re
import socket
import struct
import sys
import threading
import time
import uuid
import zlib
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

DEFAULT_OPENAI_MODEL = "gpt-4o-mini-2024-07-18"
DEFAULT_ANTHROPIC_MODEL = "claude-sonnet-4-5-20250929"
DEFAULT_EMBEDDING_MODEL = "text-embedding-3-small"
DEFAULT_EMBEDDING_DIMENSIONS = 8

# status -> (type, code, message) of OpenAI's error body
OPENAI_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Permission denied."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist."),
    409: ("invalid_request_error", None, "Conflict."),
    422: ("invalid_request_error", None, "Unprocessable entity."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests."),
    500: ("server_error", None, "The server had an error while processing your request."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}
# status -> (type, message) of Anthropic's error body
ANTHROPIC_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Billing error."),
    403: ("permission_error", "Permission denied."),
    404: ("not_found_error", "Not found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your rate limit."),
    500: ("api_error", "Internal server error"),
    504: ("timeout_error", "Request timed out."),
    529: ("overloaded_error", "Overloaded"),
}

JSONObject = dict[str, Any]
_SSE = tuple[str | None, JSONObject]  # (event name or None for data-only, payload)


@dataclass
class LLMReply:
    """How to answer one request (see the module docstring)."""

    text: str = "Hello from the local model"
    model: str | None = None
    input_tokens: int = 12
    output_tokens: int | None = None
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    break_after: int | None = None
    event_delay: float = 0.0
    error_type: str | None = None
    error_message: str | None = None
    id_seed: str | None = None
    web_searches: int = 0


@dataclass
class Recorded:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: JSONObject | None
    at: float
    raw: bytes = b""

    @property
    def json(self) -> JSONObject | None:
        return self.body


def split_words(text: str) -> list[str]:
    """The stream deltas of `text`: one per word, each keeping its trailing spaces (leading spaces alone)."""
    return re.findall(r"^ +|[^ ]+ *", text)


def _id(prefix: str, n: int = 24) -> str:
    return prefix + uuid.uuid4().hex[:n]


class _Ids:
    """The ids of one answer: random, or with `LLMReply.id_seed` the same each time the reply is served."""

    def __init__(self, seed: str | None) -> None:
        self.seed = seed
        self.n = 0

    def __call__(self, prefix: str, n: int = 24) -> str:
        if self.seed is None:
            return _id(prefix, n)
        self.n += 1
        return prefix + hashlib.sha256(f"{self.seed}/{self.n}".encode()).hexdigest()[:n]


def _dumps(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"))


@dataclass
class _Call:
    """A tool call as it goes on the wire."""

    name: str
    arguments: dict[str, Any]
    text: str  # JSON text of the arguments
    fragments: list[str]
    call_id: str  # OpenAI call_..., Anthropic toolu_...
    item_id: str  # Responses fc_...


class _Plan:
    """Everything derived from one (reply, request) pair that the provider shapes share."""

    def __init__(self, reply: LLMReply, body: JSONObject, default_model: str, tool_prefix: str) -> None:
        self.reply = reply
        self.body = body
        self.ids = _Ids(reply.id_seed)
        requested = body.get("model")
        self.model = reply.model or (requested if isinstance(requested, str) and requested else default_model)
        self.words = split_words(reply.text)
        self.calls: list[_Call] = []
        for name, args in reply.tool_calls:
            text = json.dumps(args)  # default separators: a space after ':' and ',' gives word fragments
            self.calls.append(
                _Call(name, args, text, split_words(text), self.ids(tool_prefix), self.ids("fc_"))
            )
        deltas = len(self.words) + sum(len(c.fragments) for c in self.calls)
        self.output_tokens = (
            reply.output_tokens if reply.output_tokens is not None else deltas + reply.reasoning_tokens
        )
        self.created = int(time.time())


# --------------------------------------------------------------------------------------------- OpenAI chat
def _chat_usage(p: _Plan) -> JSONObject:
    r = p.reply
    prompt_details: JSONObject = {"cached_tokens": r.cached_tokens, "audio_tokens": 0}
    if r.cache_write_tokens:
        prompt_details["cache_write_tokens"] = r.cache_write_tokens
    return {
        "prompt_tokens": r.input_tokens,
        "completion_tokens": p.output_tokens,
        "total_tokens": r.input_tokens + p.output_tokens,
        "prompt_tokens_details": prompt_details,
        "completion_tokens_details": {
            "reasoning_tokens": r.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _chat_base(p: _Plan, obj: str, cid: str) -> JSONObject:
    return {
        "id": cid,
        "object": obj,
        "created": p.created,
        "model": p.model,
        "service_tier": "default",
        "system_fingerprint": "fp_local",
    }


def _citations(p: _Plan) -> list[JSONObject]:
    cite = {"url": "https://example.com/weather", "title": "Weather", "start_index": 0, "end_index": 5}
    return [{"type": "url_citation", "url_citation": cite}] if p.reply.web_searches else []


def _chat_completion(p: _Plan) -> JSONObject:
    message: JSONObject = {
        "role": "assistant",
        "content": p.reply.text if p.reply.text or not p.calls else None,
        "refusal": None,
        "annotations": _citations(p),
    }
    if p.calls:
        message["tool_calls"] = [
            {"id": c.call_id, "type": "function", "function": {"name": c.name, "arguments": c.text}}
            for c in p.calls
        ]
    return {
        **_chat_base(p, "chat.completion", p.ids("chatcmpl-")),
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": "tool_calls" if p.calls else "stop",
            }
        ],
        "usage": _chat_usage(p),
    }


def _chat_chunks(p: _Plan) -> list[_SSE]:
    options = p.body.get("stream_options")
    include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
    base = _chat_base(p, "chat.completion.chunk", p.ids("chatcmpl-"))

    def chunk(delta: JSONObject, finish: str | None = None) -> _SSE:
        c: JSONObject = {
            **base,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            c["usage"] = None
        return None, c

    first: JSONObject = {
        "role": "assistant",
        "content": "" if p.words or not p.calls else None,
        "refusal": None,
    }
    if p.reply.web_searches:
        first["annotations"] = _citations(p)
    out = [chunk(first)]
    out += [chunk({"content": w}) for w in p.words]
    for i, c in enumerate(p.calls):
        header = {
            "index": i,
            "id": c.call_id,
            "type": "function",
            "function": {"name": c.name, "arguments": ""},
        }
        out.append(chunk({"tool_calls": [header]}))
        out += [chunk({"tool_calls": [{"index": i, "function": {"arguments": f}}]}) for f in c.fragments]
    out.append(chunk({}, "tool_calls" if p.calls else "stop"))
    if include_usage:
        out.append((None, {**base, "choices": [], "usage": _chat_usage(p)}))
    return out


# --------------------------------------------------------------------------------------- OpenAI responses
def _responses_usage(p: _Plan) -> JSONObject:
    r = p.reply
    return {
        "input_tokens": r.input_tokens,
        "input_tokens_details": {
            "cached_tokens": r.cached_tokens,
            "cache_write_tokens": r.cache_write_tokens,
        },
        "output_tokens": p.output_tokens,
        "output_tokens_details": {"reasoning_tokens": r.reasoning_tokens},
        "total_tokens": r.input_tokens + p.output_tokens,
    }


class _ResponseShape:
    def __init__(self, p: _Plan) -> None:
        self.p = p
        self.id = p.ids("resp_")
        self.msg_id = p.ids("msg_")

    def message_item(self, text: str, status: str) -> JSONObject:
        content = [self.text_part(text)] if status == "completed" else []
        return {
            "id": self.msg_id,
            "type": "message",
            "status": status,
            "role": "assistant",
            "content": content,
        }

    @staticmethod
    def text_part(text: str) -> JSONObject:
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}

    @staticmethod
    def call_item(c: _Call, status: str) -> JSONObject:
        return {
            "id": c.item_id,
            "type": "function_call",
            "status": status,
            "arguments": c.text if status == "completed" else "",
            "call_id": c.call_id,
            "name": c.name,
        }

    def searches(self) -> list[JSONObject]:
        return [
            {
                "id": f"ws_{i}",
                "type": "web_search_call",
                "status": "completed",
                "action": {"type": "search", "query": "weather"},
            }
            for i in range(self.p.reply.web_searches)
        ]

    def output(self) -> list[JSONObject]:
        items = [self.message_item(self.p.reply.text, "completed")] if self.p.words else []
        return self.searches() + items + [self.call_item(c, "completed") for c in self.p.calls]

    def response(self, *, done: bool) -> JSONObject:
        b = self.p.body
        resp: JSONObject = {
            "id": self.id,
            "object": "response",
            "created_at": self.p.created,
            "status": "completed" if done else "in_progress",
            "background": bool(b.get("background", False)),
            "completed_at": int(time.time()) if done else None,
            "error": None,
            "incomplete_details": None,
            "instructions": b.get("instructions"),
            "max_output_tokens": b.get("max_output_tokens"),
            "max_tool_calls": b.get("max_tool_calls"),
            "model": self.p.model,
            "output": self.output() if done else [],
            "parallel_tool_calls": b.get("parallel_tool_calls", True),
            "previous_response_id": b.get("previous_response_id"),
            "reasoning": b.get("reasoning") or {"effort": None, "summary": None},
            "service_tier": "default",
            "store": b.get("store", True),
            "temperature": b.get("temperature", 1.0),
            "text": b.get("text") or {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": b.get("tool_choice", "auto"),
            "tools": b.get("tools") or [],
            "top_logprobs": b.get("top_logprobs", 0),
            "top_p": b.get("top_p", 1.0),
            "truncation": b.get("truncation", "disabled"),
            "usage": _responses_usage(self.p) if done else None,
            "user": b.get("user"),
            "metadata": b.get("metadata") or {},
        }
        if isinstance(b.get("prompt"), dict):
            resp["prompt"] = b["prompt"]
        return resp

    def events(self) -> list[_SSE]:
        raw: list[JSONObject] = [
            {"type": "response.created", "response": self.response(done=False)},
            {"type": "response.in_progress", "response": self.response(done=False)},
        ]
        index = 0
        for item in self.searches():
            raw.append({"type": "response.output_item.added", "output_index": index, "item": item})
            raw.append({"type": "response.output_item.done", "output_index": index, "item": item})
            index += 1
        if self.p.words:
            text = self.p.reply.text
            at = {"item_id": self.msg_id, "output_index": index, "content_index": 0}
            raw.append(
                {
                    "type": "response.output_item.added",
                    "output_index": index,
                    "item": self.message_item("", "in_progress"),
                }
            )
            raw.append({"type": "response.content_part.added", **at, "part": self.text_part("")})
            raw += [
                {"type": "response.output_text.delta", **at, "delta": w, "logprobs": []} for w in self.p.words
            ]
            raw.append({"type": "response.output_text.done", **at, "text": text, "logprobs": []})
            raw.append({"type": "response.content_part.done", **at, "part": self.text_part(text)})
            raw.append(
                {
                    "type": "response.output_item.done",
                    "output_index": index,
                    "item": self.message_item(text, "completed"),
                }
            )
            index += 1
        for c in self.p.calls:
            at = {"item_id": c.item_id, "output_index": index}
            raw.append(
                {
                    "type": "response.output_item.added",
                    "output_index": index,
                    "item": self.call_item(c, "in_progress"),
                }
            )
            raw += [{"type": "response.function_call_arguments.delta", **at, "delta": f} for f in c.fragments]
            raw.append(
                {"type": "response.function_call_arguments.done", **at, "name": c.name, "arguments": c.text}
            )
            raw.append(
                {
                    "type": "response.output_item.done",
                    "output_index": index,
                    "item": self.call_item(c, "completed"),
                }
            )
            index += 1
        raw.append({"type": "response.completed", "response": self.response(done=True)})
        return [(e["type"], {**e, "sequence_number": i}) for i, e in enumerate(raw)]


# -------------------------------------------------------------------------------------- OpenAI embeddings
def _vector(seed_text: str, dims: int) -> list[float]:
    seed = zlib.crc32(seed_text.encode())
    values = [math.sin(seed + i) for i in range(dims)]
    # round-trip through float32 so the float and base64 forms carry the same numbers
    return list(struct.unpack(f"<{dims}f", struct.pack(f"<{dims}f", *values)))


def _embeddings(p: _Plan) -> JSONObject:
    inp = p.body.get("input")
    if isinstance(inp, str) or (isinstance(inp, list) and inp and all(isinstance(x, int) for x in inp)):
        inputs: list[Any] = [inp]
    elif isinstance(inp, list):
        inputs = inp
    else:
        inputs = [""]
    dims = p.body.get("dimensions")
    dims = dims if isinstance(dims, int) and dims > 0 else DEFAULT_EMBEDDING_DIMENSIONS
    b64 = p.body.get("encoding_format") == "base64"
    data = []
    for i, item in enumerate(inputs):
        vec = _vector(_dumps(item), dims)
        emb: list[float] | str = base64.b64encode(struct.pack(f"<{dims}f", *vec)).decode() if b64 else vec
        data.append({"object": "embedding", "index": i, "embedding": emb})
    tokens = p.reply.input_tokens
    return {
        "object": "list",
        "data": data,
        "model": p.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


# ---------------------------------------------------------------------------------------------- Anthropic
def _anthropic_usage(p: _Plan, output_tokens: int) -> JSONObject:
    r = p.reply
    return {
        "input_tokens": r.input_tokens,
        "cache_creation_input_tokens": r.cache_write_tokens,
        "cache_read_input_tokens": r.cached_tokens,
        "cache_creation": {"ephemeral_5m_input_tokens": r.cache_write_tokens, "ephemeral_1h_input_tokens": 0},
        "output_tokens": output_tokens,
        "service_tier": "standard",
        **_server_tools(p),
    }


def _server_tools(p: _Plan) -> JSONObject:
    n = p.reply.web_searches
    return {"server_tool_use": {"web_search_requests": n}} if n else {}


def _anthropic_shell(p: _Plan, mid: str, content: list[JSONObject], *, done: bool) -> JSONObject:
    return {
        "id": mid,
        "type": "message",
        "role": "assistant",
        "model": p.model,
        "content": content,
        "stop_reason": ("tool_use" if p.calls else "end_turn") if done else None,
        "stop_sequence": None,
        "usage": _anthropic_usage(p, p.output_tokens if done else 1),
    }


def _anthropic_message(p: _Plan) -> JSONObject:
    content: list[JSONObject] = [{"type": "text", "text": p.reply.text}] if p.words else []
    content += [{"type": "tool_use", "id": c.call_id, "name": c.name, "input": c.arguments} for c in p.calls]
    return _anthropic_shell(p, p.ids("msg_01"), content, done=True)


def _anthropic_events(p: _Plan) -> list[_SSE]:
    raw: list[JSONObject] = [
        {"type": "message_start", "message": _anthropic_shell(p, p.ids("msg_01"), [], done=False)}
    ]
    index = 0
    if p.words:
        raw.append(
            {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}
        )
        raw += [
            {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": w}}
            for w in p.words
        ]
        raw.append({"type": "content_block_stop", "index": index})
        index += 1
    for c in p.calls:
        block = {"type": "tool_use", "id": c.call_id, "name": c.name, "input": {}}
        raw.append({"type": "content_block_start", "index": index, "content_block": block})
        raw += [
            {
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": "input_json_delta", "partial_json": f},
            }
            for f in ["", *c.fragments]
        ]
        raw.append({"type": "content_block_stop", "index": index})
        index += 1
    raw.insert(2 if len(raw) > 1 else 1, {"type": "ping"})
    raw.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use" if p.calls else "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": p.output_tokens, **_server_tools(p)},
        }
    )
    raw.append({"type": "message_stop"})
    return [(e["type"], e) for e in raw]


# ------------------------------------------------------------------------------------------------- errors
def _openai_error(reply: LLMReply) -> JSONObject:
    s = reply.status
    default = OPENAI_ERRORS[500] if s >= 500 else OPENAI_ERRORS[400]
    etype, code, message = OPENAI_ERRORS.get(s, default)
    return {
        "error": {
            "message": reply.error_message or message,
            "type": reply.error_type or etype,
            "param": None,
            "code": code,
        }
    }


def _anthropic_error(reply: LLMReply, ids: _Ids) -> JSONObject:
    s = reply.status
    etype, message = ANTHROPIC_ERRORS.get(s, ANTHROPIC_ERRORS[500] if s >= 500 else ANTHROPIC_ERRORS[400])
    return {
        "type": "error",
        "error": {"type": reply.error_type or etype, "message": reply.error_message or message},
        "request_id": ids("req_011"),
    }


# ------------------------------------------------------------------------------------------------- server
class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    llm: LLMServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # a client that went away (timeouts, cancelled streams, dropped connections)
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # every SSE event leaves at once

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def llm(self) -> LLMServer:
        return cast(_HTTPServer, self.server).llm

    def setup(self) -> None:
        super().setup()
        self.llm._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.llm._track(self.connection, add=False)

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    # ---- plumbing
    def _serve(self) -> None:
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        body: JSONObject | None = None
        with contextlib.suppress(ValueError):
            parsed = json.loads(raw) if raw else None
            body = parsed if isinstance(parsed, dict) else None
        path = self.path.split("?", 1)[0]
        self.llm._record(
            Recorded(
                self.command,
                path,
                {k.lower(): v for k, v in self.headers.items()},
                body,
                time.monotonic(),
                raw,
            )
        )
        route = path.removeprefix("/v1")
        anthropic = route.startswith("/messages")
        known = self.command == "POST" and route in {
            "/chat/completions",
            "/responses",
            "/embeddings",
            "/messages",
            "/messages/count_tokens",
        }
        try:
            if not known:
                reply = LLMReply(status=404, error_message=f"Unknown endpoint {self.command} {path}")
                return self._answer_error(reply, anthropic)
            reply = self.llm._next_reply()
            if reply.delay:
                time.sleep(reply.delay)
            if not 200 <= reply.status < 300:
                return self._answer_error(reply, anthropic)
            req = body or {}
            stream = bool(req.get("stream"))
            if route == "/chat/completions":
                p = _Plan(reply, req, DEFAULT_OPENAI_MODEL, "call_")
                return (
                    self._sse(p, _chat_chunks(p), done=True) if stream else self._json(p, _chat_completion(p))
                )
            if route == "/responses":
                p = _Plan(reply, req, DEFAULT_OPENAI_MODEL, "call_")
                shape = _ResponseShape(p)
                return self._sse(p, shape.events()) if stream else self._json(p, shape.response(done=True))
            if route == "/embeddings":
                p = _Plan(reply, req, DEFAULT_EMBEDDING_MODEL, "call_")
                return self._json(p, _embeddings(p))
            p = _Plan(reply, req, DEFAULT_ANTHROPIC_MODEL, "toolu_01")
            if route == "/messages/count_tokens":
                return self._json(p, {"input_tokens": reply.input_tokens}, anthropic=True)
            if stream:
                return self._sse(p, _anthropic_events(p), anthropic=True)
            return self._json(p, _anthropic_message(p), anthropic=True)
        except OSError:
            self.close_connection = True  # the client went away

    def _headers(self, status: int, reply: LLMReply, content_type: str, anthropic: bool, ids: _Ids) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("request-id" if anthropic else "x-request-id", ids("req_"))
        for k, v in reply.headers.items():
            self.send_header(k, v)

    def _answer_error(self, reply: LLMReply, anthropic: bool) -> None:
        ids = _Ids(reply.id_seed)
        data = _dumps(_anthropic_error(reply, ids) if anthropic else _openai_error(reply)).encode()
        self._headers(reply.status, reply, "application/json", anthropic, ids)
        if "x-should-retry" not in {k.lower() for k in reply.headers}:
            self.send_header("x-should-retry", "false")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _json(self, p: _Plan, obj: JSONObject, *, anthropic: bool = False) -> None:
        data = _dumps(obj).encode()
        self._headers(p.reply.status, p.reply, "application/json", anthropic, p.ids)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if p.reply.break_after is not None:
            self.wfile.write(data[: len(data) // 2])
            return self._drop()
        self.wfile.write(data)

    def _sse(self, p: _Plan, events: list[_SSE], *, done: bool = False, anthropic: bool = False) -> None:
        reply = p.reply
        self._headers(reply.status, reply, "text/event-stream; charset=utf-8", anthropic, p.ids)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i, (name, payload) in enumerate(events):
            if reply.break_after is not None and i >= reply.break_after:
                return self._drop()
            if i and reply.event_delay:
                time.sleep(reply.event_delay)
            head = f"event: {name}\n" if name else ""
            self._chunk(f"{head}data: {_dumps(payload)}\n\n".encode())
        if reply.break_after is not None:
            return self._drop()
        if done:
            self._chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


class LLMServer:
    """OpenAI + Anthropic endpoints on 127.0.0.1 (see the module docstring)."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.default = LLMReply()
        self._script: deque[LLMReply] = deque()
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._conns: set[socket.socket] = set()
        self._closed = False
        self._httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.llm = self
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self.openai_base_url = self.url + "/v1"
        self.anthropic_base_url = self.url
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()

    def __enter__(self) -> LLMServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            conns = list(self._conns)
        self._httpd.shutdown()
        self._httpd.server_close()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def script(self, *replies: LLMReply) -> None:
        """Queue the answers for the next requests (FIFO); then back to `default`."""
        with self._lock:
            self._script.extend(replies)

    def wait_for_requests(self, n: int, timeout: float = 10.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.requests) >= n, timeout)

    # ---- used by the handler
    def _next_reply(self) -> LLMReply:
        with self._lock:
            return self._script.popleft() if self._script else self.default

    def _record(self, rec: Recorded) -> None:
        with self._cond:
            self.requests.append(rec)
            self._cond.notify_all()

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)


if __name__ == "__main__":  # a separate process: prints its URL, serves until stdin closes
    srv = LLMServer()
    print(srv.url, flush=True)
    while sys.stdin.readline():
        print(len(srv.requests), flush=True)
    srv.close()
