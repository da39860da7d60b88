"""obs.cli._store: the read-only readers `obs tail` (and the local viewer) use, on real SQLite and files."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
from pathlib import Path

import pytest

from obs.cli._store import Filter, StoreReader, _fixed_names, parse_since
from obs.sinks.sqlite import connect
from obs.testing import KINDS


def test_every_kind_but_custom_has_fixed_event_names() -> None:
    assert sorted(set(_fixed_names().values())) == sorted(set(KINDS) - {"custom"})


def test_parse_since() -> None:
    now = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc)
    assert parse_since("30s", now) == now - dt.timedelta(seconds=30)
    assert parse_since("10m", now) == now - dt.timedelta(minutes=10)
    assert parse_since("2h", now) == now - dt.timedelta(hours=2)
    assert parse_since("1.5d", now) == now - dt.timedelta(hours=36)
    assert parse_since("1w", now) == now - dt.timedelta(days=7)
    assert parse_since("2024-05-01T09:30:00+02:00") == dt.datetime(2024, 5, 1, 7, 30, tzinfo=dt.timezone.utc)
    assert parse_since("2024-05-01T09:30Z") == dt.datetime(2024, 5, 1, 9, 30, tzinfo=dt.timezone.utc)
    assert parse_since("2024-05-01").tzinfo is not None  # naive: local time
    for bad in ("", "10", "10 minutes", "yesterday", "-5m"):
        with pytest.raises(ValueError, match="neither a duration"):
            parse_since(bad)


def _insert(conn: sqlite3.Connection, uuid: str, name: str, ts: str) -> None:
    conn.execute(
        "INSERT INTO events (uuid, event, distinct_id, timestamp, properties) VALUES (?, ?, 'u', ?, '{}')",
        (uuid, name, ts),
    )


def test_new_rows_are_found_by_insertion_order_whatever_their_time(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    writer = connect(path)
    _insert(writer, "1", "a", "2024-05-01T12:00:00+00:00")
    reader = StoreReader(path).open()
    try:
        assert [e["uuid"] for e in reader.recent(Filter(), None)] == ["1"]
        assert reader.new(Filter()) == []
        _insert(writer, "2", "$exception", "2024-05-01T11:00:00+00:00")  # older than what was shown
        _insert(writer, "3", "b", "2024-05-01T13:00:00+00:00")
        assert [e["uuid"] for e in reader.new(Filter(kinds=["exception"]))] == ["2"]
        _insert(writer, "4", "c", "2024-05-01T14:00:00+00:00")
        assert [e["uuid"] for e in reader.new(Filter())] == ["4"]  # "3" was seen, though not shown
        assert [e["uuid"] for e in reader.new(Filter())] == []
    finally:
        reader.close()
        writer.close()


def test_custom_kind_is_any_other_name(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    writer = connect(path)
    for i, name in enumerate(["signed_up", "$exception", "$pageview", "$ai_trace", "$feature_flag_called"]):
        _insert(writer, str(i), name, f"2024-05-01T12:00:0{i}+00:00")
    writer.close()
    reader = StoreReader(path).open()
    try:
        custom = reader.recent(Filter(kinds=["custom"]), None)
        assert [e["event"] for e in custom] == ["signed_up", "$pageview"]
        both = reader.recent(Filter(kinds=["custom", "ai_trace"]), None)
        assert [e["event"] for e in both] == ["signed_up", "$pageview", "$ai_trace"]
    finally:
        reader.close()


def test_reading_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    writer = connect(path)
    _insert(writer, "1", "a", "2024-05-01T12:00:00+00:00")
    writer.close()
    os.chmod(path, 0o444)
    before = path.read_bytes()
    reader = StoreReader(path).open()
    try:
        assert reader.count() == (1, "2024-05-01T12:00:00+00:00")
    finally:
        reader.close()
    assert path.read_bytes() == before
