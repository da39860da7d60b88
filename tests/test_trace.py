"""obs.trace / obs.span: ids through contextvars, generators, summaries, errors, concurrency."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

import obs
from obs.sinks import MemorySink


@pytest.fixture
def sink() -> Iterator[MemorySink]:
    s = MemorySink()
    obs.init(api_key="phc_test", sinks=[s], llm_payloads=True)
    yield s


def _named(sink: MemorySink, name: str) -> list[dict[str, Any]]:
    assert obs.flush(5)
    return [e["properties"] for e in sink.named(name)]


def _generation(tokens: tuple[int, int] = (100, 10), *, tool: bool = False, fail: bool = False) -> None:
    with obs.trace_generation("openai", "gpt-4o-mini") as gen:
        gen.set(input_tokens=tokens[0], output_tokens=tokens[1])
        if tool:
            gen.record(
                {
                    "object": "chat.completion",
                    "choices": [
                        {
                            "message": {
                                "tool_calls": [
                                    {"id": "c1", "function": {"name": "search", "arguments": "{}"}}
                                ]
                            }
                        }
                    ],
                }
            )
        if fail:
            raise ValueError("bad")


def test_nesting_ids_and_summary(sink: MemorySink) -> None:
    with obs.trace("answer", input={"q": "why"}) as t:
        _generation()
        with obs.span("retrieve") as s:
            _generation((50, 5), tool=True)
        with pytest.raises(ValueError), obs.span("flaky"):
            _generation(fail=True)
        t.set(output="because", topic="physics")
    (trace,) = _named(sink, "$ai_trace")
    spans = {p["$ai_span_name"]: p for p in _named(sink, "$ai_span")}
    gens = _named(sink, "$ai_generation")
    tid = t.trace_id
    assert trace["$ai_trace_id"] == trace["$ai_span_id"] == tid and "$ai_parent_id" not in trace
    assert trace["$ai_input_state"] == {"q": "why"} and trace["$ai_output_state"] == "because"
    assert trace["topic"] == "physics" and trace["$ai_latency"] > 0
    assert spans["retrieve"]["$ai_parent_id"] == tid and spans["retrieve"]["$ai_span_id"] == s.span_id
    assert spans["flaky"]["$ai_is_error"] is True and spans["flaky"]["$ai_error"] == "ValueError: bad"
    assert spans["search"]["$ai_parent_id"] == gens[1]["$ai_span_id"]  # the tool call the model made
    assert [g["$ai_parent_id"] for g in gens] == [tid, s.span_id, spans["flaky"]["$ai_span_id"]]
    assert {g["$ai_trace_id"] for g in gens} == {tid}
    assert trace["$ai_trace_generations"] == 3
    assert trace["$ai_trace_input_tokens"] == 250 and trace["$ai_trace_output_tokens"] == 25
    assert trace["$ai_trace_tool_calls"] == 1
    assert trace["$ai_trace_errors"] == 2  # the failed generation and the span it failed
    assert trace["$ai_trace_cost_usd"] == pytest.approx(sum(g["$ai_total_cost_usd"] for g in gens))


def test_exceptions_inside_carry_the_trace_ids(sink: MemorySink) -> None:
    with obs.trace("job") as t, obs.span("step") as s:
        obs.capture_exception(KeyError("x"))
    (exc,) = _named(sink, "$exception")
    assert exc["$ai_trace_id"] == t.trace_id and exc["$ai_span_id"] == s.span_id


def test_decorated_generator_span_lasts_until_the_stream_ends(sink: MemorySink) -> None:
    @obs.span("stream")
    def stream() -> Iterator[int]:
        for i in range(3):
            _generation((1, 1))
            yield i

    with obs.trace("request") as t:
        it = stream()
        assert next(it) == 0
        assert _named(sink, "$ai_span") == []  # still streaming
        assert list(it) == [1, 2]
    (span,) = _named(sink, "$ai_span")
    gens = _named(sink, "$ai_generation")
    assert span["$ai_parent_id"] == t.trace_id and "$ai_output_state" not in span
    assert [g["$ai_parent_id"] for g in gens] == [span["$ai_span_id"]] * 3


@pytest.mark.asyncio
async def test_async_decorators_and_concurrent_traces_do_not_mix(sink: MemorySink) -> None:
    @obs.trace("handle")
    async def handle(user: str) -> str:
        async with obs.span("think"):
            await asyncio.sleep(0.01)
            _generation()
        return f"done {user}"

    results = await asyncio.gather(*(handle(u) for u in ("a", "b", "c")))
    assert results == ["done a", "done b", "done c"]
    traces = _named(sink, "$ai_trace")
    spans = _named(sink, "$ai_span")
    gens = _named(sink, "$ai_generation")
    assert len({t["$ai_trace_id"] for t in traces}) == 3
    assert {t["$ai_output_state"] for t in traces} == set(results)  # a decorated trace's output: the result
    by_span = {s["$ai_span_id"]: s for s in spans}
    for g in gens:
        assert by_span[g["$ai_parent_id"]]["$ai_trace_id"] == g["$ai_trace_id"]
    assert all(t["$ai_trace_generations"] == 1 for t in traces)


def test_span_outside_a_trace_and_trace_inside_a_trace(sink: MemorySink) -> None:
    with obs.span("alone") as alone:
        pass
    with obs.trace("outer") as outer, obs.trace("inner") as inner:
        pass
    assert inner.trace_id == outer.trace_id
    traces = _named(sink, "$ai_trace")
    spans = _named(sink, "$ai_span")
    assert [t["$ai_span_name"] for t in traces] == ["outer"]
    assert {s["$ai_span_name"] for s in spans} == {"alone", "inner"}
    assert alone.trace_id == alone.span_id


def test_distinct_id_flows_to_everything_inside(sink: MemorySink) -> None:
    with obs.trace("chat", distinct_id="user-7"), obs.span("step"):
        _generation()
    assert obs.flush(5)
    assert {e["distinct_id"] for e in sink.events} == {"user-7"}


def test_without_a_person_a_traces_events_share_its_trace_id(sink: MemorySink) -> None:
    with obs.trace("anonymous") as t:
        _generation(tool=True)
    assert obs.flush(5)
    assert {e["distinct_id"] for e in sink.events} == {t.trace_id}
    assert all(e["properties"]["$process_person_profile"] is False for e in sink.events)


def test_payload_states_need_payloads_on() -> None:
    sink = MemorySink()
    obs.init(api_key="phc_test", sinks=[sink])
    with obs.trace("t", input="secret") as t:
        t.set(output="answer")
    (trace,) = _named(sink, "$ai_trace")
    assert "$ai_input_state" not in trace and "$ai_output_state" not in trace


def test_off_and_bad_names() -> None:
    obs.init()
    with obs.trace("t") as t, obs.span("s"):
        assert t.trace_id
    with pytest.raises(ValueError, match="needs a name"):
        obs.trace("")


@pytest.mark.asyncio
async def test_one_span_instance_shared_by_concurrent_tasks(sink: MemorySink) -> None:
    step = obs.span("step")  # one instance, entered by tasks that finish in another order

    async def run(delay: float) -> str:
        async with step as s:
            await asyncio.sleep(delay)
            _generation()
            return s.span_id

    second, first = await asyncio.gather(run(0.0), run(0.05))  # the first in is the first out
    spans = {p["$ai_span_id"]: p for p in _named(sink, "$ai_span")}
    gens = _named(sink, "$ai_generation")
    assert set(spans) == {first, second}
    assert sorted(g["$ai_parent_id"] for g in gens) == sorted([first, second])
    assert spans[first]["$ai_latency"] > spans[second]["$ai_latency"]
