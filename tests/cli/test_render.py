"""obs.cli._render: lines for events obs really built (through obs.testing's real pipeline), and for
events of any other shape, which must never break the display."""

from __future__ import annotations

import json
import re
from typing import Any

import obs
import obs.testing
from obs.cli._render import clean, describe, render, top_frame


def parse(text: str) -> Any:
    return json.loads(text)


def test_the_top_frame_is_the_innermost_in_app_one() -> None:
    with obs.testing.capture_events() as captured:
        try:
            parse("{not json")  # raised inside the json module: library frames above ours
        except ValueError:
            obs.capture_exception(distinct_id="u")
    (event,) = captured.of_kind("exception")
    frame = top_frame(event["properties"])
    assert frame is not None
    assert frame["function"] == "parse" and frame["in_app"] is True
    text = describe(event)
    assert re.fullmatch(
        r"JSONDecodeError: Expecting property name .*  at tests/cli/test_render\.py:\d+ in parse", text
    )
    lines = [line.plain for line in render([event])]
    assert lines[1].strip() == "> return json.loads(text)"


def test_a_trace_with_an_exception_inside_is_one_tree() -> None:
    with obs.testing.capture_events() as captured:
        obs.capture("before", distinct_id="u")
        with obs.trace("chat", distinct_id="u"):
            with obs.span("tool"):
                try:
                    raise TimeoutError("tool timed out")
                except TimeoutError:
                    obs.capture_exception()
            with obs.trace_generation("anthropic", "claude-3-5-haiku-latest") as gen:
                gen.set(input_tokens=5, output_tokens=7)
        obs.capture("after", distinct_id="u")
    lines = [line.plain for line in render(captured.events)]
    names = [line[20:42].rstrip() for line in lines if not line.lstrip().startswith(">")]  # the event column
    assert names == [
        "before",
        "$ai_trace",
        "├─ $ai_span",
        "│  └─ $exception",
        "└─ $ai_generation",
        "after",
    ]
    (gen_line,) = [line for line in lines if "$ai_generation" in line]
    assert "claude-3-5-haiku-latest (anthropic) · 5 → 7 tokens · $" in gen_line


def test_an_llm_error_is_shown() -> None:
    with obs.testing.capture_events() as captured:
        try:
            with obs.trace_generation("openai", "gpt-4o"):
                raise ConnectionError("upstream reset")
        except ConnectionError:
            pass
    (event,) = captured.of_kind("ai_generation")
    # LLM payloads are off by default, so the error is its type only (the message may quote the prompt).
    assert describe(event).endswith("error: ConnectionError")


def test_clean_escapes_control_characters_and_clips() -> None:
    assert clean("a\x1b[2Jb\nc\x07\x9b") == "a\\x1b[2Jb\\nc\\x07\\x9b"
    assert clean("x" * 300, 10) == "x" * 9 + "…"
    assert clean(12) == "12"


def test_events_of_unexpected_shapes_still_render() -> None:
    odd: list[dict[str, Any]] = [
        {},
        {"event": 5, "properties": "not a dict"},
        {"event": "$exception", "properties": {"$exception_list": "nope"}},
        {"event": "$exception", "properties": {"$exception_list": [{"stacktrace": {"frames": [1, None]}}]}},
        {"event": "$ai_generation", "timestamp": "yesterday", "properties": {"$ai_latency": "slow"}},
        {"event": "$ai_span", "properties": {"$ai_trace_id": "t", "$ai_parent_id": "t"}},
    ]
    lines = render(odd)
    assert len(lines) == len(odd)
