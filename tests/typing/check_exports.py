"""Type-checked by `make test` (mypy --strict, see pyproject.toml), never run: what obs hands out can be
named from ``obs`` in type hints — the generation and span objects, and the typed event models."""

from __future__ import annotations

from typing import Any

from typing_extensions import assert_type

import obs


def record(gen: obs.Generation) -> None:
    gen.set(input_tokens=3, output_tokens=1)
    gen.record({"usage": {"prompt_tokens": 3, "completion_tokens": 1}})


def annotate(span: obs.Span) -> str:
    span.set(output="done", step="retrieve")
    return span.trace_id


def generation_block() -> None:
    with obs.trace_generation("openai", "gpt-4o-mini") as gen:
        assert_type(gen, obs.Generation)
        record(gen)


async def span_block() -> None:
    with obs.trace("chat") as t:
        assert_type(t, obs.Span)
        annotate(t)
    async with obs.span("retrieve") as s:
        assert_type(s, obs.Span)


def wire(event: obs.Event) -> dict[str, Any]:
    return obs.events.to_wire(event)


def tokens(event: obs.AIGenerationEvent) -> int | None:
    return event.input_tokens


def models() -> list[type[obs.Event]]:
    return [
        obs.CustomEvent,
        obs.IdentifyEvent,
        obs.GroupIdentifyEvent,
        obs.ExceptionEvent,
        obs.AIGenerationEvent,
        obs.AIEmbeddingEvent,
        obs.AISpanEvent,
        obs.AITraceEvent,
        obs.FeatureFlagCalledEvent,
    ]


def level(event: obs.ExceptionEvent) -> str | None:
    return event.level


def flag(event: obs.FeatureFlagCalledEvent) -> bool | str | None:
    return event.response


def trace_summary(event: obs.AITraceEvent, span: obs.AISpanEvent) -> tuple[int | None, Any]:
    return event.generations, span.input_state
