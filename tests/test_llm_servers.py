"""The local LLM server is faithful enough for the real `openai` and `anthropic` clients.

Clients are built with `_strict_response_validation=True` (every response is validated against the installed
client's pydantic models, not just constructed) except for base64 embeddings, which that validation rejects by
design (the client decodes them after parsing).
"""

from __future__ import annotations

import base64
import json
import struct
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest

from tests.llm_servers import (
    DEFAULT_ANTHROPIC_MODEL,
    DEFAULT_OPENAI_MODEL,
    LLMReply,
    LLMServer,
    split_words,
)

WEATHER = ("get_weather", {"city": "Paris", "days": 3})
CHAT_TOOLS: Any = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
RESPONSES_TOOLS: Any = [
    {
        "type": "function",
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        "strict": False,
    }
]
MSG: Any = [{"role": "user", "content": "hi"}]


# Plain-HTTP transports without a TLS context: building the default one costs ~25 ms per client.
def _oai(srv: LLMServer, **kw: Any) -> openai.OpenAI:
    kw.setdefault("max_retries", 0)
    kw.setdefault("http_client", httpx2.Client(verify=False))
    kw.setdefault("_strict_response_validation", True)
    return openai.OpenAI(base_url=srv.openai_base_url, api_key="sk-test", **kw)


def _aoai(srv: LLMServer, **kw: Any) -> openai.AsyncOpenAI:
    kw.setdefault("max_retries", 0)
    kw.setdefault("http_client", httpx2.AsyncClient(verify=False))
    return openai.AsyncOpenAI(
        base_url=srv.openai_base_url, api_key="sk-test", _strict_response_validation=True, **kw
    )


def _ant(srv: LLMServer, **kw: Any) -> anthropic.Anthropic:
    kw.setdefault("max_retries", 0)
    kw.setdefault("http_client", httpx2.Client(verify=False))
    return anthropic.Anthropic(
        base_url=srv.anthropic_base_url, api_key="sk-ant-test", _strict_response_validation=True, **kw
    )


def _aant(srv: LLMServer, **kw: Any) -> anthropic.AsyncAnthropic:
    kw.setdefault("max_retries", 0)
    kw.setdefault("http_client", httpx2.AsyncClient(verify=False))
    return anthropic.AsyncAnthropic(
        base_url=srv.anthropic_base_url, api_key="sk-ant-test", _strict_response_validation=True, **kw
    )


@pytest.fixture
def oai(llm_server: LLMServer) -> Iterator[openai.OpenAI]:
    with _oai(llm_server) as c:
        yield c


@pytest.fixture
def ant(llm_server: LLMServer) -> Iterator[anthropic.Anthropic]:
    with _ant(llm_server) as c:
        yield c


def _sse_events(text: str) -> list[tuple[str | None, str]]:
    """(event, data) of every SSE block in a raw body."""
    out = []
    for block in text.split("\n\n"):
        if not block:
            continue
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        out.append((fields.get("event"), fields["data"]))
    return out


def test_split_words() -> None:
    assert split_words("Hello from the local model") == ["Hello ", "from ", "the ", "local ", "model"]
    assert split_words("  a  b ") == ["  ", "a  ", "b "]
    assert split_words("") == []


# ------------------------------------------------------------------------------------------ chat completions
def test_chat_json_and_recorded_request(llm_server: LLMServer, oai: openai.OpenAI) -> None:
    llm_server.script(LLMReply(text="Hi there", input_tokens=20, cached_tokens=8, reasoning_tokens=3))
    r = oai.chat.completions.create(model="gpt-4o-mini", messages=MSG, temperature=0.5)
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-")
    assert r.model == "gpt-4o-mini"  # the request's model
    choice = r.choices[0]
    assert choice.message.content == "Hi there" and choice.message.role == "assistant"
    assert choice.finish_reason == "stop" and choice.message.tool_calls is None
    u = r.usage
    assert u is not None
    assert (u.prompt_tokens, u.completion_tokens, u.total_tokens) == (20, 5, 25)  # 2 words + 3 reasoning
    assert u.prompt_tokens_details is not None and u.prompt_tokens_details.cached_tokens == 8
    assert u.completion_tokens_details is not None and u.completion_tokens_details.reasoning_tokens == 3

    (rec,) = llm_server.requests
    assert (rec.method, rec.path) == ("POST", "/v1/chat/completions")
    assert rec.body == {"model": "gpt-4o-mini", "messages": MSG, "temperature": 0.5}
    assert rec.json is rec.body
    assert rec.headers["authorization"] == "Bearer sk-test"
    assert rec.headers["content-type"] == "application/json"
    assert rec.at <= time.monotonic()


def test_chat_stream_without_usage(oai: openai.OpenAI) -> None:
    chunks = list(oai.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].delta.content for c in chunks[1:-1]] == split_words("Hello from the local model")
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.choices and c.usage is None for c in chunks)  # no usage-only chunk
    assert len({c.id for c in chunks}) == 1 and chunks[0].object == "chat.completion.chunk"


def test_chat_stream_include_usage(llm_server: LLMServer, oai: openai.OpenAI) -> None:
    llm_server.script(LLMReply(text="one two three", input_tokens=7, cached_tokens=2, model="gpt-x-2025"))
    chunks = list(
        oai.chat.completions.create(
            model="gpt-4o-mini", messages=MSG, stream=True, stream_options={"include_usage": True}
        )
    )
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (7, 3, 10)
    assert last.usage.prompt_tokens_details is not None
    assert last.usage.prompt_tokens_details.cached_tokens == 2
    assert all(c.usage is None for c in chunks[:-1]) and chunks[-2].choices[0].finish_reason == "stop"
    assert {c.model for c in chunks} == {"gpt-x-2025"}


def test_chat_stream_wire_format(llm_server: LLMServer) -> None:
    """Raw bytes: data-only SSE, `"usage":null` only with include_usage, `[DONE]` at the end."""
    with httpx.Client(base_url=llm_server.openai_base_url) as h:
        for include in (False, True):
            body: dict[str, Any] = {"model": "m", "messages": MSG, "stream": True}
            if include:
                body["stream_options"] = {"include_usage": True}
            r = h.post("/chat/completions", json=body)
            assert r.headers["content-type"].startswith("text/event-stream")
            assert r.headers["transfer-encoding"] == "chunked"
            events = _sse_events(r.text)
            assert all(name is None for name, _ in events)
            assert events[-1][1] == "[DONE]"
            payloads = [json.loads(d) for _, d in events[:-1]]
            assert all(("usage" in p) is include for p in payloads)
            assert [p["usage"] for p in payloads if p["choices"] == []] == (
                [payloads[-1]["usage"]] if include else []
            )


def test_chat_tool_calls_json_and_stream(llm_server: LLMServer, oai: openai.OpenAI) -> None:
    llm_server.script(
        LLMReply(text="", tool_calls=[WEATHER]), LLMReply(text="", tool_calls=[WEATHER, ("f", {})])
    )
    r = oai.chat.completions.create(model="gpt-4o-mini", messages=MSG, tools=CHAT_TOOLS)
    assert r.choices[0].finish_reason == "tool_calls" and r.choices[0].message.content is None
    (call,) = r.choices[0].message.tool_calls or []
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == WEATHER[1]

    args: dict[int, str] = {}
    names: dict[int, str] = {}
    finish = None
    for chunk in oai.chat.completions.create(
        model="gpt-4o-mini", messages=MSG, tools=CHAT_TOOLS, stream=True
    ):
        ch = chunk.choices[0]
        finish = ch.finish_reason or finish
        for tc in ch.delta.tool_calls or []:
            assert tc.function is not None
            if tc.id is not None:  # the header delta: id/type/name first, empty arguments
                assert tc.function.name and tc.function.arguments == "" and tc.type == "function"
                names[tc.index] = tc.function.name
            args[tc.index] = args.get(tc.index, "") + (tc.function.arguments or "")
    assert finish == "tool_calls"
    assert names == {0: "get_weather", 1: "f"}
    assert {i: json.loads(a) for i, a in args.items()} == {0: WEATHER[1], 1: {}}


def test_chat_stream_helper_parses_tool_calls(llm_server: LLMServer, oai: openai.OpenAI) -> None:
    llm_server.script(LLMReply(text="Let me check.", tool_calls=[WEATHER]))
    with oai.chat.completions.stream(model="gpt-4o-mini", messages=MSG, tools=CHAT_TOOLS) as stream:
        final = stream.get_final_completion()
    msg = final.choices[0].message
    assert msg.content == "Let me check."
    assert msg.tool_calls and msg.tool_calls[0].function.name == "get_weather"
    assert json.loads(msg.tool_calls[0].function.arguments) == WEATHER[1]


@pytest.mark.asyncio
async def test_chat_async_json_and_stream(llm_server: LLMServer) -> None:
    async with _aoai(llm_server) as c:
        r = await c.chat.completions.create(model="gpt-4o-mini", messages=MSG)
        assert r.choices[0].message.content == "Hello from the local model"
        stream = await c.chat.completions.create(
            model="gpt-4o-mini", messages=MSG, stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == "Hello from the local model"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5


# ----------------------------------------------------------------------------------------------- responses
def test_responses_json(llm_server: LLMServer, oai: openai.OpenAI) -> None:
    llm_server.script(
        LLMReply(text="Sure.", tool_calls=[WEATHER], input_tokens=30, cached_tokens=10, reasoning_tokens=4)
    )
    r = oai.responses.create(model="gpt-4.1", input="hi", tools=RESPONSES_TOOLS, instructions="be brief")
    assert r.object == "response" and r.status == "completed" and r.id.startswith("resp_")
    assert r.model == "gpt-4.1" and r.instructions == "be brief"
    assert r.output_text == "Sure."
    msg, call = r.output
    assert msg.type == "message" and call.type == "function_call"
    assert call.name == "get_weather" and json.loads(call.arguments) == WEATHER[1]
    assert call.call_id.startswith("call_") and call.id is not None and call.id.startswith("fc_")
    u = r.usage
    assert u is not None
    # 1 word + 4 argument fragments + 4 reasoning tokens
    assert (u.input_tokens, u.output_tokens, u.total_tokens) == (30, 9, 39)
    assert u.input_tokens_details.cached_tokens == 10 and u.output_tokens_details.reasoning_tokens == 4
    assert r.tools[0].type == "function"


def test_responses_stored_prompt_without_model(llm_server: LLMServer, oai: openai.OpenAI) -> None:
    r = oai.responses.create(prompt={"id": "pmpt_123", "version": "2"}, input="hi")
    assert r.model == DEFAULT_OPENAI_MODEL
    assert r.prompt is not None and r.prompt.id == "pmpt_123"
    body = llm_server.requests[0].body
    assert body is not None and "model" not in body
    llm_server.script(LLMReply(model="gpt-5-2025"))
    events = list(oai.responses.create(prompt={"id": "pmpt_123"}, stream=True))
    assert events[-1].type == "response.completed" and events[-1].response.model == "gpt-5-2025"


def test_responses_stream_events(llm_server: LLMServer, oai: openai.OpenAI) -> None:
    llm_server.script(LLMReply(text="a b", tool_calls=[WEATHER], input_tokens=3))
    events = list(oai.responses.create(model="gpt-4.1", input="hi", stream=True))
    assert [e.type for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        *["response.function_call_arguments.delta"] * 4,
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert all(
        e.response.usage is None for e in events[:2] if e.type in ("response.created", "response.in_progress")
    )
    done = events[-1]
    assert done.type == "response.completed"
    assert done.response.usage is not None and done.response.usage.output_tokens == 6
    assert done.response.output_text == "a b" and len({e.response.id for e in (events[0], done)}) == 1
    args = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    assert json.loads(args) == WEATHER[1]


def test_responses_stream_helper(llm_server: LLMServer, oai: openai.OpenAI) -> None:
    llm_server.script(LLMReply(tool_calls=[WEATHER], cached_tokens=5))
    with oai.responses.stream(model="gpt-4.1", input="hi", tools=RESPONSES_TOOLS) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text == "Hello from the local model"
    assert final.usage is not None and final.usage.input_tokens_details.cached_tokens == 5
    assert final.output[1].type == "function_call" and final.output[1].name == "get_weather"


@pytest.mark.asyncio
async def test_responses_async_stream(llm_server: LLMServer) -> None:
    async with _aoai(llm_server) as c:
        stream = await c.responses.create(model="gpt-4.1", input="hi", stream=True)
        types = [e.type async for e in stream]
        async with c.responses.stream(model="gpt-4.1", input="hi") as helper:
            final = await helper.get_final_response()
    assert types[0] == "response.created" and types[-1] == "response.completed"
    assert final.output_text == "Hello from the local model" and final.usage is not None


# ---------------------------------------------------------------------------------------------- embeddings
def test_embeddings(llm_server: LLMServer) -> None:
    # the installed client asks for base64 unless told otherwise (and decodes it after parsing, so the
    # strict validation of the float list type does not apply here)
    with _oai(llm_server, _strict_response_validation=False) as c:
        r = c.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert llm_server.requests[0].body is not None
    assert llm_server.requests[0].body["encoding_format"] == "base64"
    assert r.object == "list" and r.model == "text-embedding-3-small"
    assert [d.index for d in r.data] == [0, 1] and all(len(d.embedding) == 8 for d in r.data)
    assert r.data[0].embedding != r.data[1].embedding
    assert (r.usage.prompt_tokens, r.usage.total_tokens) == (12, 12)

    with _oai(llm_server) as strict:
        f = strict.embeddings.create(model="m", input="a", encoding_format="float", dimensions=4)
    with _oai(llm_server, _strict_response_validation=False) as c:
        raw = c.embeddings.create(model="m", input="a", encoding_format="base64", dimensions=4)
    assert len(f.data) == 1 and len(f.data[0].embedding) == 4
    packed = base64.b64decode(str(raw.data[0].embedding))
    assert list(struct.unpack("<4f", packed)) == f.data[0].embedding


# ----------------------------------------------------------------------------------------------- anthropic
def test_anthropic_json(llm_server: LLMServer, ant: anthropic.Anthropic) -> None:
    llm_server.script(LLMReply(text="Hi", cached_tokens=100, cache_write_tokens=50, input_tokens=9))
    m = ant.messages.create(model="claude-haiku-4-5", max_tokens=100, messages=MSG)
    assert m.type == "message" and m.role == "assistant" and m.id.startswith("msg_")
    assert m.model == "claude-haiku-4-5" and m.stop_reason == "end_turn"
    assert [(b.type, getattr(b, "text", None)) for b in m.content] == [("text", "Hi")]
    u = m.usage
    assert (u.input_tokens, u.output_tokens) == (9, 1)
    assert (u.cache_read_input_tokens, u.cache_creation_input_tokens) == (100, 50)
    rec = llm_server.requests[0]
    assert rec.path == "/v1/messages"
    # this client version sends the key as a bearer token (older ones used x-api-key)
    assert "sk-ant-test" in rec.headers.get("x-api-key", "") + rec.headers.get("authorization", "")
    assert "anthropic-version" in rec.headers
    assert rec.body == {"model": "claude-haiku-4-5", "max_tokens": 100, "messages": MSG}


def test_anthropic_tool_use_json(llm_server: LLMServer, ant: anthropic.Anthropic) -> None:
    llm_server.script(LLMReply(text="", tool_calls=[WEATHER], model="claude-opus-x"))
    m = ant.messages.create(model="claude-haiku-4-5", max_tokens=100, messages=MSG)
    assert m.stop_reason == "tool_use" and m.model == "claude-opus-x"
    (block,) = m.content
    assert block.type == "tool_use" and block.id.startswith("toolu_")
    assert block.name == "get_weather" and block.input == WEATHER[1]


def test_anthropic_create_stream(llm_server: LLMServer, ant: anthropic.Anthropic) -> None:
    llm_server.script(LLMReply(text="a b c", cached_tokens=4, cache_write_tokens=2))
    events = list(ant.messages.create(model="claude-x", max_tokens=100, messages=MSG, stream=True))
    assert [e.type for e in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]  # the client drops `ping`
    start, delta = events[0], events[-2]
    assert start.type == "message_start" and start.message.usage.output_tokens == 1
    assert start.message.usage.cache_read_input_tokens == 4
    assert start.message.usage.cache_creation_input_tokens == 2
    assert delta.type == "message_delta" and delta.delta.stop_reason == "end_turn"
    assert delta.usage.output_tokens == 3
    text = "".join(
        e.delta.text for e in events if e.type == "content_block_delta" and e.delta.type == "text_delta"
    )
    assert text == "a b c"


def test_anthropic_wire_format(llm_server: LLMServer) -> None:
    with httpx.Client(base_url=llm_server.anthropic_base_url) as h:
        r = h.post("/v1/messages", json={"model": "c", "max_tokens": 5, "messages": MSG, "stream": True})
    events = _sse_events(r.text)
    assert [name for name, _ in events][:3] == ["message_start", "content_block_start", "ping"]
    assert all(json.loads(data)["type"] == name for name, data in events)
    assert "request-id" in r.headers


def test_anthropic_stream_helper(llm_server: LLMServer, ant: anthropic.Anthropic) -> None:
    llm_server.script(
        LLMReply(text="Hi there", tool_calls=[WEATHER], cached_tokens=30, cache_write_tokens=20)
    )
    with ant.messages.stream(model="claude-x", max_tokens=100, messages=MSG) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hi there"
    assert final.stop_reason == "tool_use"
    assert final.content[1].type == "tool_use" and final.content[1].input == WEATHER[1]
    u = final.usage
    assert (u.input_tokens, u.output_tokens) == (12, 2 + 4)  # 2 words + 4 argument fragments
    assert (u.cache_read_input_tokens, u.cache_creation_input_tokens) == (30, 20)
    assert llm_server.requests[0].body is not None and llm_server.requests[0].body["stream"] is True


@pytest.mark.asyncio
async def test_anthropic_async_create_and_stream_helper(llm_server: LLMServer) -> None:
    llm_server.script(LLMReply(text="x y"), LLMReply(text="x y", tool_calls=[WEATHER], output_tokens=42))
    async with _aant(llm_server) as c:
        stream = await c.messages.create(model="claude-x", max_tokens=100, messages=MSG, stream=True)
        types = [e.type async for e in stream]
        async with c.messages.stream(model="claude-x", max_tokens=100, messages=MSG) as helper:
            final = await helper.get_final_message()
    assert types[0] == "message_start" and types[-1] == "message_stop"
    assert final.usage.output_tokens == 42 and final.content[1].type == "tool_use"
    assert final.content[1].input == WEATHER[1]


# ----------------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("status", "exc", "etype"),
    [
        (400, openai.BadRequestError, "invalid_request_error"),
        (401, openai.AuthenticationError, "invalid_request_error"),
        (404, openai.NotFoundError, "invalid_request_error"),
        (429, openai.RateLimitError, "requests"),
        (500, openai.InternalServerError, "server_error"),
        (503, openai.InternalServerError, "server_error"),
    ],
)
def test_openai_errors(
    llm_server: LLMServer, oai: openai.OpenAI, status: int, exc: type[openai.APIStatusError], etype: str
) -> None:
    llm_server.script(LLMReply(status=status), LLMReply(status=status))
    with pytest.raises(exc) as info:
        oai.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    assert info.value.status_code == status and info.value.type == etype
    assert info.value.response.headers["x-should-retry"] == "false"
    assert isinstance(info.value.body, dict) and info.value.body["message"]
    with pytest.raises(exc):  # a streaming request fails at once, before any event
        oai.responses.create(model="gpt-4.1", input="hi", stream=True)


def test_openai_error_overrides_and_no_retry(llm_server: LLMServer) -> None:
    llm_server.script(
        LLMReply(status=429, error_type="tokens", error_message="slow down", headers={"a-b": "c"})
    )
    with _oai(llm_server, max_retries=3) as c, pytest.raises(openai.RateLimitError) as info:
        c.embeddings.create(model="m", input="a", encoding_format="float")
    assert len(llm_server.requests) == 1  # x-should-retry: false beat the client's 3 retries
    assert info.value.type == "tokens" and "slow down" in info.value.message
    assert info.value.response.headers["a-b"] == "c"
    # a reply that names x-should-retry keeps its own value: the client retries once, then succeeds
    llm_server.script(LLMReply(status=500, headers={"x-should-retry": "true", "retry-after-ms": "1"}))
    with _oai(llm_server, max_retries=1) as c:
        assert c.chat.completions.create(model="m", messages=MSG).choices[0].message.content
    assert len(llm_server.requests) == 3


@pytest.mark.parametrize(
    ("status", "exc", "etype"),
    [
        (400, anthropic.BadRequestError, "invalid_request_error"),
        (401, anthropic.AuthenticationError, "authentication_error"),
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (500, anthropic.InternalServerError, "api_error"),
        (529, anthropic.OverloadedError, "overloaded_error"),
    ],
)
def test_anthropic_errors(
    llm_server: LLMServer,
    ant: anthropic.Anthropic,
    status: int,
    exc: type[anthropic.APIStatusError],
    etype: str,
) -> None:
    llm_server.script(LLMReply(status=status), LLMReply(status=status))
    with pytest.raises(exc) as info:
        ant.messages.create(model="claude-x", max_tokens=10, messages=MSG)
    assert info.value.status_code == status and info.value.type == etype
    assert isinstance(info.value.body, dict) and info.value.body["type"] == "error"
    assert info.value.request_id is not None and info.value.request_id.startswith("req_")
    with pytest.raises(exc), ant.messages.stream(model="claude-x", max_tokens=10, messages=MSG) as s:
        s.get_final_message()


@pytest.mark.asyncio
async def test_async_errors(llm_server: LLMServer) -> None:
    llm_server.script(LLMReply(status=429), LLMReply(status=529))
    async with _aoai(llm_server) as c:
        with pytest.raises(openai.RateLimitError):
            await c.chat.completions.create(model="m", messages=MSG, stream=True)
    async with _aant(llm_server) as a:
        with pytest.raises(anthropic.OverloadedError):
            await a.messages.create(model="c", max_tokens=5, messages=MSG)


def test_unknown_endpoint_is_404_and_keeps_the_script(llm_server: LLMServer, oai: openai.OpenAI) -> None:
    llm_server.script(LLMReply(text="kept"))
    with pytest.raises(openai.NotFoundError):
        oai.models.list()
    assert oai.chat.completions.create(model="m", messages=MSG).choices[0].message.content == "kept"
    first = llm_server.requests[0]
    assert (first.method, first.path, first.body) == ("GET", "/v1/models", None)


# -------------------------------------------------------------------------------- timeouts and broken streams
def test_delay_past_client_timeout(llm_server: LLMServer) -> None:
    llm_server.script(LLMReply(delay=0.5), LLMReply(delay=0.5))
    with _oai(llm_server, timeout=0.05) as c, pytest.raises(openai.APITimeoutError):
        c.chat.completions.create(model="m", messages=MSG)
    with _ant(llm_server, timeout=0.05) as a, pytest.raises(anthropic.APITimeoutError):
        a.messages.create(model="c", max_tokens=5, messages=MSG)
    assert len(llm_server.requests) == 2  # recorded on arrival, before the delay


def test_break_after_openai(llm_server: LLMServer, oai: openai.OpenAI) -> None:
    llm_server.script(LLMReply(break_after=3), LLMReply(break_after=4), LLMReply(break_after=0))
    got: list[Any] = []
    with pytest.raises(openai.APIConnectionError) as info:
        got.extend(oai.chat.completions.create(model="m", messages=MSG, stream=True))
    assert isinstance(info.value.__cause__, httpx2.RemoteProtocolError)
    assert len(got) == 3  # role + 2 words, then the connection drops (no [DONE])

    seen: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        seen.extend(e.type for e in oai.responses.create(model="m", input="hi", stream=True))
    assert seen == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]

    with pytest.raises(openai.APIConnectionError):  # non-streaming: half a body
        oai.chat.completions.create(model="m", messages=MSG)
    # the server goes on answering
    assert oai.chat.completions.create(model="m", messages=MSG).choices[0].message.content


def test_break_after_anthropic(llm_server: LLMServer, ant: anthropic.Anthropic) -> None:
    llm_server.script(LLMReply(break_after=5), LLMReply(break_after=2))
    got: list[Any] = []
    # the anthropic client lets the transport error through unwrapped
    with pytest.raises(httpx2.RemoteProtocolError):
        got.extend(ant.messages.create(model="c", max_tokens=5, messages=MSG, stream=True))
    # message_start, content_block_start, (ping: counted, not yielded), 2 text deltas
    assert [e.type for e in got] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
    ]
    with (
        pytest.raises(httpx2.RemoteProtocolError),
        ant.messages.stream(model="c", max_tokens=5, messages=MSG) as s,
    ):
        s.get_final_message()


@pytest.mark.asyncio
async def test_break_after_async(llm_server: LLMServer) -> None:
    llm_server.script(LLMReply(break_after=2), LLMReply(break_after=2))
    async with _aoai(llm_server) as c:
        stream = await c.chat.completions.create(model="m", messages=MSG, stream=True)
        with pytest.raises(openai.APIConnectionError):
            async for _ in stream:
                pass
    async with _aant(llm_server) as a:
        astream = await a.messages.create(model="c", max_tokens=5, messages=MSG, stream=True)
        with pytest.raises(httpx2.RemoteProtocolError):
            async for _ in astream:
                pass


def test_event_delay_spaces_events_and_first_token_comes_first(
    llm_server: LLMServer, oai: openai.OpenAI
) -> None:
    llm_server.script(LLMReply(text="a b", event_delay=0.1))
    t0 = time.monotonic()
    stamps = [
        time.monotonic() - t0 for _ in oai.chat.completions.create(model="m", messages=MSG, stream=True)
    ]
    assert len(stamps) == 4  # role, a, b, finish: 3 gaps
    assert stamps[0] < 0.1  # the first event is flushed before any event_delay
    assert stamps[-1] - stamps[0] >= 0.25


@pytest.mark.asyncio
async def test_cancel_midway(llm_server: LLMServer) -> None:
    llm_server.script(LLMReply(text=" ".join(["w"] * 50), event_delay=0.02))
    async with _aant(llm_server) as a:
        t0 = time.monotonic()
        async with a.messages.stream(model="c", max_tokens=5, messages=MSG) as s:
            seen = 0
            async for _ in s.text_stream:
                seen += 1
                if seen == 2:
                    break
        assert time.monotonic() - t0 < 0.5  # did not wait for the 50-word stream
        m = await a.messages.create(model="c", max_tokens=5, messages=MSG)
    assert m.content[0].type == "text" and m.content[0].text == "Hello from the local model"


def test_script_fifo_then_default(llm_server: LLMServer, ant: anthropic.Anthropic) -> None:
    llm_server.script(LLMReply(text="one"), LLMReply(text="two"))
    texts = []
    for _ in range(3):
        block = ant.messages.create(model="c", max_tokens=5, messages=MSG).content[0]
        assert block.type == "text"
        texts.append(block.text)
    assert texts == ["one", "two", "Hello from the local model"]
    assert ant.messages.count_tokens(model="c", messages=MSG).input_tokens == 12
    assert llm_server.wait_for_requests(4, timeout=1)
    assert [r.path for r in llm_server.requests][-1] == "/v1/messages/count_tokens"
    ats = [r.at for r in llm_server.requests]
    assert ats == sorted(ats)


def test_default_models() -> None:
    with LLMServer() as srv, httpx.Client() as h:
        r = h.post(srv.openai_base_url + "/chat/completions", json={"messages": MSG})
        assert r.json()["model"] == DEFAULT_OPENAI_MODEL
        r = h.post(srv.anthropic_base_url + "/v1/messages", json={"messages": MSG, "max_tokens": 5})
        assert r.json()["model"] == DEFAULT_ANTHROPIC_MODEL
        assert r.headers["request-id"].startswith("req_")
    srv.close()  # idempotent
