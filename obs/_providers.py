"""What OpenAI and Anthropic calls look like: requests, responses and stream events, read into a Generation.

Every reader takes either the JSON the HTTP transport sees or the SDK's own objects (what a function under
``@trace_llm`` returns or yields), so one set of rules serves the integrations and the decorator. Shapes
read: OpenAI chat completions, Responses and embeddings; Anthropic messages; plain dicts with a ``usage``
block. Anything unrecognised is left alone: a reader never raises on an unexpected shape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._llm import Generation

# Request keys that describe how the model was asked to generate (sent as `$ai_model_parameters`).
PARAMS = (
    "temperature",
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
    "top_p",
    "top_k",
    "frequency_penalty",
    "presence_penalty",
    "n",
    "stop",
    "stop_sequences",
    "seed",
    "reasoning_effort",
    "stream",
    "tool_choice",
)


def g(obj: Any, key: str) -> Any:
    """``obj[key]`` for a dict, ``obj.key`` for an SDK object, None when absent."""
    if isinstance(obj, dict):
        return obj.get(key)
    return getattr(obj, key, None)


def _plain(obj: Any) -> Any:
    """An SDK object as plain data (pydantic models have ``model_dump``); dicts as they are."""
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        try:
            return dump(exclude_none=True)
        except Exception:
            return None
    return obj


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


def read_request(gen: Generation, api: str, body: dict[str, Any]) -> None:
    """What the caller asked for: model, parameters, tools and (kept only with payloads on) the input."""
    if gen.model is None and isinstance(body.get("model"), str):
        gen.model = body["model"]
    params = {k: body[k] for k in PARAMS if body.get(k) is not None}
    if params:
        gen.params = {**params, **(gen.params or {})}
    gen.stream = bool(body.get("stream"))
    tools = body.get("tools")
    if tools:
        gen.tools = tools
    if api == "embeddings":
        gen.set_input(body.get("input"))
    elif api == "responses":
        gen.set_input(body.get("input"))
        if body.get("instructions") is not None:
            gen.instructions = body["instructions"] if gen.payloads else None
    elif api == "messages":
        messages = list(body.get("messages") or ())
        system = body.get("system")
        gen.set_input([{"role": "system", "content": system}, *messages] if system else messages)
    else:
        gen.set_input(body.get("messages"))


# ---------------------------------------------------------------- whole responses


def read_response(gen: Generation, obj: Any, api: str | None = None) -> None:
    """A complete response (JSON or SDK object): model, usage, output, tool calls, stop reason."""
    api = api or api_of(obj)
    if api is None:
        return
    if gen.provider is None:
        gen.provider = provider_of(api)
    model = g(obj, "model")
    if gen.model is None and isinstance(model, str):
        gen.model = model
    tier = g(obj, "service_tier")
    if isinstance(tier, str) and api != "messages":  # Anthropic reports its tier inside usage
        gen.service_tier = tier
    read_usage(gen, g(obj, "usage"), api)
    if api == "chat":
        for choice in g(obj, "choices") or ():
            message = g(choice, "message") or {}
            gen.add_output(g(message, "content"))
            for call in g(message, "tool_calls") or ():
                fn = g(call, "function") or {}
                gen.tool_call(g(call, "id"), g(fn, "name"), g(fn, "arguments"))
            gen.stop_reason = g(choice, "finish_reason") or gen.stop_reason
    elif api == "responses":
        for item in g(obj, "output") or ():
            kind = g(item, "type")
            if kind == "message":
                for part in g(item, "content") or ():
                    gen.add_output(g(part, "text"))
            elif kind == "function_call":
                gen.tool_call(g(item, "call_id"), g(item, "name"), g(item, "arguments"))
        status = g(obj, "status")
        if isinstance(status, str):
            gen.stop_reason = status
    elif api == "messages":
        for block in g(obj, "content") or ():
            kind = g(block, "type")
            if kind == "text":
                gen.add_output(g(block, "text"))
            elif kind == "tool_use":
                gen.tool_call(g(block, "id"), g(block, "name"), g(block, "input"))
        gen.stop_reason = g(obj, "stop_reason") or gen.stop_reason


def read_usage(gen: Generation, usage: Any, api: str | None) -> None:
    """A usage block, whichever provider's names it uses; kept as sent for `$ai_usage`."""
    if usage is None:
        return
    raw = _plain(usage)
    if isinstance(raw, dict):  # a stream's later blocks (Anthropic's message_delta) update the first
        gen.raw_usage = {**(gen.raw_usage or {}), **{k: v for k, v in raw.items() if v is not None}}
    if api == "messages" or g(usage, "cache_read_input_tokens") is not None:
        gen.set_usage(
            input=g(usage, "input_tokens"),
            output=g(usage, "output_tokens"),
            cache_read=g(usage, "cache_read_input_tokens"),
            cache_write=g(usage, "cache_creation_input_tokens"),
            exclusive=True,
        )
        return
    prompt = g(usage, "prompt_tokens")
    if prompt is not None:  # chat completions, embeddings
        gen.set_usage(
            input=prompt,
            output=g(usage, "completion_tokens"),
            cache_read=g(g(usage, "prompt_tokens_details"), "cached_tokens"),
            reasoning=g(g(usage, "completion_tokens_details"), "reasoning_tokens"),
            exclusive=False,
        )
        return
    gen.set_usage(  # Responses API, and plain {"input_tokens", "output_tokens"} dicts
        input=g(usage, "input_tokens"),
        output=g(usage, "output_tokens"),
        cache_read=g(g(usage, "input_tokens_details"), "cached_tokens"),
        reasoning=g(g(usage, "output_tokens_details"), "reasoning_tokens"),
        exclusive=False if g(usage, "input_tokens_details") is not None else None,
    )


# ---------------------------------------------------------------- stream events


def read_event(gen: Generation, event: Any, api: str | None = None) -> bool:
    """One stream event or chunk. Returns False for an OpenAI chat chunk that only carries usage."""
    api = api or api_of(event)
    if api == "chat":
        return _chat_chunk(gen, event)
    if api == "responses":
        _responses_event(gen, event)
    elif api == "messages":
        _messages_event(gen, event)
    elif isinstance(event, str):  # a generator yielding text
        gen.add_delta(event)
    return True


def _chat_chunk(gen: Generation, chunk: Any) -> bool:
    if gen.model is None and isinstance(g(chunk, "model"), str):
        gen.model = g(chunk, "model")
    if gen.provider is None:
        gen.provider = "openai"
    tier = g(chunk, "service_tier")
    if isinstance(tier, str):
        gen.service_tier = tier
    choices = g(chunk, "choices") or ()
    for choice in choices:
        delta = g(choice, "delta") or {}
        content = g(delta, "content")
        if content:
            gen.add_delta(content)
        for call in g(delta, "tool_calls") or ():
            fn = g(call, "function") or {}
            gen.tool_delta(g(call, "index") or 0, g(call, "id"), g(fn, "name"), g(fn, "arguments"))
        gen.stop_reason = g(choice, "finish_reason") or gen.stop_reason
    usage = g(chunk, "usage")
    if usage is not None:
        read_usage(gen, usage, "chat")
    return bool(choices) or usage is None


def _responses_event(gen: Generation, event: Any) -> None:
    t = g(event, "type")
    if gen.provider is None:
        gen.provider = "openai"
    if t == "response.output_text.delta":
        gen.add_delta(g(event, "delta") or "")
    elif t == "response.function_call_arguments.delta":
        gen.tool_delta(g(event, "output_index") or 0, None, None, g(event, "delta"))
    elif t == "response.output_item.added":
        item = g(event, "item") or {}
        if g(item, "type") == "function_call":
            gen.tool_delta(g(event, "output_index") or 0, g(item, "call_id"), g(item, "name"), None)
    elif t == "response.created":
        model = g(g(event, "response"), "model")
        if gen.model is None and isinstance(model, str):
            gen.model = model
    elif t in ("response.completed", "response.incomplete", "response.failed"):
        response = g(event, "response")
        gen.reset_output()  # the final response repeats everything the deltas said
        read_response(gen, response, "responses")
        gen.stream_done = True


def _messages_event(gen: Generation, event: Any) -> None:
    t = g(event, "type")
    if gen.provider is None:
        gen.provider = "anthropic"
    if t == "content_block_delta":
        delta = g(event, "delta") or {}
        kind = g(delta, "type")
        if kind == "text_delta":
            gen.add_delta(g(delta, "text") or "")
        elif kind == "input_json_delta":
            gen.tool_delta(g(event, "index") or 0, None, None, g(delta, "partial_json"))
        elif kind == "thinking_delta":
            gen.first_token()
    elif t == "content_block_start":
        block = g(event, "content_block") or {}
        if g(block, "type") == "tool_use":
            gen.tool_delta(g(event, "index") or 0, g(block, "id"), g(block, "name"), None)
    elif t == "message_start":
        message = g(event, "message") or {}
        if gen.model is None and isinstance(g(message, "model"), str):
            gen.model = g(message, "model")
        read_usage(gen, g(message, "usage"), "messages")
    elif t == "message_delta":
        gen.stop_reason = g(g(event, "delta"), "stop_reason") or gen.stop_reason
        usage = g(event, "usage")
        if usage is not None:  # cumulative; input/cache fields only when the API repeats them
            read_usage(gen, usage, "messages")
    elif t == "message_stop":
        gen.stream_done = True
