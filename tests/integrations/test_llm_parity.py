"""`$ai_generation` / `$ai_embedding` parity with posthog-python's AI wrappers: the same call through both.

For each case the same request goes to the same local LLM server twice: once through posthog-python's
wrapper (`posthog.ai.openai.OpenAI` / `AsyncOpenAI`, `posthog.ai.anthropic.Anthropic` / `AsyncAnthropic`,
a `posthog.Client` in sync mode pointed at the local capture server) and once through an `openai` /
`anthropic` client instrumented by obs. The scripted reply has an `id_seed`, so both answers carry the same
ids (tool calls, request ids). Each case runs twice: with payloads (posthog-python's default, obs's
`llm_payloads=True`) and without (posthog-python's `privacy_mode=True`, obs's default).

The comparison has no allow-list. Every `$ai_*` property posthog-python sends must be in obs's event with
the same value, with these rules, the same for every property:

- a property sent as null counts as absent (posthog-python's privacy mode sends `$ai_input: null`; obs
  leaves it out; PostHog stores and queries the two alike);
- `$ai_trace_id` is a UUID in both (a fresh uuid4 there, obs's uuid7 span id here), `$ai_latency` a
  non-negative number in both (each times its own layer), `$ai_lib` / `$ai_lib_version` name the sender;
- what obs sends beyond posthog-python is exactly a subset of `OBS_ONLY` (documented in docs/llm.md);
- the event's distinct id is its trace id in both (no person), with `$process_person_profile: false`.

Matched: posthog-python 7.91.1, the newest release.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import anthropic
import openai
import posthog
import pydantic
import pytest
from posthog.ai.anthropic import Anthropic as PostHogAnthropic
from posthog.ai.anthropic import AsyncAnthropic as PostHogAsyncAnthropic
from posthog.ai.openai import AsyncOpenAI as PostHogAsyncOpenAI
from posthog.ai.openai import OpenAI as PostHogOpenAI

import obs
from tests.capture_server import CaptureServer
from tests.llm_servers import LLMReply, LLMServer

MESSAGES = [{"role": "user", "content": "What is the weather in Paris?"}]
HISTORY: list[Any] = [
    {"role": "system", "content": "You answer about the weather."},
    {"role": "user", "content": "Weather in Paris?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
]
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
RESPONSES_TOOLS: list[Any] = [
    {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}},
    {"type": "mcp", "server_label": "docs", "server_url": "https://mcp.example", "headers": {"k": "secret"}},
]
CLAUDE_TOOLS: list[Any] = [{"name": "get_weather", "input_schema": {"type": "object"}}]
PNG = base64.b64encode(bytes(range(256)) * 2).decode()  # stands in for an image: long base64 text
IMAGE_MESSAGES: list[Any] = [
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is in this picture?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        ],
    }
]
CLAUDE_IMAGE_MESSAGES: list[Any] = [
    {
        "role": "user",
        "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
            {"type": "text", "text": "What is in this picture?"},
        ],
    }
]
CLAUDE = "claude-haiku-4-5"  # not in the anthropic client's deprecated list (that warns)
WEATHER = [("get_weather", {"city": "Paris"})]

# Sent by obs and not by posthog-python's wrappers (docs/llm.md, "What obs adds").
OBS_ONLY = frozenset(
    {
        "$ai_span_id",
        "$ai_stream",
        "$ai_stream_completed",
        "$ai_time_to_first_token",
        "$ai_cache_reporting_exclusive",
        "$ai_input_cost_usd",
        "$ai_output_cost_usd",
        "$ai_total_cost_usd",
    }
)


class City(pydantic.BaseModel):
    city: str


@dataclass
class Case:
    id: str
    provider: str  # "openai" | "anthropic"
    reply: LLMReply
    call: Callable[[Any], Any]
    error: type[BaseException] | None = None
    is_async: bool = False
    options: dict[str, Any] | None = None  # extra client options (a timeout, a base URL)
    event: str = "$ai_generation"


def _each(stream: Any) -> None:
    for _ in stream:
        pass


async def _aeach(stream: Any) -> None:
    async for _ in stream:
        pass


def _stream_helper(c: Any) -> None:
    with c.messages.stream(model=CLAUDE, max_tokens=64, messages=MESSAGES, tools=CLAUDE_TOOLS) as s:
        s.until_done()


async def _async_chat_stream(c: Any) -> None:
    await _aeach(await c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))


async def _async_messages_stream(c: Any) -> None:
    await _aeach(await c.messages.create(model=CLAUDE, max_tokens=64, messages=MESSAGES, stream=True))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _chat(**kw: Any) -> Callable[[Any], Any]:
    def call(c: Any) -> Any:
        r = c.chat.completions.create(**{"model": "gpt-4o-mini", "messages": MESSAGES, **kw})
        return _each(r) if kw.get("stream") else r

    return call


def _messages(**kw: Any) -> Callable[[Any], Any]:
    def call(c: Any) -> Any:
        r = c.messages.create(**{"model": CLAUDE, "max_tokens": 100, "messages": MESSAGES, **kw})
        return _each(r) if kw.get("stream") else r

    return call


CASES = [
    Case(
        "openai-chat",
        "openai",
        LLMReply(input_tokens=20, output_tokens=5, cached_tokens=3),
        _chat(temperature=0.2, max_tokens=50, top_p=0.9, seed=7, n=1, stop=["\n"]),
    ),
    Case("openai-chat-stream", "openai", LLMReply(input_tokens=20, cached_tokens=4), _chat(stream=True)),
    Case(
        "openai-chat-stream-usage-asked",
        "openai",
        LLMReply(reasoning_tokens=3),
        _chat(stream=True, stream_options={"include_usage": True}, max_completion_tokens=9),
    ),
    Case("openai-chat-history", "openai", LLMReply(), _chat(messages=HISTORY, tools=TOOLS)),
    Case("openai-tool-calls", "openai", LLMReply(text="", tool_calls=WEATHER), _chat(tools=TOOLS)),
    Case(
        "openai-tool-calls-stream",
        "openai",
        LLMReply(text="Checking.", tool_calls=WEATHER),
        _chat(tools=TOOLS, stream=True),
    ),
    Case(
        "openai-chat-parse",
        "openai",
        LLMReply(text='{"city": "Paris"}'),
        lambda c: c.chat.completions.parse(model="gpt-4o-mini", messages=MESSAGES, response_format=City),
    ),
    Case("openai-chat-image", "openai", LLMReply(), _chat(messages=IMAGE_MESSAGES)),
    Case("openai-chat-web-search", "openai", LLMReply(web_searches=1), _chat()),
    Case("openai-chat-stream-web-search", "openai", LLMReply(web_searches=1), _chat(stream=True)),
    Case(
        "openai-responses",
        "openai",
        LLMReply(input_tokens=20, output_tokens=5, cached_tokens=2, reasoning_tokens=1),
        lambda c: c.responses.create(
            model="gpt-4o-mini", input="Hi", instructions="Be brief.", max_output_tokens=50
        ),
    ),
    Case(
        "openai-responses-parse",
        "openai",
        LLMReply(text='{"city": "Paris"}'),
        lambda c: c.responses.parse(model="gpt-4o-mini", input="Which city?", text_format=City),
    ),
    Case(
        "openai-responses-stream",
        "openai",
        LLMReply(),
        lambda c: _each(c.responses.create(model="gpt-4o-mini", input="Hi", stream=True)),
    ),
    Case(
        "openai-responses-tools",
        "openai",
        LLMReply(text="", tool_calls=WEATHER, web_searches=2),
        lambda c: c.responses.create(
            model="gpt-4o-mini",
            instructions="Use tools.",
            input=[
                {"role": "system", "content": "You answer about the weather."},
                {"role": "user", "content": "Weather in Paris?"},
                {"type": "function_call_output", "call_id": "call_0", "output": "sunny"},
            ],
            tools=RESPONSES_TOOLS,
        ),
    ),
    Case(
        "openai-responses-stream-tools",
        "openai",
        LLMReply(text="Checking.", tool_calls=WEATHER),
        lambda c: _each(
            c.responses.create(model="gpt-4o-mini", input="Hi", tools=RESPONSES_TOOLS[:1], stream=True)
        ),
    ),
    Case(
        "openai-embeddings",
        "openai",
        LLMReply(input_tokens=4),
        lambda c: c.embeddings.create(model="text-embedding-3-small", input=["hello", "world"]),
        event="$ai_embedding",
    ),
    Case(
        "openai-embeddings-error",
        "openai",
        LLMReply(status=404),
        lambda c: c.embeddings.create(model="no-such-model", input="hello"),
        openai.NotFoundError,
        event="$ai_embedding",
    ),
    Case("openai-http-500", "openai", LLMReply(status=500), _chat(), openai.InternalServerError),
    Case("openai-stream-http-429", "openai", LLMReply(status=429), _chat(stream=True), openai.RateLimitError),
    Case(
        "openai-responses-http-400",
        "openai",
        LLMReply(status=400),
        lambda c: c.responses.create(model="gpt-4o-mini", input="Hi"),
        openai.BadRequestError,
    ),
    Case(
        "openai-timeout",
        "openai",
        LLMReply(delay=1.0),
        _chat(),
        openai.APITimeoutError,
        options={"timeout": 0.3},
    ),
    Case(
        "openai-connection-refused",
        "openai",
        LLMReply(),
        _chat(),
        openai.APIConnectionError,
        options={"base_url": "refused"},
    ),
    Case(
        "openai-stream-broken",
        "openai",
        LLMReply(text="one two three four five six", break_after=4),
        _chat(stream=True),
        openai.APIConnectionError,
    ),
    Case("openai-async-chat-stream", "openai", LLMReply(), _async_chat_stream, is_async=True),
    Case(
        "anthropic-messages",
        "anthropic",
        LLMReply(input_tokens=20, output_tokens=5),
        _messages(stop_sequences=["END"], service_tier="auto", metadata={"user_id": "u1"}),
    ),
    Case("anthropic-messages-stream", "anthropic", LLMReply(input_tokens=20), _messages(stream=True)),
    Case(
        "anthropic-cache-tokens",
        "anthropic",
        LLMReply(input_tokens=20, output_tokens=5, cached_tokens=100, cache_write_tokens=50),
        _messages(system="Be brief."),
    ),
    Case(
        "anthropic-stream-cache-tokens",
        "anthropic",
        LLMReply(cached_tokens=100, cache_write_tokens=50),
        _messages(system=[{"type": "text", "text": "Be brief."}], stream=True),
    ),
    Case(
        "anthropic-tool-use",
        "anthropic",
        LLMReply(text="Let me check.", tool_calls=WEATHER),
        _messages(tools=CLAUDE_TOOLS),
    ),
    Case(
        "anthropic-tool-use-stream",
        "anthropic",
        LLMReply(text="", tool_calls=[*WEATHER, ("get_time", {})]),
        _messages(tools=CLAUDE_TOOLS, stream=True),
    ),
    Case("anthropic-stream-helper", "anthropic", LLMReply(tool_calls=WEATHER), _stream_helper),
    Case("anthropic-image", "anthropic", LLMReply(), _messages(messages=CLAUDE_IMAGE_MESSAGES)),
    Case("anthropic-web-search", "anthropic", LLMReply(web_searches=3), _messages()),
    Case("anthropic-stream-web-search", "anthropic", LLMReply(web_searches=2), _messages(stream=True)),
    Case(
        "anthropic-history",
        "anthropic",
        LLMReply(),
        _messages(
            messages=[
                {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
                {"role": "assistant", "content": "Where?"},
                {"role": "user", "content": "Paris"},
            ]
        ),
    ),
    Case("anthropic-http-429", "anthropic", LLMReply(status=429), _messages(), anthropic.RateLimitError),
    Case(
        "anthropic-stream-http-500",
        "anthropic",
        LLMReply(status=500),
        _messages(stream=True),
        anthropic.InternalServerError,
    ),
    Case(
        "anthropic-stream-broken",
        "anthropic",
        LLMReply(text="one two three four five", break_after=5),
        _messages(stream=True),
        Exception,
    ),
    Case("anthropic-async-stream", "anthropic", LLMReply(), _async_messages_stream, is_async=True),
]


def _run(case: Case, client: Any) -> Any:
    def call() -> Any:
        return asyncio.run(case.call(client)) if case.is_async else case.call(client)

    if case.error is None:
        call()
        return None
    with pytest.raises(case.error) as caught:
        call()
    return type(caught.value)


def _client_options(case: Case, llm: LLMServer) -> dict[str, Any]:
    options = {**(case.options or {})}
    base = options.get("base_url") or (
        llm.openai_base_url if case.provider == "openai" else llm.anthropic_base_url
    )
    key = "sk-test" if case.provider == "openai" else "sk-ant-test"
    return {**options, "base_url": base, "api_key": key, "max_retries": 0}


def _event(server: CaptureServer, name: str) -> dict[str, Any]:
    """The one generation (or embedding) event; obs also sends a `$ai_span` per tool call the model asked
    for, children of the generation (docs/llm.md), which posthog-python does not."""
    events = [e for e in server.events() if e["event"].startswith("$ai_")]
    (event,) = [e for e in events if e["event"] == name]
    spans = [e["properties"] for e in events if e is not event]
    assert all(s["$ai_parent_id"] == event["properties"].get("$ai_span_id") for s in spans), events
    choices = event["properties"].get("$ai_output_choices") or []
    calls = [c["id"] for m in choices for c in m["content"] if c.get("type") == "function"]
    if spans and choices:
        assert [s["$ai_tool_call_id"] for s in spans] == calls
    return event


def _via_posthog(case: Case, server: CaptureServer, llm: LLMServer, payloads: bool) -> Any:
    ph = posthog.Client("phc_test", host=server.url, sync_mode=True, privacy_mode=not payloads)
    llm.script(case.reply)
    wrappers = {
        ("openai", False): PostHogOpenAI,
        ("openai", True): PostHogAsyncOpenAI,
        ("anthropic", False): PostHogAnthropic,
        ("anthropic", True): PostHogAsyncAnthropic,
    }
    client = wrappers[case.provider, case.is_async](posthog_client=ph, **_client_options(case, llm))
    raised = _run(case, client)
    ph.flush()
    ph.shutdown()
    event = _event(server, case.event)
    server.received.clear()
    return event, raised


def _via_obs(case: Case, server: CaptureServer, llm: LLMServer, payloads: bool) -> Any:
    obs.init(api_key="phc_test", host=server.url, llm_payloads=payloads)
    llm.script(case.reply)
    sdk: Any = openai if case.provider == "openai" else anthropic
    name = ("Async" if case.is_async else "") + ("OpenAI" if case.provider == "openai" else "Anthropic")
    client = getattr(sdk, name)(**_client_options(case, llm))
    instrument = obs.instrument_openai if case.provider == "openai" else obs.instrument_anthropic
    raised = _run(case, instrument(client))
    assert obs.flush(5)
    return _event(server, case.event), raised


LLM_DOCS = (Path(__file__).resolve().parents[2] / "docs" / "llm.md").read_text()


def _present(props: dict[str, Any]) -> dict[str, Any]:
    """The `$ai_*` properties, a null one counting as absent."""
    return {k: v for k, v in props.items() if k.startswith("$ai_") and v is not None}


def _is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(value)
    except (TypeError, ValueError):
        return False
    return True


@pytest.mark.parametrize("payloads", [True, False], ids=["payloads", "privacy"])
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_ai_event_matches_posthog_python(
    case: Case, payloads: bool, server: CaptureServer, llm_server: LLMServer
) -> None:
    case = replace(case, reply=replace(case.reply, id_seed=case.id))  # both answers carry the same ids
    if case.options and case.options.get("base_url") == "refused":  # a port nothing listens on
        refused = f"http://127.0.0.1:{_closed_port()}" + ("/v1" if case.provider == "openai" else "")
        case = replace(case, options={**case.options, "base_url": refused})
    their_event, their_error = _via_posthog(case, server, llm_server, payloads)
    our_event, our_error = _via_obs(case, server, llm_server, payloads)
    assert our_error is their_error  # the caller got the same from its SDK either way

    theirs, ours = _present(their_event["properties"]), _present(our_event["properties"])
    undocumented = [k for k in ours if f"`{k}`" not in LLM_DOCS]
    assert not undocumented, f"add {undocumented} to the property tables of docs/llm.md"
    assert _is_uuid(theirs.pop("$ai_trace_id")) and _is_uuid(ours["$ai_trace_id"])
    for props in (theirs, ours):
        assert isinstance(props.pop("$ai_latency"), float)
    assert (theirs.pop("$ai_lib"), theirs.pop("$ai_lib_version")) == ("posthog-ai", posthog.VERSION)
    assert (ours.pop("$ai_lib"), ours.pop("$ai_lib_version")) == ("obs", obs.__version__)
    trace_id = ours.pop("$ai_trace_id")

    assert set(ours) - set(theirs) <= OBS_ONLY, set(ours) - set(theirs) - OBS_ONLY
    differ = {k: (v, ours.get(k, "<absent>")) for k, v in theirs.items() if ours.get(k, "<absent>") != v}
    assert not differ, json.dumps(differ, indent=1, default=str)

    # No person: the event's distinct id is its trace id, in both.
    for event, tid in ((their_event, their_event["properties"]["$ai_trace_id"]), (our_event, trace_id)):
        assert event["distinct_id"] == tid
        assert event["properties"]["$process_person_profile"] is False
    # The cases exercise what they are named for.
    assert ("$ai_is_error" in theirs) is (case.error is not None)
    if payloads and "image" in case.id:  # base64 media is replaced by a placeholder in both
        assert "[base64 image redacted]" in json.dumps(ours["$ai_input"]) and PNG not in json.dumps(ours)
    if payloads and case.error is None:
        assert theirs["$ai_input"]
        assert case.event == "$ai_embedding" or theirs["$ai_output_choices"]
