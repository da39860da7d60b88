"""What OpenAI and Anthropic calls look like: requests, responses and stream events, read into a Generation.

Every reader takes either the JSON the HTTP transport sees or the SDK's own objects (what a function under
``@trace_llm`` returns or yields), so one set of rules serves the integrations and the decorator. Shapes
read: OpenAI chat completions, Responses and embeddings; Anthropic messages; plain dicts with a ``usage``
block. Anything unrecognised is left alone: a reader never raises on an unexpected shape.

The values follow posthog-python's AI wrappers (7.91), so the same call gives the same `$ai_*` properties
whichever SDK sent it: `$ai_input` and `$ai_output_choices` in its message shapes (content as a list of
``{"type": "text"}`` / ``{"type": "function"}`` items; tool-call arguments as the provider sent them, a
JSON string for OpenAI and an object for Anthropic), its list of model parameters, its token counts and
stop reasons. tests/integrations/test_llm_parity.py holds both SDKs to it.
"""

from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._llm import Generation

# Request keys sent as `$ai_model_parameters`: posthog-python's list (`streaming` is LangChain's name).
PARAMS = (
    "temperature",
    "max_tokens",
    "max_completion_tokens",
    "top_p",
    "frequency_penalty",
    "presence_penalty",
    "n",
    "stop",
    "stream",
    "streaming",
)
# Responses API statuses that end a run; `queued` and `in_progress` do not.
_TERMINAL = frozenset({"completed", "failed", "cancelled", "incomplete"})
_TERMINAL_EVENTS = ("response.completed", "response.incomplete", "response.failed")
# Credentials an MCP tool definition carries for its remote server.
_MCP_SECRETS = ("headers", "authorization")
_MCP_PROVIDER_TOOLS = frozenset({"openai.mcp", "xai.mcp", "google.mcp_server"})


def g(obj: Any, key: str) -> Any:
    """``obj[key]`` for a dict, ``obj.key`` for an SDK object, None when absent."""
    if isinstance(obj, dict):
        return obj.get(key)
    return getattr(obj, key, None)


def _has(obj: Any, key: str) -> bool:
    return key in obj if isinstance(obj, dict) else hasattr(obj, key)


def plain(obj: Any, exclude_none: bool = True) -> Any:
    """An SDK object as plain data (pydantic models have ``model_dump``); a dict without its None values."""
    if isinstance(obj, dict):
        return {k: v for k, v in obj.items() if v is not None} if exclude_none else obj
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        try:
            return dump(exclude_none=exclude_none)
        except Exception:
            return None
    return obj


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def api_of(obj: Any) -> str | None:
    """Which API produced ``obj``: chat, responses, embeddings, messages, or usage (a dict with usage)."""
    kind = g(obj, "object")
    if kind == "chat.completion" or kind == "chat.completion.chunk":
        return "chat"
    if kind == "response":
        return "responses"
    if kind == "list" and g(obj, "data") is not None:
        return "embeddings"
    t = g(obj, "type")
    if t == "message" or (isinstance(t, str) and t.startswith(("message_", "content_block_"))):
        return "messages"
    if isinstance(t, str) and t.startswith("response."):
        return "responses"
    if g(obj, "usage") is not None:
        return "usage"
    return None


def provider_of(api: str | None) -> str | None:
    return {"chat": "openai", "responses": "openai", "embeddings": "openai", "messages": "anthropic"}.get(
        api or ""
    )


# ---------------------------------------------------------------- requests


def read_request(gen: Generation, api: str, body: dict[str, Any], helper: bool = False) -> None:
    """What the caller asked for: model, parameters, tools and (kept only with payloads on) the input.

    ``helper``: the request came from an SDK helper (``messages.stream``, ``chat.completions.parse``), which
    set ``stream`` itself: it is then not one of the caller's parameters.
    """
    gen.api = api
    gen.wire = True
    if gen.model is None and isinstance(body.get("model"), str) and body["model"]:
        gen.model = body["model"]
    if api == "embeddings":  # posthog-python sends no parameters, tools or stream state for these
        gen.set_input(body.get("input"))
        return
    params = {k: body[k] for k in PARAMS if body.get(k) is not None and not (helper and k == "stream")}
    gen.params = {**params, **(gen.params or {})}
    gen.stream = bool(body.get("stream"))
    tools = body.get("tools") if "tools" in body else body.get("functions")
    if tools:
        gen.tools = redact_mcp(tools)
    if gen.stream:
        gen.stream_state = _STREAMS[api]()
    if api == "messages":
        gen.set_input(_anthropic_input(body))
    else:
        gen.set_input(_openai_input(body))
        if api == "responses" and body.get("instructions") is not None and gen.payloads:
            gen.instructions = body["instructions"]


def _openai_input(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Chat messages, or the Responses API input, with ``instructions`` merged into the system message."""
    out: list[dict[str, Any]] = []
    for m in body.get("messages") or ():
        msg = plain(m)
        if not isinstance(msg, dict):
            msg = {"role": "user", "content": str(msg)}
        item = {"role": msg.get("role", "user"), "content": msg.get("content")}
        for key in ("tool_calls", "tool_call_id", "name", "audio", "refusal"):
            if msg.get(key) is not None:
                item[key] = msg[key]
        out.append(item)
    value = body.get("input")
    if isinstance(value, list):
        out += [_responses_input_item(item) for item in value]
    elif value is not None:
        out.append({"role": "user", "content": value if isinstance(value, str) else str(value)})
    instructions = body.get("instructions")
    if instructions is not None:
        system = next((m for m in out if m.get("role") == "system"), None)
        if system is not None:
            system["content"] = f"{system.get('content', '')}\n\n{instructions}"
        else:
            out.insert(0, {"role": "system", "content": instructions})
    return out


def _responses_input_item(item: Any) -> dict[str, Any]:
    if not isinstance(item, (dict, str)):
        item = plain(item)
    if isinstance(item, dict) and "type" in item and "role" not in item and "content" not in item:
        return plain(item)  # type: ignore[no-any-return]  # a function call or its output, as sent
    if isinstance(item, dict):
        return {"role": item.get("role", "user"), "content": item.get("content", "")}
    return {"role": "user", "content": item if isinstance(item, str) else str(item)}


def _anthropic_input(body: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if body.get("system") is not None:
        out.append({"role": "system", "content": body["system"]})
    for m in body.get("messages") or ():
        content = g(m, "content")
        if isinstance(content, list):
            content = [plain(part) for part in content]
        out.append({"role": g(m, "role") or "user", "content": "" if content is None else content})
    return out


def redact_mcp(tools: Any) -> Any:
    """Tool definitions with the credentials of MCP servers masked (the caller's list is not changed)."""
    if not isinstance(tools, (list, tuple)):
        return tools

    def hide(config: dict[str, Any]) -> dict[str, Any]:
        return {k: "[REDACTED]" if k in _MCP_SECRETS and v is not None else v for k, v in config.items()}

    out = []
    for tool in tools:
        if isinstance(tool, dict) and tool.get("type") == "mcp":
            tool = hide(tool)
        elif (
            isinstance(tool, dict)
            and tool.get("type") in ("provider", "provider-defined")
            and tool.get("id") in _MCP_PROVIDER_TOOLS
            and isinstance(tool.get("args"), dict)
        ):
            tool = {**tool, "args": hide(tool["args"])}
        out.append(tool)
    return out


# ---------------------------------------------------------------- whole responses


def read_response(gen: Generation, obj: Any, api: str | None = None) -> None:
    """A complete response (JSON or SDK object): model, usage, output, tool calls, stop reason."""
    api = api or api_of(obj)
    if api is None:
        return
    gen.api = gen.api or api
    if gen.provider is None:
        gen.provider = provider_of(api)
    model = g(obj, "model")
    if gen.model is None and isinstance(model, str):
        gen.model = model
    tier = g(obj, "service_tier")
    if isinstance(tier, str) and api != "messages":  # Anthropic reports its tier inside usage
        gen.service_tier = tier
    usage = g(obj, "usage")
    if api == "embeddings":
        gen.set_usage(input=g(usage, "prompt_tokens"))
        return
    if api == "messages":
        _anthropic_usage(gen, usage, "message")
        gen.web_search = _anthropic_web_search(usage) or gen.web_search
        gen.output = _messages_output(g(obj, "content") or ())
        gen.stop_reason = g(obj, "stop_reason") or gen.stop_reason
    elif api in ("chat", "responses"):
        _openai_usage(gen, usage, api)
        gen.web_search = web_search_count(obj) or gen.web_search
        if api == "chat":
            gen.output = _chat_output(g(obj, "choices") or ())
            choices = g(obj, "choices")
            if choices:
                gen.stop_reason = g(choices[0], "finish_reason") or gen.stop_reason
        else:
            gen.output = responses_output(g(obj, "output") or ())
            gen.stop_reason = responses_stop_reason(obj) or gen.stop_reason
    else:  # a dict or object with a usage block, in OpenAI's or Anthropic's names
        _any_usage(gen, usage)


def _any_usage(gen: Generation, usage: Any) -> None:
    if g(usage, "cache_read_input_tokens") is not None or g(usage, "cache_creation_input_tokens") is not None:
        _anthropic_usage(gen, usage, "message")
    else:
        _openai_usage(gen, usage, "chat" if g(usage, "prompt_tokens") is not None else "responses")


def _openai_usage(gen: Generation, usage: Any, api: str) -> None:
    """Token counts of a whole response: cache and reasoning counts only when above zero."""
    if usage is None:
        return
    gen.keep_usage(api, usage)
    if api == "chat":
        inp, out, details = g(usage, "prompt_tokens"), g(usage, "completion_tokens"), ("prompt", "completion")
    else:
        inp, out, details = g(usage, "input_tokens"), g(usage, "output_tokens"), ("input", "output")
    gen.set_usage(
        input=inp,
        output=out,
        cache_read=g(g(usage, f"{details[0]}_tokens_details"), "cached_tokens") or None,
        reasoning=g(g(usage, f"{details[1]}_tokens_details"), "reasoning_tokens") or None,
        exclusive=False,
    )


def _anthropic_usage(gen: Generation, usage: Any, kind: str) -> None:
    if usage is None:
        return
    gen.keep_usage(kind, usage)
    gen.set_usage(
        input=g(usage, "input_tokens"),
        output=g(usage, "output_tokens"),
        cache_read=g(usage, "cache_read_input_tokens") or None,
        cache_write=g(usage, "cache_creation_input_tokens") or None,
        reasoning=_thinking_tokens(usage) or None,
        exclusive=True,
    )


def _thinking_tokens(usage: Any) -> int:
    return _count(g(g(usage, "output_tokens_details"), "thinking_tokens")) or 0


def _anthropic_web_search(usage: Any) -> int | None:
    return _count(g(g(usage, "server_tool_use"), "web_search_requests")) or None


def web_search_count(obj: Any) -> int | None:
    """Web searches an OpenAI response made: Responses API search calls, else 1 when citations show one."""
    calls = sum(1 for item in g(obj, "output") or () if g(item, "type") == "web_search_call")
    if calls:
        return calls
    if g(obj, "citations") or g(obj, "search_results") or g(g(obj, "usage"), "search_context_size"):
        return 1
    for choice in g(obj, "choices") or ():
        if _cites(g(choice, "message")) or _cites(g(choice, "delta")):
            return 1
    for item in g(obj, "output") or ():
        content = g(item, "content")
        if isinstance(content, list) and any(_cites(part) for part in content):
            return 1
    return None


def _cites(obj: Any) -> bool:
    return any(g(a, "type") == "url_citation" for a in g(obj, "annotations") or ())


def responses_stop_reason(response: Any) -> str | None:
    """A finished Responses API run's status; for an incomplete one, what cut it short."""
    status = g(response, "status")
    if not isinstance(status, str) or status not in _TERMINAL:
        return None
    reason = g(g(response, "incomplete_details"), "reason")
    if status == "incomplete" and isinstance(reason, str) and reason:
        return reason
    return status


# ---------------------------------------------------------------- `$ai_output_choices`


def _function(call_id: Any, name: Any, arguments: Any) -> dict[str, Any]:
    return {"type": "function", "id": call_id, "function": {"name": name, "arguments": arguments}}


def _chat_output(choices: Any) -> list[dict[str, Any]]:
    content: list[Any] = []
    role = "assistant"
    for choice in choices:
        message = g(choice, "message")
        if not message:
            continue
        role = g(message, "role") or role
        if g(message, "content"):
            content.append({"type": "text", "text": g(message, "content")})
        if g(message, "refusal"):
            content.append({"type": "refusal", "refusal": g(message, "refusal")})
        for call in g(message, "tool_calls") or ():
            custom = g(call, "type") == "custom"  # free-form text in `custom.input`, no `function`
            fn = g(call, "custom" if custom else "function")
            if fn is not None:
                content.append(
                    _function(g(call, "id"), g(fn, "name"), g(fn, "input" if custom else "arguments"))
                )
        audio = g(message, "audio")
        if audio:
            content.append({"type": "audio", **(plain(audio, exclude_none=False) or {})})
    return [{"role": role, "content": content}] if content else []


def responses_output(items: Any) -> list[dict[str, Any]]:
    content: list[Any] = []
    role = "assistant"
    for item in items:
        kind = g(item, "type")
        if kind == "message":
            role = g(item, "role") or role
            parts = g(item, "content")
            if isinstance(parts, list):
                content += [p for p in map(_responses_part, parts) if p is not None]
            elif parts is not None:
                content.append({"type": "text", "text": str(parts)})
        elif kind == "function_call":
            call_id = g(item, "call_id")
            arguments = g(item, "arguments") if _has(item, "arguments") else {}
            content.append(
                _function(call_id if call_id is not None else g(item, "id") or "", g(item, "name"), arguments)
            )
        elif kind == "reasoning":
            content.append(plain(item))
        elif kind == "image_generation_call":
            content.append({"type": kind, "result": g(item, "result"), "status": g(item, "status")})
        elif kind is not None:
            p = plain(item)
            content.append(p if isinstance(p, dict) else {"type": kind})
    return [{"role": role, "content": content}] if content else []


def _responses_part(part: Any) -> dict[str, Any] | None:
    kind, text, refusal = g(part, "type"), g(part, "text"), g(part, "refusal")
    if kind == "refusal" and refusal is not None:
        return {"type": "refusal", "refusal": refusal}
    if text is not None:
        return {"type": "text", "text": text}
    if kind == "input_image" and g(part, "image_url") is not None:
        return {"type": "image", "image": g(part, "image_url")}
    return None


def _messages_output(blocks: Any) -> list[dict[str, Any]]:
    content: list[Any] = []
    for block in blocks:
        kind = g(block, "type")
        if kind == "text" and g(block, "text"):
            content.append({"type": "text", "text": g(block, "text")})
        elif kind == "tool_use" and _has(block, "name") and _has(block, "id"):
            arguments = g(block, "input") if _has(block, "input") else {}
            content.append(_function(g(block, "id"), g(block, "name"), arguments))
        elif kind == "thinking":
            content.append(
                {"type": kind, "thinking": g(block, "thinking"), "signature": g(block, "signature")}
            )
        elif kind == "redacted_thinking":
            content.append({"type": kind, "data": g(block, "data")})
        else:  # other blocks (an empty text, server tool results) as they came
            p = plain(block)
            if isinstance(p, dict) and p.get("type"):
                content.append(p)
    return [{"role": "assistant", "content": content}] if content else []


# ---------------------------------------------------------------- stream events


def read_event(gen: Generation, event: Any, api: str | None = None) -> bool:
    """One stream event or chunk. Returns False for an OpenAI chat chunk that only carries usage."""
    api = api or api_of(event)
    if api in ("chat", "responses", "messages"):
        if gen.provider is None:
            gen.provider = provider_of(api)
        gen.api = gen.api or api
        state = gen.stream_state
        if state is None:
            state = gen.stream_state = _STREAMS[api]()
        return state.event(gen, event)  # type: ignore[no-any-return]
    if isinstance(event, str):  # a generator yielding text
        gen.add_delta(event)
    return True


class ChatStream:
    """An OpenAI chat completion stream: text and tool calls per choice, usage from its usage chunk."""

    def __init__(self) -> None:
        self.text: dict[int, list[str]] = {}
        self.refusal: dict[int, list[str]] = {}
        self.calls: dict[int, dict[Any, dict[str, Any]]] = {}

    def event(self, gen: Generation, chunk: Any) -> bool:
        if gen.model is None and isinstance(g(chunk, "model"), str):
            gen.model = g(chunk, "model")
        tier = g(chunk, "service_tier")
        if gen.service_tier is None and isinstance(tier, str):
            gen.service_tier = tier
        searched = web_search_count(chunk)
        if searched:
            gen.web_search = max(gen.web_search or 0, searched)
        choices = g(chunk, "choices") or ()
        for choice in choices:
            index = g(choice, "index")
            index = index if isinstance(index, int) else 0
            delta = g(choice, "delta") or {}
            content, refusal = g(delta, "content"), g(delta, "refusal")
            if content:
                gen.add_delta("")
                self.text.setdefault(index, []).append(content)
            elif refusal:
                gen.add_delta("")
                self.refusal.setdefault(index, []).append(refusal)
            for call in g(delta, "tool_calls") or ():
                gen.add_delta("")
                self._tool_delta(self.calls.setdefault(index, {}), call)
            if index == 0 and g(choice, "finish_reason") is not None:
                gen.stop_reason = g(choice, "finish_reason")
        usage = g(chunk, "usage")
        if usage:
            gen.keep_usage("chat", usage)
            gen.set_usage(
                input=g(usage, "prompt_tokens"),
                output=g(usage, "completion_tokens"),
                cache_read=g(g(usage, "prompt_tokens_details"), "cached_tokens"),
                reasoning=g(g(usage, "completion_tokens_details"), "reasoning_tokens"),
                exclusive=False,
            )
        return bool(choices) or usage is None

    @staticmethod
    def _tool_delta(calls: dict[Any, dict[str, Any]], delta: Any) -> None:
        key = g(delta, "index")
        fn = g(delta, "function") or {}
        if key is None:  # some compatible providers send no index: match the id, else continue the last
            call_id = g(delta, "id")
            key = next((k for k, c in calls.items() if call_id and c["id"] == call_id), None)
            if key is None:
                key = (
                    next(reversed(calls)) if calls and not call_id and not g(fn, "name") else f"n{len(calls)}"
                )
        call = calls.setdefault(
            key, {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
        )
        for field in ("id", "type"):
            if g(delta, field):
                call[field] = g(delta, field)
        if g(fn, "name"):
            call["function"]["name"] = g(fn, "name")
        if g(fn, "arguments"):
            call["function"]["arguments"] += g(fn, "arguments")

    def output(self) -> list[dict[str, Any]]:
        content: list[Any] = []
        for index in sorted(set(self.text) | set(self.refusal) | set(self.calls)):
            if self.text.get(index):
                content.append({"type": "text", "text": "".join(self.text[index])})
            if self.refusal.get(index):
                content.append({"type": "refusal", "refusal": "".join(self.refusal[index])})
            for call in self.calls.get(index, {}).values():
                content.append({"type": "function", "id": call.get("id", ""), "function": call["function"]})
        return [{"role": "assistant", "content": content}]


class ResponsesStream:
    """A Responses API stream: everything is read from the response its terminal event carries."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    def event(self, gen: Generation, event: Any) -> bool:
        t = g(event, "type")
        response = g(event, "response")
        if response:
            if gen.model is None and isinstance(g(response, "model"), str):
                gen.model = g(response, "model")
            tier = g(response, "service_tier")
            if gen.service_tier is None and isinstance(tier, str):
                gen.service_tier = tier
            gen.stop_reason = responses_stop_reason(response) or gen.stop_reason
        if t in (
            "response.output_text.delta",
            "response.function_call_arguments.delta",
            "response.refusal.delta",
        ):
            gen.add_delta("")
        elif t in _TERMINAL_EVENTS and response:
            usage = g(response, "usage")
            if usage:
                gen.keep_usage("responses", usage)
                gen.set_usage(
                    input=g(usage, "input_tokens"),
                    output=g(usage, "output_tokens"),
                    cache_read=g(g(usage, "input_tokens_details"), "cached_tokens"),
                    reasoning=g(g(usage, "output_tokens_details"), "reasoning_tokens"),
                    exclusive=False,
                )
                gen.web_search = web_search_count(response) or gen.web_search
            self.items += list(g(response, "output") or ())
            gen.stream_done = True
        return True

    def output(self) -> list[dict[str, Any]]:
        return responses_output(self.items)


class MessagesStream:
    """An Anthropic message stream: content blocks by index, tool input JSON parsed when its block stops."""

    def __init__(self) -> None:
        self.blocks: list[dict[str, Any]] = []  # the blocks reported, in order
        self.by_index: list[dict[str, Any]] = []  # every block the stream started, reported or not
        self.current: dict[str, Any] | None = None  # the text or thinking block being written
        self.tool_json: dict[Any, str] = {}
        self.text = ""

    def event(self, gen: Generation, event: Any) -> bool:
        t = g(event, "type")
        delta = g(event, "delta")
        if t == "message_start":
            message = g(event, "message") or {}
            if gen.model is None and isinstance(g(message, "model"), str):
                gen.model = g(message, "model")
            usage = g(message, "usage")
            if usage is not None:
                gen.keep_usage("message", usage)
                gen.set_usage(
                    input=g(usage, "input_tokens"),
                    cache_read=g(usage, "cache_read_input_tokens"),
                    cache_write=g(usage, "cache_creation_input_tokens"),
                    exclusive=True,
                )
        elif t == "message_delta":
            usage = g(event, "usage")
            if usage:
                gen.keep_usage("message_delta", usage)
                # Cumulative counts: input and cache ones only grow (server tools add to them).
                grown = {}
                for key, name in (
                    ("input", "input_tokens"),
                    ("cache_read", "cache_read_input_tokens"),
                    ("cache_write", "cache_creation_input_tokens"),
                ):
                    value = _count(g(usage, name))
                    if value is not None:
                        grown[key] = max(gen.usage.get(key) or 0, value)
                gen.usage.update(grown)
                gen.set_usage(output=g(usage, "output_tokens"), reasoning=_thinking_tokens(usage) or None)
                searched = _anthropic_web_search(usage)
                if searched:
                    gen.web_search = max(gen.web_search or 0, searched)
            if g(delta, "stop_reason") is not None:
                gen.stop_reason = g(delta, "stop_reason")
        elif t == "content_block_start":
            self._start(g(event, "content_block"))
        elif t == "content_block_delta":
            self._delta(gen, g(event, "index"), delta)
        elif t == "content_block_stop":
            self.current = None
            block = self._at(g(event, "index"))
            if block is not None and block.get("type") == "function" and block.get("id") in self.tool_json:
                with contextlib.suppress(ValueError):  # not JSON: the arguments stay {}
                    block["function"]["arguments"] = json.loads(self.tool_json.pop(block["id"]))
        elif t == "message_stop":
            gen.stream_done = True
        return True

    def _at(self, index: Any) -> dict[str, Any] | None:
        return self.by_index[index] if isinstance(index, int) and 0 <= index < len(self.by_index) else None

    def _start(self, block: Any) -> None:
        kind = g(block, "type")
        new: dict[str, Any] | None = None
        if kind == "text":
            new = {"type": "text", "text": ""}
        elif kind == "tool_use":
            new = {
                "type": "function",
                "id": g(block, "id") or "",
                "function": {"name": g(block, "name") or "", "arguments": {}},
            }
            if new["id"]:
                self.tool_json[new["id"]] = ""
        elif kind == "thinking":
            new = {"type": "thinking", "thinking": g(block, "thinking") or ""}
            if g(block, "signature"):
                new["signature"] = g(block, "signature")
        elif kind == "redacted_thinking":
            new = {"type": "redacted_thinking", "data": g(block, "data")}
        self.by_index.append(new or {})
        if new is not None:
            self.blocks.append(new)
        self.current = new if new is not None and kind in ("text", "thinking") else None

    def _delta(self, gen: Generation, index: Any, delta: Any) -> None:
        current = self.current
        if _has(delta, "text"):
            text = g(delta, "text") or ""
            gen.add_delta("")
            self.text += text
            if current is not None and current.get("type") == "text":
                current["text"] = (current.get("text") or "") + text
            return
        for field in ("thinking", "signature"):
            if _has(delta, field):
                gen.first_token()
                if current is not None and current.get("type") == "thinking":
                    current[field] = (current.get(field) or "") + (g(delta, field) or "")
                return
        if g(delta, "type") == "input_json_delta":
            gen.add_delta("")
            block = self._at(index)
            if block is not None and block.get("type") == "function" and block.get("id") in self.tool_json:
                self.tool_json[block["id"]] += g(delta, "partial_json") or ""

    def output(self) -> list[dict[str, Any]]:
        content: list[Any] = []
        for b in self.blocks:
            kind = b.get("type")
            if kind == "text":
                content.append({"type": "text", "text": b.get("text") or ""})
            elif kind == "function":
                content.append({"type": "function", "id": b.get("id"), "function": b.get("function") or {}})
            elif kind == "thinking":
                content.append(
                    {"type": "thinking", "thinking": b.get("thinking") or "", "signature": b.get("signature")}
                )
            elif kind == "redacted_thinking":
                content.append({"type": "redacted_thinking", "data": b.get("data")})
        return [{"role": "assistant", "content": content or [{"type": "text", "text": self.text}]}]


_STREAMS: dict[str, type[ChatStream | ResponsesStream | MessagesStream]] = {
    "chat": ChatStream,
    "responses": ResponsesStream,
    "messages": MessagesStream,
}
