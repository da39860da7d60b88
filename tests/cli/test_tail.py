"""`obs tail` against a store and a JSONL file written by a real obs app, and while another process writes."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import pytest

from obs.sinks.sqlite import read_events
from tests.cli.conftest import APP_EVENTS, RAISE_LINE, Lines, run_app, run_obs

SOURCES = {"store": ["--store", ".obs/events.db"], "jsonl": ["--jsonl", "events.jsonl"]}


def tail_json(app_dir: Path, *args: str) -> list[dict[str, Any]]:
    proc = run_obs("tail", "--json", *args, cwd=app_dir)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def names(events: list[dict[str, Any]]) -> list[str]:
    return [e["event"] for e in events]


# ------------------------------------------------------------------------------------------ readable


def test_readable_lines_for_each_kind(app_dir: Path) -> None:
    proc = run_obs("tail", cwd=app_dir)  # the default store, .obs/events.db
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    lines = proc.stdout.splitlines()
    shown = [n for line in lines for n in APP_EVENTS if re.search(rf"(^|\s){re.escape(n)}\s", line)]
    assert sorted(shown) == sorted(APP_EVENTS)

    # An exception: type, message and the top in-app frame, then that frame's source line.
    (i,) = [i for i, line in enumerate(lines) if "$exception" in line]
    assert re.search(
        rf"\$exception\s+user-1\s+ValueError: empty cart c-1  at app\.py:{RAISE_LINE} in checkout$", lines[i]
    )
    assert lines[i + 1].strip() == '> raise ValueError(f"empty cart {cart}")'

    # The trace as a tree: the trace, then its span and generation (in the order they started).
    (t,) = [i for i, line in enumerate(lines) if "$ai_trace" in line]
    assert "├─ $ai_span" in lines[t + 1] and "retrieve" in lines[t + 1]
    assert "└─ $ai_generation" in lines[t + 2]
    assert re.search(r"answer · 1 generation · 12 → 30 tokens · \$0\.\d{6} · [\d.]+ ms", lines[t])
    assert re.search(r"gpt-4o-mini \(openai\) · 12 → 30 tokens · \$0\.\d{6} · [\d.]+ ms$", lines[t + 2])

    assert any(re.search(r"signed_up\s+user-1\s+plan=pro$", line) for line in lines)
    assert any(re.search(r"\$identify\s+user-1\s+set email=ada@example\.com$", line) for line in lines)


def test_control_characters_in_events_are_shown_escaped_never_sent_to_the_terminal(app_dir: Path) -> None:
    proc = run_obs("tail", "-e", "page_viewed", cwd=app_dir)
    assert proc.returncode == 0, proc.stderr
    assert "path=/\\x1b[31mred" in proc.stdout
    assert "\x1b" not in proc.stdout


def test_colours_only_when_asked_for_and_never_from_event_content(app_dir: Path) -> None:
    proc = run_obs("tail", "-k", "exception", cwd=app_dir, env={"FORCE_COLOR": "1"})
    assert proc.returncode == 0, proc.stderr
    assert "\x1b[" in proc.stdout  # rich colours the line when told the terminal takes them
    assert "ValueError: empty cart c-1" in proc.stdout


# ------------------------------------------------------------------------------------------ --json


def test_json_lines_are_the_stored_wire_events(app_dir: Path) -> None:
    out = tail_json(app_dir)
    stored = read_events(app_dir / ".obs/events.db")
    assert sorted(out, key=lambda e: e["uuid"]) == sorted(stored, key=lambda e: e["uuid"])
    times = [dt.datetime.fromisoformat(e["timestamp"]) for e in out]
    assert times == sorted(times)


def test_json_lines_from_a_jsonl_file_are_its_events(app_dir: Path) -> None:
    out = tail_json(app_dir, "--jsonl", "events.jsonl")
    written = [json.loads(line) for line in (app_dir / "events.jsonl").read_text().splitlines()]
    assert sorted(out, key=lambda e: e["uuid"]) == sorted(written, key=lambda e: e["uuid"])


def test_store_and_jsonl_together_in_time_order(app_dir: Path) -> None:
    out = tail_json(app_dir, "--store", ".obs/events.db", "--jsonl", "events.jsonl", "-n", "0")
    assert sorted(names(out)) == sorted(APP_EVENTS * 2)
    times = [dt.datetime.fromisoformat(e["timestamp"]) for e in out]
    assert times == sorted(times)


def test_the_store_named_in_obs_sinks_is_the_default(tmp_path: Path) -> None:
    run_app(tmp_path, "sqlite:data/app.db")
    proc = run_obs("tail", "--json", cwd=tmp_path, env={"OBS_SINKS": "posthog,sqlite:data/app.db"})
    assert proc.returncode == 0, proc.stderr
    assert sorted(json.loads(line)["event"] for line in proc.stdout.splitlines()) == sorted(APP_EVENTS)


# ------------------------------------------------------------------------------------------ filters


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-e", "signed_up"], ["signed_up"]),
        (["--event", "signed_up", "--event", "page_viewed"], ["signed_up", "page_viewed"]),
        (["--kind", "exception"], ["$exception"]),
        (["-k", "custom"], ["old_event", "signed_up", "page_viewed"]),
        (["-k", "ai_span", "-k", "ai_generation"], ["$ai_span", "$ai_generation"]),
        (["-k", "identify", "-e", "signed_up"], []),
        (["--distinct-id", "user-2"], ["page_viewed"]),
        (["-u", "user-1", "-k", "exception"], ["$exception"]),
        (["--since", "1h"], APP_EVENTS[1:]),
        (["--since", "3h"], APP_EVENTS),
        (["--since", "90m", "-e", "old_event"], []),
        (["-n", "2"], ["$ai_generation", "$ai_trace"]),
        (["--lines", "0"], APP_EVENTS),
    ],
)
def test_filters(app_dir: Path, source: str, args: list[str], expected: list[str]) -> None:
    assert sorted(names(tail_json(app_dir, *SOURCES[source], *args))) == sorted(expected)


@pytest.mark.parametrize("source", SOURCES)
def test_since_an_iso_time(app_dir: Path, source: str) -> None:
    ninety_minutes_ago = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=90)
    utc = ninety_minutes_ago.isoformat(timespec="seconds").replace("+00:00", "Z")
    assert sorted(names(tail_json(app_dir, *SOURCES[source], "--since", utc))) == sorted(APP_EVENTS[1:])
    # Without an offset it is local time: TZ=UTC in the test environment.
    local = ninety_minutes_ago.strftime("%Y-%m-%dT%H:%M:%S")
    assert sorted(names(tail_json(app_dir, *SOURCES[source], "--since", local))) == sorted(APP_EVENTS[1:])


def test_nothing_matches(app_dir: Path) -> None:
    proc = run_obs("tail", "--since", "2999-01-01", cwd=app_dir)
    assert proc.returncode == 0
    assert proc.stdout == ""
    assert proc.stderr.strip() == "obs tail: no events since 2999-01-01T00:00:00+00:00 in .obs/events.db"


def test_unreadable_jsonl_lines_are_skipped_and_counted(app_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_text((app_dir / "events.jsonl").read_text() + "not json\n[1, 2]\n")
    proc = run_obs("tail", "--json", "--jsonl", str(path))
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == len(APP_EVENTS)
    assert proc.stderr.strip() == f"obs tail: skipped 2 line(s) of {path} that are not JSON objects"


# ------------------------------------------------------------------------------------------ errors


def test_missing_store(tmp_path: Path) -> None:
    proc = run_obs("tail", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.startswith("obs tail: no event store at .obs/events.db: ")
    assert len(proc.stderr.splitlines()) == 1
    assert not (tmp_path / ".obs").exists()  # looking created nothing

    proc = run_obs("tail", "--store", str(tmp_path / "nope.db"))
    assert proc.returncode == 1
    assert f"no event store at {tmp_path / 'nope.db'}" in proc.stderr


def test_a_file_that_is_not_a_store(tmp_path: Path) -> None:
    (tmp_path / "notes.db").write_text("not a database " * 100)
    proc = run_obs("tail", "--store", str(tmp_path / "notes.db"))
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"obs tail: {tmp_path / 'notes.db'} is not an obs event store (")
    assert len(proc.stderr.splitlines()) == 1


def test_missing_jsonl(tmp_path: Path) -> None:
    proc = run_obs("tail", "--jsonl", str(tmp_path / "none.jsonl"))
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"obs tail: no JSONL file at {tmp_path / 'none.jsonl'}"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "5x"], "Invalid value for '--since': '5x' is neither a duration"),
        (
            ["--kind", "errors"],
            "Invalid value for '--kind': 'errors' is not an event kind; the kinds are custom,",
        ),
        (["-n", "-1"], "Invalid value for '--lines'"),
        (["--follw"], "No such option: --follw"),
    ],
)
def test_bad_arguments(app_dir: Path, args: list[str], message: str) -> None:
    proc = run_obs("tail", *args, cwd=app_dir)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert message in " ".join(re.sub(r"[│╭╮╰╯─]", " ", proc.stderr).split())
    assert "Traceback" not in proc.stderr


# ------------------------------------------------------------------------------------------ --follow

WRITER = """\
import datetime as dt

import obs

obs.init()
for batch in range(5):
    for i in range(4):
        obs.capture("tick", {"batch": batch, "i": i}, distinct_id="writer")
    assert obs.flush(10)
yesterday = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)
obs.capture("late", distinct_id="writer", timestamp=yesterday)  # stored now, older than all the rest
assert obs.flush(10)
"""

CRASHER = """\
import obs


def charge():
    raise RuntimeError("card declined")


obs.init()
try:
    charge()
except RuntimeError:
    obs.capture_exception(distinct_id="user-9")
assert obs.flush(10)
"""


def test_follow_prints_what_another_process_writes_once_each_then_stops_on_ctrl_c(
    tmp_path: Path, running: list[Lines]
) -> None:
    run_app(tmp_path, "sqlite")
    tail = Lines("tail", "--follow", "--json", cwd=tmp_path)
    running.append(tail)
    first = [json.loads(line) for line in tail.take(len(APP_EVENTS))]
    assert sorted(names(first)) == sorted(APP_EVENTS)

    run_app(tmp_path, "sqlite", WRITER)  # six batches, one after the other, while tail polls
    new = [json.loads(line) for line in tail.take(21)]
    ticks = [e for e in new if e["event"] == "tick"]
    assert sorted((e["properties"]["batch"], e["properties"]["i"]) for e in ticks) == [
        (b, i) for b in range(5) for i in range(4)
    ]
    assert [e["event"] for e in new if e["event"] != "tick"] == ["late"]
    assert tail.pending() == []  # nothing twice

    status, stderr = tail.stop()
    assert status == 130
    assert stderr.strip() == "obs tail: following .obs/events.db (Ctrl-C to stop)"


def test_follow_readable_with_a_filter(tmp_path: Path, running: list[Lines]) -> None:
    run_app(tmp_path, "sqlite")
    tail = Lines("tail", "-f", "-k", "exception", "-n", "0", cwd=tmp_path)
    running.append(tail)
    assert "ValueError: empty cart c-1" in tail.take(2)[0]

    run_app(tmp_path, "sqlite", CRASHER)
    run_app(tmp_path, "sqlite", WRITER)  # no exception in it: filtered out
    line, source = tail.take(2)
    assert re.search(r"\$exception\s+user-9\s+RuntimeError: card declined  at app\.py:5 in charge$", line)
    assert source.strip() == '> raise RuntimeError("card declined")'
    assert tail.pending() == []
    status, stderr = tail.stop()
    assert status == 130
    assert "Traceback" not in stderr


def test_follow_a_jsonl_file_waits_for_a_whole_line(tmp_path: Path, running: list[Lines]) -> None:
    path = tmp_path / "events.jsonl"
    one = {
        "event": "a",
        "distinct_id": "u",
        "properties": {},
        "timestamp": "2024-05-01T12:00:00+00:00",
        "uuid": "1",
    }
    two = {**one, "event": "b", "uuid": "2"}
    path.write_text(json.dumps(one) + "\n")
    tail = Lines("tail", "-f", "--json", "--jsonl", str(path))
    running.append(tail)
    assert [json.loads(line) for line in tail.take(1)] == [one]

    text = json.dumps(two)
    with path.open("a") as fh:
        fh.write(text[:20])
        fh.flush()
        assert tail.pending() == []  # half a line is not an event yet
        fh.write(text[20:] + "\n")
    assert [json.loads(line) for line in tail.take(1)] == [two]
    status, _ = tail.stop()
    assert status == 130
