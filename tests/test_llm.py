"""trace_generation and the worker-side fields of AI events (cost, payload limits)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import obs
from obs._config import load_settings
from obs._llm import Fields
from obs._scrub import Scrubber
from obs.sinks import MemorySink


@pytest.fixture
def sink() -> Iterator[MemorySink]:
    s = MemorySink()
    obs.init(api_key="phc_test", sinks=[s], llm_payloads=True)
    yield s


def _gens(sink: MemorySink) -> list[dict[str, Any]]:
    assert obs.flush(5)
    return [e["properties"] for e in sink.named("$ai_generation")]


def test_trace_generation_with_set(sink: MemorySink) -> None:
    with obs.trace_generation("openai", "gpt-4o", input=[{"role": "user", "content": "hi"}]) as gen:
        gen.set(output="hello", input_tokens=8, output_tokens=2, http_status=200, team="search")
    (p,) = _gens(sink)
    assert p["$ai_input_tokens"] == 8 and p["$ai_output_tokens"] == 2 and p["$ai_http_status"] == 200
    assert p["team"] == "search" and p["$ai_input"] == [{"role": "user", "content": "hi"}]
    assert p["$ai_output_choices"] == [{"role": "assistant", "content": [{"type": "text", "text": "hello"}]}]
    assert p["$ai_latency"] >= 0 and "$ai_stream" not in p


@pytest.mark.asyncio
async def test_async_trace_generation_records_a_response_and_errors(sink: MemorySink) -> None:
    async with obs.trace_generation(name="anthropic-call") as gen:
        gen.record(
            {
                "type": "message",
                "model": "claude-haiku-4-5",
                "content": [{"type": "text", "text": "ok"}],
                "stop_reason": "end_turn",
                "usage": {"input_tokens": 5, "output_tokens": 1, "cache_read_input_tokens": 2},
            }
        )
    with pytest.raises(TimeoutError):
        async with obs.trace_generation("openai", "gpt-4o"):
            raise TimeoutError("slow")
    ok, failed = _gens(sink)
    assert ok["$ai_provider"] == "anthropic" and ok["$ai_model"] == "claude-haiku-4-5"
    assert ok["$ai_cache_read_input_tokens"] == 2 and ok["$ai_span_name"] == "anthropic-call"
    assert failed["$ai_is_error"] is True and failed["$ai_error"] == "TimeoutError: slow"
    assert "$ai_input_tokens" not in failed


def test_trace_generation_while_off_is_a_no_op() -> None:
    obs.init()
    with obs.trace_generation("openai", "gpt-4o") as gen:
        gen.set(input_tokens=1)
        gen.record({"usage": {"input_tokens": 1}})


def test_trim_budget_marker_and_scrub() -> None:
    settings = load_settings(api_key="phc_x", llm_payloads=True, llm_payload_max_chars=10)
    fields = Fields(settings, Scrubber())
    assert fields.trim({"a": "12345", "b": ["6789012345", "x"]}) == {
        "a": "12345",
        "b": ["67890…[truncated 5 chars]", "…[truncated 1 chars]"],
    }
    assert fields.trim("Authorization: Bearer abc.def.ghi") != "Authorization: Bearer abc.def.ghi"


def test_payload_fields_dropped_when_off_and_cost_for_unknown_model() -> None:
    fields = Fields(load_settings(api_key="phc_x"), Scrubber())
    out = fields(
        "ai_generation",
        {"input": "x", "output_choices": ["y"], "provider": "openai", "model": "nope-1", "input_tokens": 3},
        lambda v, k: v,
    )
    assert out == {"provider": "openai", "model": "nope-1", "input_tokens": 3}


def test_base64_media_is_replaced_by_a_placeholder() -> None:
    settings = load_settings(api_key="phc_x", llm_payloads=True)
    fields = Fields(settings, Scrubber())
    b64 = "QUJD" * 100
    payload = [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "input_audio", "input_audio": {"data": b64, "format": "wav"}},
        {"type": "image", "source": {"type": "base64", "media_type": "application/pdf", "data": b64}},
        {"type": "text", "text": b64},  # text is text, however it looks
        {"url": b64},  # a url outside image_url is not media either
    ]
    assert fields.trim(payload) == [
        {"type": "image_url", "image_url": {"url": "[base64 image redacted]"}},
        {"type": "input_audio", "input_audio": {"data": "[base64 audio redacted]", "format": "wav"}},
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "[base64 file redacted]"},
        },
        {"type": "text", "text": b64},
        {"url": b64},
    ]


def test_error_message_only_with_payloads() -> None:
    for payloads, expected in ((True, "TimeoutError: read took 30s"), (False, "TimeoutError")):
        sink = MemorySink()
        obs.init(api_key="phc_test", sinks=[sink], llm_payloads=payloads)
        with pytest.raises(TimeoutError), obs.trace_generation("openai", "gpt-4o"):
            raise TimeoutError("read took 30s")
        (p,) = _gens(sink)
        assert p["$ai_is_error"] is True and p["$ai_error"] == expected


def test_token_counts_set_as_properties_win_and_are_passthrough(sink: MemorySink) -> None:
    with obs.trace_generation("openai", "gpt-4o", properties={"$ai_input_tokens": 5}) as gen:
        gen.set(input_tokens=8, output_tokens=2)
    (p,) = _gens(sink)
    assert p["$ai_input_tokens"] == 5 and p["$ai_output_tokens"] == 2
    assert p["$ai_tokens_source"] == "passthrough"
