"""@trace_llm on every kind of callable, reading real provider responses and stream chunks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import anthropic
import openai
import pytest

import obs
from obs.sinks import MemorySink
from tests.llm_servers import LLMReply, LLMServer

MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]


@pytest.fixture
def sink() -> Iterator[MemorySink]:
    s = MemorySink()
    obs.init(api_key="phc_test", sinks=[s], llm_payloads=True)
    yield s


def _gens(sink: MemorySink) -> list[dict[str, Any]]:
    assert obs.flush(5)
    return [e["properties"] for e in sink.named("$ai_generation")]


def test_sync_function_returning_an_openai_response(sink: MemorySink, llm_server: LLMServer) -> None:
    client = openai.OpenAI(base_url=llm_server.openai_base_url, api_key="sk-test", max_retries=0)

    @obs.trace_llm
    def ask(messages: list[Any]) -> Any:
        return client.chat.completions.create(model="gpt-4o-mini", messages=messages)

    r = ask(MESSAGES)
    assert r.choices[0].message.content == "Hello from the local model"
    (p,) = _gens(sink)
    assert p["$ai_provider"] == "openai" and p["$ai_model"] == "gpt-4o-mini"
    assert p["$ai_input_tokens"] == 12 and p["$ai_output_tokens"] == 5
    assert p["$ai_span_name"].endswith("ask") and p["$ai_total_cost_usd"] > 0
    assert p["$ai_input"] == MESSAGES  # the `messages` argument, payloads being on
    text = {"type": "text", "text": "Hello from the local model"}
    assert p["$ai_output_choices"] == [{"role": "assistant", "content": [text]}]  # posthog-python's shape


@pytest.mark.asyncio
async def test_async_function_returning_an_anthropic_message(sink: MemorySink, llm_server: LLMServer) -> None:
    client = anthropic.AsyncAnthropic(base_url=llm_server.anthropic_base_url, api_key="k", max_retries=0)
    llm_server.script(LLMReply(cached_tokens=5))

    @obs.trace_llm(properties={"feature": "summary"})
    async def summarise(prompt: str) -> Any:
        return await client.messages.create(
            model="claude-haiku-4-5", max_tokens=10, messages=[{"role": "user", "content": prompt}]
        )

    await summarise("text")
    (p,) = _gens(sink)
    assert p["$ai_provider"] == "anthropic" and p["$ai_cache_read_input_tokens"] == 5
    assert p["feature"] == "summary" and p["$ai_input"] == "text"


def test_dict_with_usage_and_options_fill_the_gaps(sink: MemorySink) -> None:
    @obs.trace_llm(provider="mistral", model="mistral-large-latest")
    def call() -> dict[str, Any]:
        return {"output": "hi", "usage": {"input_tokens": 10, "output_tokens": 3}}

    assert call()["output"] == "hi"
    (p,) = _gens(sink)
    assert p["$ai_provider"] == "mistral" and p["$ai_model"] == "mistral-large-latest"
    assert p["$ai_input_tokens"] == 10 and p["$ai_output_tokens"] == 3


def test_failure_is_an_error_generation_and_the_exception_is_unchanged(sink: MemorySink) -> None:
    error = RuntimeError("provider down")

    @obs.trace_llm(provider="openai", model="gpt-4o")
    def call() -> None:
        raise error

    with pytest.raises(RuntimeError) as caught:
        call()
    assert caught.value is error
    (p,) = _gens(sink)
    assert p["$ai_is_error"] is True and p["$ai_error"] == "RuntimeError: provider down"
    assert "$ai_input_tokens" not in p and "$ai_output_tokens" not in p


def test_generator_yielding_openai_chunks(sink: MemorySink, llm_server: LLMServer) -> None:
    client = openai.OpenAI(base_url=llm_server.openai_base_url, api_key="sk-test", max_retries=0)

    @obs.trace_llm
    def stream(messages: list[Any]) -> Iterator[Any]:
        yield from client.chat.completions.create(
            model="gpt-4o-mini", messages=messages, stream=True, stream_options={"include_usage": True}
        )

    chunks = list(stream(MESSAGES))
    assert chunks[-1].usage is not None
    (p,) = _gens(sink)
    assert p["$ai_stream"] is True and p["$ai_stream_completed"] is True
    assert p["$ai_input_tokens"] == 12 and p["$ai_output_tokens"] == 5
    assert 0 < p["$ai_time_to_first_token"] <= p["$ai_latency"]
    assert p["$ai_output_choices"][0]["content"] == [{"type": "text", "text": "Hello from the local model"}]


@pytest.mark.asyncio
async def test_async_generator_of_text_closed_early(sink: MemorySink) -> None:
    @obs.trace_llm(provider="openai", model="gpt-4o")
    async def words() -> AsyncIterator[str]:
        for w in ("a ", "b ", "c ", "d "):
            yield w

    gen = words()
    assert [await gen.__anext__(), await gen.__anext__()] == ["a ", "b "]
    await gen.aclose()
    (p,) = _gens(sink)
    assert p["$ai_stream_completed"] is False and "$ai_is_error" not in p
    assert "$ai_output_tokens" not in p and "$ai_tokens_source" not in p  # no counts reported
    assert p["$ai_output_choices"][0]["content"] == [{"type": "text", "text": "a b "}]


def test_off_calls_straight_through(llm_server: LLMServer) -> None:
    obs.init()

    @obs.trace_llm
    def call(x: int) -> int:
        return x + 1

    assert call(1) == 2


def test_payloads_off_sends_no_input_or_output() -> None:
    sink = MemorySink()
    obs.init(api_key="phc_test", sinks=[sink])

    @obs.trace_llm(provider="openai", model="gpt-4o")
    def call(prompt: str) -> dict[str, Any]:
        return {"usage": {"prompt_tokens": 3, "completion_tokens": 1}, "choices": []}

    call("secret prompt")
    (p,) = _gens(sink)
    assert p["$ai_input_tokens"] == 3 and "$ai_input" not in p and "$ai_output_choices" not in p
