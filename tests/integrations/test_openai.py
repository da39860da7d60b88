"""obs.instrument_openai against the real `openai` client talking to a local OpenAI-shaped server."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

import obs
from obs.sinks import MemorySink
from tests.capture_server import CaptureServer
from tests.llm_servers import LLMReply, LLMServer

ROOT = str(Path(__file__).resolve().parents[2])
MESSAGES = [{"role": "user", "content": "What is the weather in Paris?"}]
TOOLS = [
    {
        "type": "function",
        "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
    }
]


@pytest.fixture
def sink() -> Iterator[MemorySink]:
    s = MemorySink()
    obs.init(api_key="phc_test", sinks=[s])
    yield s


def _client(srv: LLMServer, **kw: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=srv.openai_base_url, api_key="sk-test", max_retries=0, **kw)


def _events(sink: MemorySink, name: str = "$ai_generation") -> list[dict[str, Any]]:
    assert obs.flush(5)
    return [e["properties"] for e in sink.named(name)]


def _one(sink: MemorySink, name: str = "$ai_generation") -> dict[str, Any]:
    events = _events(sink, name)
    assert len(events) == 1, events
    return events[0]


def test_chat_completion(sink: MemorySink, llm_server: LLMServer) -> None:
    llm_server.script(LLMReply(input_tokens=1000, output_tokens=500, cached_tokens=200, reasoning_tokens=7))
    client = obs.instrument_openai(_client(llm_server))
    r = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, temperature=0.2)
    assert r.choices[0].message.content == "Hello from the local model"
    p = _one(sink)
    assert p["$ai_provider"] == "openai" and p["$ai_model"] == "gpt-4o-mini"
    assert p["$ai_input_tokens"] == 1000 and p["$ai_output_tokens"] == 500
    assert p["$ai_cache_read_input_tokens"] == 200 and p["$ai_reasoning_tokens"] == 7
    assert p["$ai_cache_reporting_exclusive"] is False
    assert p["$ai_model_parameters"] == {"temperature": 0.2, "service_tier": "default"}
    assert p["$ai_service_tier"] == "default" and p["$ai_lib_version"] == obs.__version__
    assert p["$ai_usage"]["prompt_tokens_details"]["cached_tokens"] == 200  # the provider's block as sent
    assert p["$ai_http_status"] == 200 and p["$ai_stream"] is False
    assert p["$ai_base_url"] == str(client.base_url)
    assert p["$ai_stop_reason"] == "stop" and p["$ai_latency"] > 0
    # 800 uncached at $0.15/M, 200 cached at $0.075/M, 500 out at $0.60/M (genai-prices' gpt-4o-mini)
    assert p["$ai_input_cost_usd"] == pytest.approx((800 * 0.15 + 200 * 0.075) / 1e6)
    assert p["$ai_output_cost_usd"] == pytest.approx(500 * 0.6 / 1e6)
    assert p["$ai_total_cost_usd"] == pytest.approx(p["$ai_input_cost_usd"] + p["$ai_output_cost_usd"])
    assert "$ai_input" not in p and "$ai_output_choices" not in p  # payloads are off by default
    assert p["$ai_trace_id"] == p["$ai_span_id"]  # a call outside any trace is its own trace


def test_stream_without_usage_requested_reports_tokens_and_yields_the_same_chunks(
    sink: MemorySink, llm_server: LLMServer
) -> None:
    bare = _client(llm_server)
    expected = [
        c.model_dump(exclude={"id", "created"})
        for c in bare.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    ]
    client = obs.instrument_openai(_client(llm_server))
    got = [
        c.model_dump(exclude={"id", "created"})
        for c in client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    ]
    assert got == expected  # the usage-only chunk obs asked for is not shown to the caller
    assert llm_server.requests[-1].body is not None
    assert llm_server.requests[-1].body["stream_options"] == {"include_usage": True}
    p = _one(sink)
    assert p["$ai_input_tokens"] == 12 and p["$ai_output_tokens"] == 5
    assert p["$ai_stream"] is True and p["$ai_stream_completed"] is True
    assert 0 < p["$ai_time_to_first_token"] <= p["$ai_latency"]
    assert p["$ai_tokens_source"] == "sdk"


def test_stream_with_usage_requested_keeps_the_usage_chunk(sink: MemorySink, llm_server: LLMServer) -> None:
    client = obs.instrument_openai(_client(llm_server))
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == 12
    assert _one(sink)["$ai_output_tokens"] == 5


def test_stream_closed_early_reports_what_was_consumed(sink: MemorySink, llm_server: LLMServer) -> None:
    obs.init(api_key="phc_test", sinks=[sink], llm_payloads=True)
    llm_server.script(LLMReply(text="one two three four five six seven eight"))
    client = obs.instrument_openai(_client(llm_server))
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    it = iter(stream)
    next(it), next(it), next(it)  # the role chunk and two words
    stream.close()
    p = _one(sink)
    assert p["$ai_stream_completed"] is False
    assert "$ai_is_error" not in p and "$ai_time_to_first_token" in p
    # What was read is the output; the usage chunk never came: the counts are unknown, so absent.
    text = p["$ai_output_choices"][0]["content"][0]["text"]
    assert text.startswith("one two ") and text != "one two three four five six seven eight"
    assert "$ai_output_tokens" not in p and "$ai_input_tokens" not in p


def test_stream_failing_midway_is_an_error_with_partial_counts(
    sink: MemorySink, llm_server: LLMServer
) -> None:
    reply = LLMReply(text="one two three four five six", break_after=4)
    llm_server.script(reply, reply)

    def consume(client: openai.OpenAI) -> tuple[type[BaseException], int]:
        received = 0
        with pytest.raises(Exception) as caught:
            for _ in client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):
                received += 1
        return type(caught.value), received

    bare = consume(_client(llm_server))
    assert consume(obs.instrument_openai(_client(llm_server))) == bare  # same error, same chunks
    p = _one(sink)
    assert p["$ai_is_error"] is True and p["$ai_stream_completed"] is False
    assert "$ai_output_tokens" not in p and p["$ai_http_status"] == 0  # the error carries no status
    # What the caller got (the SDK wraps the broken stream), without its message: payloads are off.
    assert p["$ai_error"].startswith("APIConnectionError (caused by RemoteProtocolError")


@pytest.mark.parametrize(
    ("status", "error"), [(429, openai.RateLimitError), (500, openai.InternalServerError)]
)
@pytest.mark.parametrize("payloads", [False, True])
def test_http_error_is_an_error_generation_and_the_caller_gets_the_sdk_error(
    sink: MemorySink, llm_server: LLMServer, status: int, error: type[Exception], payloads: bool
) -> None:
    obs.init(api_key="phc_test", sinks=[sink], llm_payloads=payloads)
    llm_server.script(LLMReply(status=status))
    client = obs.instrument_openai(_client(llm_server))
    with pytest.raises(error) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert caught.value.status_code == status  # type: ignore[attr-defined]
    p = _one(sink)
    assert p["$ai_is_error"] is True and p["$ai_http_status"] == status
    if payloads:  # the text of the exception the caller got
        assert p["$ai_error"] == str(caught.value)
    else:  # its type, status, the provider's error code and request id; never the message
        request_id = caught.value.request_id  # type: ignore[attr-defined]
        assert p["$ai_error"].startswith(f"{error.__name__}: {status} ")
        assert f"request_id={request_id}" in p["$ai_error"] and "Rate limit" not in p["$ai_error"]
    for key in ("$ai_input_tokens", "$ai_output_tokens", "$ai_total_cost_usd"):
        assert key not in p  # no response, no counts: absent rather than zero


def test_timeout_is_an_error_generation_without_a_status(sink: MemorySink, llm_server: LLMServer) -> None:
    llm_server.script(LLMReply(delay=1.0))
    client = obs.instrument_openai(_client(llm_server, timeout=0.2))
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    p = _one(sink)
    assert p["$ai_is_error"] is True and p["$ai_error"].startswith("APITimeoutError (caused by ReadTimeout")
    assert p["$ai_http_status"] == 0 and "$ai_input_tokens" not in p


def test_retries_are_one_event_per_attempt(sink: MemorySink, llm_server: LLMServer) -> None:
    llm_server.script(LLMReply(status=500, headers={"x-should-retry": "true"}), LLMReply())
    client = obs.instrument_openai(
        openai.OpenAI(base_url=llm_server.openai_base_url, api_key="sk-test", max_retries=1)
    )
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    first, second = _events(sink)
    assert first["$ai_http_status"] == 500 and first["$ai_is_error"] is True
    assert "$ai_retry_attempt" not in first
    assert second["$ai_http_status"] == 200 and second["$ai_retry_attempt"] == 1


def test_tool_calls_json_and_streamed(sink: MemorySink, llm_server: LLMServer) -> None:
    reply = LLMReply(text="", tool_calls=[("get_weather", {"city": "Paris"})])
    llm_server.script(reply, reply)
    obs.init(api_key="phc_test", sinks=[sink], llm_payloads=True)
    client = obs.instrument_openai(_client(llm_server))
    r = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, tools=TOOLS)  # type: ignore[arg-type]
    assert r.choices[0].message.tool_calls is not None
    list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, tools=TOOLS, stream=True))  # type: ignore[call-overload]
    gens = _events(sink)
    assert len(gens) == 2
    for p in gens:
        assert p["$ai_tools"] == TOOLS and p["$ai_stop_reason"] == "tool_calls"
        (choice,) = p["$ai_output_choices"]
        (call,) = choice["content"]
        assert call["type"] == "function" and call["id"].startswith("call_")
        assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}  # as sent
    spans = _events(sink, "$ai_span")
    assert [s["$ai_span_name"] for s in spans] == ["get_weather", "get_weather"]
    assert {s["$ai_parent_id"] for s in spans} == {p["$ai_span_id"] for p in gens}


def test_responses_api_json_stream_and_stored_prompt(sink: MemorySink, llm_server: LLMServer) -> None:
    llm_server.script(LLMReply(cached_tokens=4, reasoning_tokens=2), LLMReply(), LLMReply(model="gpt-4.1"))
    client = obs.instrument_openai(_client(llm_server))
    client.responses.create(model="gpt-4o-mini", input="hi", max_output_tokens=50)
    for _ in client.responses.create(model="gpt-4o-mini", input="hi", stream=True):
        pass
    client.responses.create(prompt={"id": "pmpt_123"})
    plain, streamed, stored = _events(sink)
    assert plain["$ai_input_tokens"] == 12 and plain["$ai_cache_read_input_tokens"] == 4
    assert plain["$ai_reasoning_tokens"] == 2
    assert plain["$ai_model_parameters"] == {"service_tier": "default"}  # posthog-python's list of keys
    assert streamed["$ai_stream"] is True and streamed["$ai_stream_completed"] is True
    assert streamed["$ai_input_tokens"] == 12 and streamed["$ai_output_tokens"] == 5
    assert stored["$ai_model"] == "gpt-4.1"  # the request named none: the response's model
    assert stored["$ai_total_cost_usd"] > 0


def test_embeddings_are_ai_embedding_events(sink: MemorySink, llm_server: LLMServer) -> None:
    client = obs.instrument_openai(_client(llm_server))
    client.embeddings.create(model="text-embedding-3-small", input="hello")
    p = _one(sink, "$ai_embedding")
    assert p["$ai_model"] == "text-embedding-3-small" and p["$ai_input_tokens"] == 12
    assert "$ai_output_tokens" not in p and p["$ai_total_cost_usd"] > 0
    assert _events(sink) == []


def test_payloads_are_sent_only_when_enabled_trimmed_and_scrubbed(llm_server: LLMServer) -> None:
    sink = MemorySink()
    obs.init(api_key="phc_test", sinks=[sink], llm_payloads=True, llm_payload_max_chars=40)
    llm_server.script(
        LLMReply(text="short answer"), LLMReply(text="a much longer answer than forty characters")
    )
    client = obs.instrument_openai(_client(llm_server))
    client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "password: hunter2"}]
    )
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x" * 100}])
    scrubbed, cut = _events(sink)
    assert scrubbed["$ai_input"] == [{"role": "user", "content": "password: [redacted]"}]
    text = [{"type": "text", "text": "short answer"}]
    assert scrubbed["$ai_output_choices"] == [{"role": "assistant", "content": text}]
    # The limit is for the whole payload: "user" uses 4 of the 40 characters.
    assert cut["$ai_input"] == [{"role": "user", "content": "x" * 36 + "…[truncated 64 chars]"}]
    (choice,) = cut["$ai_output_choices"]
    # after "assistant" and "text" (13 characters), 27 are left of the 42 of the answer
    assert choice["content"][0]["text"] == "a much longer answer than f…[truncated 15 chars]"


def test_ai_route_setting_sends_through_the_ai_endpoint(server: CaptureServer, llm_server: LLMServer) -> None:
    obs.init(api_key="phc_test", host=server.url, ai_route=True)
    client = obs.instrument_openai(_client(llm_server))
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert obs.flush(5)
    paths = {r.path for r in server.received}
    assert any(p.startswith("/i/v0/ai") for p in paths), paths
    assert not any(p.startswith("/batch") for p in paths)


def test_default_route_is_the_batch_endpoint(server: CaptureServer, llm_server: LLMServer) -> None:
    obs.init(api_key="phc_test", host=server.url)
    client = obs.instrument_openai(_client(llm_server))
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert obs.flush(5)
    assert [r.path for r in server.received] == ["/batch/"]
    assert server.received[0].events[0]["event"] == "$ai_generation"


def test_unknown_model_gets_no_cost(sink: MemorySink, llm_server: LLMServer) -> None:
    client = obs.instrument_openai(_client(llm_server))
    client.chat.completions.create(model="my-finetune-that-no-one-prices", messages=MESSAGES)
    p = _one(sink)
    assert p["$ai_input_tokens"] == 12
    assert not any(k.endswith("_cost_usd") for k in p)


def test_disabled_sdk_sends_nothing_and_the_client_works(llm_server: LLMServer) -> None:
    obs.init()  # no POSTHOG_API_KEY
    client = obs.instrument_openai(_client(llm_server))
    r = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert r.usage is not None and r.usage.prompt_tokens == 12
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    assert chunks[-1].usage is None  # nothing injected while off
    assert llm_server.requests[-1].body is not None and "stream_options" not in llm_server.requests[-1].body


def test_instrumenting_twice_is_harmless_and_other_objects_are_refused(
    sink: MemorySink, llm_server: LLMServer
) -> None:
    client = _client(llm_server)
    assert obs.instrument_openai(obs.instrument_openai(client)) is client
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert len(_events(sink)) == 1
    with pytest.raises(TypeError, match="instrument_openai"):
        obs.instrument_openai(object())
    copy = client.with_options(timeout=5)  # copies share the instrumented transport
    copy.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert len(_events(sink)) == 2


def test_trace_llm_around_an_instrumented_call_sends_one_generation(
    sink: MemorySink, llm_server: LLMServer
) -> None:
    client = obs.instrument_openai(_client(llm_server))

    @obs.trace_llm(name="answer")
    def answer(question: str) -> str:
        r = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": question}]
        )
        return r.choices[0].message.content or ""

    assert answer("hi") == "Hello from the local model"
    p = _one(sink)
    assert p["$ai_span_name"] == "answer" and p["$ai_model"] == "gpt-4o-mini"
    assert p["$ai_input_tokens"] == 12 and p["$ai_http_status"] == 200


@pytest.mark.asyncio
async def test_async_client_json_and_stream(sink: MemorySink, llm_server: LLMServer) -> None:
    client = obs.instrument_openai(
        openai.AsyncOpenAI(base_url=llm_server.openai_base_url, api_key="sk-test", max_retries=0)
    )
    await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    stream = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    chunks = [c async for c in stream]
    assert all(c.choices for c in chunks)
    plain, streamed = _events(sink)
    assert plain["$ai_input_tokens"] == streamed["$ai_input_tokens"] == 12
    assert streamed["$ai_stream_completed"] is True and streamed["$ai_output_tokens"] == 5


@pytest.mark.asyncio
async def test_async_stream_cancelled_midway_reports_what_was_consumed(
    sink: MemorySink, llm_server: LLMServer
) -> None:
    llm_server.script(LLMReply(text="a b c d e f g h i j", event_delay=0.05))
    client = obs.instrument_openai(
        openai.AsyncOpenAI(base_url=llm_server.openai_base_url, api_key="sk-test", max_retries=0)
    )
    seen = asyncio.Event()

    async def consume() -> None:
        stream = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content == "c ":
                seen.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(seen.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    p = _one(sink)
    assert p["$ai_stream_completed"] is False and "$ai_is_error" not in p
    assert p["cancelled"] is True
    assert "$ai_output_tokens" not in p and 0 < p["$ai_time_to_first_token"] <= p["$ai_latency"]


def test_stream_left_unread_and_unclosed_is_reported_by_exit(
    server: CaptureServer, llm_server: LLMServer
) -> None:
    # The caller breaks out of the loop and never closes the stream: the SDK closes the response only
    # when the cyclic GC collects the stream, so obs collects before it shuts down at interpreter exit.
    llm_server.script(LLMReply(text="one two three four five six seven eight"))
    code = f"""
import obs, openai
obs.init(api_key="phc_test", host={server.url!r}, flush_interval=60)
client = obs.instrument_openai(
    openai.OpenAI(base_url={llm_server.openai_base_url!r}, api_key="k", max_retries=0)
)
stream = client.chat.completions.create(
    model="gpt-4o-mini", messages=[{{"role": "user", "content": "hi"}}], stream=True
)
for i, chunk in enumerate(stream):
    if i == 2:
        break
del stream, chunk
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POSTHOG_", "OBS_"))}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT, env=env
    )
    assert done.returncode == 0, done.stderr
    (gen,) = [e["properties"] for e in server.events() if e["event"] == "$ai_generation"]
    assert gen["$ai_stream_completed"] is False and "$ai_is_error" not in gen
    assert gen["$ai_latency"] < 5
