"""obs.display: events, lists of events and trace trees as HTML (escaped) and as readable text."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import IPython.lib.pretty
import rich.console

import obs
import obs.testing
from obs.display import Event, EventList, TraceTree
from obs.sinks import MemorySink
from obs.sinks.sqlite import read_events

XSS = "<script>alert('x')</script>"
ESCAPED = "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;"


@obs.trace_llm
def _ask(question: str) -> dict[str, Any]:  # what openai's chat.completions.create returns, as a dict
    return {
        "object": "chat.completion",
        "model": "gpt-4o-mini",
        "choices": [
            {
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"id": "call_1", "function": {"name": "get_weather", "arguments": "{}"}}],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 120, "completion_tokens": 18},
    }


def _traced_conversation() -> obs.testing.CapturedEvents:
    with obs.testing.capture_events() as captured:
        with obs.trace("weather", distinct_id="user-1"):
            with obs.span("retrieve"), obs.span("rank"):
                try:
                    raise ValueError("ranking failed")
                except ValueError as e:
                    obs.capture_exception(e)
            _ask("Weather in Paris?")
            with obs.trace_generation("openai", "gpt-4o-mini") as gen:
                gen.set(input_tokens=150, output_tokens=6)
        captured.events  # noqa: B018 (waits for the worker)
    return captured


def _nasty_events() -> list[dict[str, Any]]:
    return [
        {
            "event": f"clicked {XSS}",
            "distinct_id": XSS,
            "timestamp": "2025-01-02T03:04:05.678901+00:00",
            "uuid": "u1",
            "properties": {"label": XSS, XSS: "key too", "$lib": "obs"},
        },
        {
            "event": "$exception",
            "distinct_id": "u",
            "timestamp": "2025-01-02T03:04:06+00:00",
            "uuid": "u2",
            "properties": {
                "$exception_level": "error",
                "$exception_list": [{"type": "ValueError", "value": XSS, "stacktrace": {"frames": []}}],
            },
        },
        {
            "event": "$ai_generation",
            "distinct_id": "u",
            "timestamp": "2025-01-02T03:04:07+00:00",
            "uuid": "u3",
            "properties": {"$ai_trace_id": "t", "$ai_span_id": "g", "$ai_model": XSS, "$ai_span_name": XSS},
        },
    ]


def test_every_value_is_html_escaped() -> None:
    events = EventList(_nasty_events())
    sink = MemorySink()
    sink.events.extend(events)
    views = [events._repr_html_(), sink._repr_html_(), events[0]._repr_html_(), events[1]._repr_html_()]
    views.append(TraceTree(events)._repr_html_())
    for view in views:
        assert "<script>" not in view, view
        assert ESCAPED in view, view
    with obs.testing.capture_events() as captured:
        obs.capture(f"signed_up {XSS}", {"plan": XSS}, distinct_id=XSS)
        with obs.trace(XSS):
            pass
    for view in (captured._repr_html_(), captured.trace()._repr_html_()):
        assert "<script>" not in view and ESCAPED in view


def test_views_are_the_plain_data() -> None:
    raw = _nasty_events()
    events = EventList(raw)
    assert events == raw and isinstance(events, list) and all(isinstance(e, dict) for e in events)
    assert repr(events) == repr(raw)  # the exact data, as tests and logs show it
    assert json.loads(json.dumps(events)) == raw
    assert type(events[0]) is Event and events.named("$exception") == [raw[1]]
    assert isinstance(events.named("$exception"), EventList)
    assert isinstance(events[1:], EventList) and events[1:] == raw[1:]


def test_memory_sink_and_captured_events_show_a_readable_table() -> None:
    captured = _traced_conversation()
    text = repr(captured)
    assert text.splitlines()[0] == "CapturedEvents: 7 events"
    assert "generation _ask gpt-4o-mini  · 120 → 18 tokens" in text
    assert "span get_weather" in text and "trace weather  · 2 generation(s) · 270 → 24 tokens" in text
    html = captured._repr_html_()
    assert html.count("<tr>") == 8  # a header and one row per event
    assert "$ai_trace" in html and "270 → 24 tokens" in html

    sink = MemorySink()
    sink.events.extend(captured.events)
    assert repr(sink).startswith("MemorySink: 7 events\n")
    assert IPython.lib.pretty.pretty(sink.events) == sink.events.text()  # IPython's terminal
    assert IPython.lib.pretty.pretty(sink.events[0]) == sink.events[0].text()


def test_a_single_event_lists_its_properties() -> None:
    with obs.testing.capture_events() as captured:
        obs.capture("doc_saved", {"words": 120, "tags": ["a", "b"]}, distinct_id="user-1")
        try:
            {}["missing"]
        except KeyError as e:
            obs.capture_exception(e, distinct_id="user-1")
    saved, error = captured.events
    lines = saved.text().splitlines()
    assert lines[0].startswith("doc_saved  user-1  ")
    assert '  tags: ["a", "b"]' in lines and "  words: 120" in lines
    assert not any("$lib" in line for line in lines)  # obs's own properties stay out of the way
    assert (
        error.text().splitlines()[1]
        == "  KeyError: 'missing' (in test_a_single_event_lists_its_properties) [error]"
    )
    assert "<b>$exception</b> KeyError: &#x27;missing&#x27;" in error._repr_html_()


def test_trace_tree_nests_spans_generations_and_tool_calls() -> None:
    tree = _traced_conversation().trace()
    lines = tree.text().splitlines()
    assert [line.split("  · ")[0] if "tool call" not in line else line for line in lines] == [
        "trace weather",
        "├─ span retrieve",
        "│  └─ span rank",
        "│     └─ exception ValueError: ranking failed",
        "├─ generation _ask gpt-4o-mini",
        "│  └─ span get_weather  · tool call",
        "└─ generation gpt-4o-mini",
    ]
    assert lines[0].endswith("ms") and "2 generation(s) · 270 → 24 tokens · $0.0000" in lines[0]
    assert "150 → 6 tokens" in lines[-1]
    html = tree._repr_html_()
    assert html.count("<tr>") == 8 and "└─ generation" in html and "150 → 6 tokens" in html
    assert "ValueError: ranking failed" in html
    assert repr(tree) == tree.text()


def test_trace_tree_filters_by_trace_and_keeps_orphans() -> None:
    captured = _traced_conversation()
    (trace,) = captured.named("$ai_trace")
    trace_id = trace["properties"]["$ai_trace_id"]
    assert len(captured.trace(trace_id).nodes()) == 7
    assert captured.trace("another").text() == "no LLM traces"
    orphan = {
        "event": "$ai_span",
        "properties": {"$ai_trace_id": "x", "$ai_parent_id": "gone", "$ai_span_name": "lost"},
    }
    assert TraceTree([orphan]).text() == "span lost"  # its parent never arrived: shown at the top


def test_long_lists_are_cut_in_the_middle_and_odd_events_never_raise() -> None:
    events = EventList({"event": f"e{i}", "distinct_id": "u", "properties": {"i": i}} for i in range(100))
    text = events.text().splitlines()
    assert text[0] == "100 events" and "… 40 more" in text[51] and "e99" in text[-1]
    assert events._repr_html_().count("<tr>") == 1 + 50 + 1 + 10
    odd = EventList(
        [{}, {"event": "$exception", "properties": {"$exception_list": "not a list"}}, {"properties": 3}]
    )
    assert odd.text() and odd._repr_html_() and all(e.text() is not None and e._repr_html_() for e in odd)
    assert TraceTree(odd).text() == "no LLM traces"


def test_rich_shows_text_not_markup() -> None:
    console = rich.console.Console(record=True, width=200, color_system=None)
    console.print(
        EventList([{"event": "clicked", "distinct_id": "u", "properties": {"label": "[bold]x[/bold]"}}])
    )
    assert "label=[bold]x[/bold]" in console.export_text()


def test_read_events_gives_a_list_view(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    obs.init(api_key="phc_test", sinks=[f"sqlite:{db}"])
    obs.capture("stored", {"label": XSS}, distinct_id="u")
    assert obs.flush(5)
    stored = read_events(db)
    assert isinstance(stored, EventList) and [e["event"] for e in stored] == ["stored"]
    assert ESCAPED in stored._repr_html_() and "<script>" not in stored._repr_html_()


def test_import_obs_does_not_load_the_views() -> None:
    loaded = "print('obs.display' in sys.modules)"
    code = f"import sys, obs; {loaded}; obs.display; {loaded}"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True"]
