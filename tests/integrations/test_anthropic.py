"""obs.instrument_anthropic against the real `anthropic` client talking to a local Anthropic-shaped server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

import obs
from obs.sinks import MemorySink
from tests.llm_servers import LLMReply, LLMServer

MODEL = "claude-haiku-4-5"
MESSAGES: list[Any] = [{"role": "user", "content": "Hello"}]


@pytest.fixture
def sink() -> Iterator[MemorySink]:
    s = MemorySink()
    obs.init(api_key="phc_test", sinks=[s])
    yield s


def _client(srv: LLMServer) -> anthropic.Anthropic:
    return obs.instrument_anthropic(
        anthropic.Anthropic(base_url=srv.anthropic_base_url, api_key="sk-ant-test", max_retries=0)
    )


def _events(sink: MemorySink, name: str = "$ai_generation") -> list[dict[str, Any]]:
    assert obs.flush(5)
    return [e["properties"] for e in sink.named(name)]


def test_message_with_cache_tokens_is_priced_without_double_counting(
    sink: MemorySink, llm_server: LLMServer
) -> None:
    llm_server.script(
        LLMReply(input_tokens=1000, output_tokens=100, cached_tokens=4000, cache_write_tokens=2000)
    )
    m = _client(llm_server).messages.create(model=MODEL, max_tokens=256, messages=MESSAGES, system="Be brief")
    assert m.usage.cache_read_input_tokens == 4000
    (p,) = _events(sink)
    assert p["$ai_provider"] == "anthropic" and p["$ai_model"] == MODEL
    assert p["$ai_input_tokens"] == 1000 and p["$ai_output_tokens"] == 100
    assert p["$ai_cache_read_input_tokens"] == 4000 and p["$ai_cache_creation_input_tokens"] == 2000
    assert p["$ai_cache_reporting_exclusive"] is True  # Anthropic's input_tokens exclude the cache
    assert p["$ai_model_parameters"] == {"max_tokens": 256} and p["$ai_stop_reason"] == "end_turn"
    from genai_prices import Usage, calc_price

    price = calc_price(
        Usage(input_tokens=7000, output_tokens=100, cache_read_tokens=4000, cache_write_tokens=2000),
        model_ref=MODEL,
        provider_id="anthropic",
    )
    assert p["$ai_total_cost_usd"] == pytest.approx(float(price.total_price))
    # cache reads are cheaper than fresh input: the bill is below 7000 tokens at the full input price
    full = calc_price(Usage(input_tokens=7000, output_tokens=100), model_ref=MODEL, provider_id="anthropic")
    assert p["$ai_total_cost_usd"] < float(full.total_price)


def test_create_stream_and_stream_helper(sink: MemorySink, llm_server: LLMServer) -> None:
    reply = LLMReply(text="one two three", cached_tokens=3)
    llm_server.script(reply, reply)
    client = _client(llm_server)
    events = list(client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES, stream=True))
    assert events[-1].type == "message_stop"
    with client.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES) as stream:
        assert "".join(stream.text_stream) == "one two three"
        final = stream.get_final_message()
    assert final.usage.output_tokens == 3
    for p in _events(sink):
        assert p["$ai_stream"] is True and p["$ai_stream_completed"] is True
        assert p["$ai_input_tokens"] == 12 and p["$ai_output_tokens"] == 3
        assert p["$ai_cache_read_input_tokens"] == 3 and p["$ai_tokens_source"] == "sdk"
        # `$ai_usage`: message_start's block with message_delta's laid over it, each as the SDK's type
        # dumps it (message_delta's type has `input_tokens`, unset), as posthog-python sends it
        assert p["$ai_usage"]["cache_read_input_tokens"] is None and p["$ai_usage"]["output_tokens"] == 3
        assert p["$ai_usage"]["service_tier"] == "standard"  # only in message_start's block
        assert 0 < p["$ai_time_to_first_token"] <= p["$ai_latency"]


def test_tool_use_json_and_streamed(llm_server: LLMServer) -> None:
    sink = MemorySink()
    obs.init(api_key="phc_test", sinks=[sink], llm_payloads=True)
    reply = LLMReply(text="Let me check.", tool_calls=[("get_weather", {"city": "Paris"})])
    llm_server.script(reply, reply)
    client = _client(llm_server)
    tools: Any = [{"name": "get_weather", "input_schema": {"type": "object"}}]
    client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES, tools=tools)
    with client.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES, tools=tools) as s:
        s.until_done()
    plain, streamed = _events(sink)
    assert plain["$ai_tools"] == streamed["$ai_tools"] == tools
    assert plain["$ai_stop_reason"] == streamed["$ai_stop_reason"] == "tool_use"
    # Anthropic's tool input is an object, streamed or not (the stream's JSON pieces are parsed)
    for p in (plain, streamed):
        (choice,) = p["$ai_output_choices"]
        text, call = choice["content"]
        assert text == {"type": "text", "text": "Let me check."}
        assert call["type"] == "function" and call["id"].startswith("toolu_01")
        assert call["function"] == {"name": "get_weather", "arguments": {"city": "Paris"}}
    assert len(_events(sink, "$ai_span")) == 2


def test_overloaded_error(sink: MemorySink, llm_server: LLMServer) -> None:
    llm_server.script(LLMReply(status=529))
    with pytest.raises(anthropic.APIStatusError) as caught:
        _client(llm_server).messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)
    assert caught.value.status_code == 529
    (p,) = _events(sink)
    assert p["$ai_is_error"] is True and p["$ai_http_status"] == 529
    request_id = caught.value.request_id
    assert p["$ai_error"] == f"OverloadedError: 529 overloaded_error request_id={request_id}"
    assert "$ai_input_tokens" not in p


def test_stream_closed_early_keeps_input_tokens_and_counts_output(
    sink: MemorySink, llm_server: LLMServer
) -> None:
    llm_server.script(LLMReply(text="a b c d e f g h", input_tokens=40))
    with _client(llm_server).messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES) as stream:
        for i, _ in enumerate(stream.text_stream):
            if i == 2:
                break
    (p,) = _events(sink)
    assert p["$ai_stream_completed"] is False and "$ai_is_error" not in p
    assert p["$ai_input_tokens"] == 40  # from message_start
    assert p["$ai_cache_read_input_tokens"] == p["$ai_cache_creation_input_tokens"] == 0
    assert "$ai_output_tokens" not in p  # message_delta never came: unknown


@pytest.mark.asyncio
async def test_async_client_create_and_stream_helper(sink: MemorySink, llm_server: LLMServer) -> None:
    client = obs.instrument_anthropic(
        anthropic.AsyncAnthropic(base_url=llm_server.anthropic_base_url, api_key="sk-ant-test", max_retries=0)
    )
    async with obs.trace("chat", distinct_id="user-1"):
        await client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)
        async with client.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES) as stream:
            text = "".join([t async for t in stream.text_stream])
    assert text == "Hello from the local model"
    assert obs.flush(5)
    gens = sink.named("$ai_generation")
    (trace,) = sink.named("$ai_trace")
    assert [g["distinct_id"] for g in gens] == ["user-1", "user-1"] and trace["distinct_id"] == "user-1"
    tid = trace["properties"]["$ai_trace_id"]
    assert {g["properties"]["$ai_trace_id"] for g in gens} == {tid}
    assert trace["properties"]["$ai_trace_generations"] == 2
    assert trace["properties"]["$ai_trace_input_tokens"] == 24
    assert trace["properties"]["$ai_trace_output_tokens"] == 10
    total = sum(g["properties"]["$ai_total_cost_usd"] for g in gens)
    assert trace["properties"]["$ai_trace_cost_usd"] == pytest.approx(total)
