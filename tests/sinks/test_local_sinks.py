"""The local sinks (sqlite, jsonl, console, memory), several sinks at once, and isolation between sinks."""

from __future__ import annotations

import io
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

import obs
from obs._client import Client
from obs.sinks import Batch, ConsoleSink, JsonlSink, MemorySink, SqliteSink
from obs.sinks.console import format_event
from obs.sinks.sqlite import read_events
from tests.capture_server import CaptureServer


def _event(i: int, name: str = "e", **props: Any) -> dict[str, Any]:
    return {
        "event": name,
        "distinct_id": f"user-{i % 3}",
        "properties": {"i": i, "$lib": "obs", "$lib_version": obs.__version__, **props},
        "timestamp": f"2024-05-01T12:00:{i:02d}.{i:06d}+00:00",
        "uuid": f"00000000-0000-7000-8000-{i:012d}",
    }


def _cap(event: str, properties: dict[str, Any] | None = None, **kwargs: Any) -> str:
    u = obs.capture(event, properties, **kwargs)
    assert u is not None
    return u


def _cap_ai(event: str, properties: dict[str, Any] | None = None, **kwargs: Any) -> str:
    u = obs.capture_ai(event, properties, **kwargs)
    assert u is not None
    return u


def _init(**overrides: Any) -> Client:
    overrides.setdefault("flush_interval", 60)
    client = obs.init(api_key="phc_x", **overrides)
    assert isinstance(client, Client)
    return client


def _rows(db: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(
            "SELECT uuid, event, distinct_id, timestamp, properties, route FROM events ORDER BY uuid"
        ).fetchall()
    finally:
        conn.close()


def _wait(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return bool(predicate())


# ------------------------------------------------------------------------------------------- sqlite


@pytest.mark.anyio
async def test_sqlite_sink_writes_one_row_per_event(tmp_path: Path) -> None:
    db = tmp_path / "nested" / "events.db"  # the parent folder is created
    sink = SqliteSink(db)
    events = [_event(i, text="héllo ✓") for i in range(3)]
    try:
        await sink.send(Batch(events))
        await sink.send(Batch([_event(9, name="$ai_generation")], route="ai"))
    finally:
        await sink.aclose()

    rows = _rows(db)
    assert len(rows) == 4
    for row, e in zip(rows[:3], events, strict=True):
        uuid, name, did, ts, props, route = row
        assert (uuid, name, did, ts) == (e["uuid"], e["event"], e["distinct_id"], e["timestamp"])
        assert route == "batch"
        assert json.loads(props) == e["properties"]
    assert rows[3][1] == "$ai_generation" and rows[3][5] == "ai"


@pytest.mark.anyio
async def test_sqlite_resending_a_batch_is_idempotent(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    sink = SqliteSink(db)
    batch = Batch([_event(i) for i in range(5)])
    try:
        await sink.send(batch)
        assert len(_rows(db)) == 5
        await sink.send(batch)  # the same uuids again: nothing new
        assert len(_rows(db)) == 5
        await sink.send(Batch([_event(3), _event(4), _event(5)]))  # overlapping: only uuid 5 is new
    finally:
        await sink.aclose()

    # A second sink (e.g. after a restart) replaying the batch adds nothing either.
    again = SqliteSink(db)
    try:
        await again.send(batch)
        await again.send(Batch([_event(0, extra="later copy")]))  # never overwrites what was stored
    finally:
        await again.aclose()
    rows = _rows(db)
    assert [r[0] for r in rows] == [_event(i)["uuid"] for i in range(6)]
    assert json.loads(rows[0][4]) == _event(0)["properties"]


@pytest.mark.anyio
async def test_sqlite_read_events_returns_what_was_stored(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    sink = SqliteSink(db)
    events = [_event(i, name="a" if i % 2 else "b") for i in range(6)]
    try:
        await sink.send(Batch(list(reversed(events))))  # stored out of order
    finally:
        await sink.aclose()

    got = read_events(db)
    assert got == events  # oldest first, the wire fields back
    assert read_events(db, event="a") == [e for e in events if e["event"] == "a"]
    assert read_events(db, event="nope") == []


def test_sqlite_spec_through_init(tmp_path: Path) -> None:
    db = tmp_path / "store" / "obs.db"
    _init(sinks=[f"sqlite:{db}"])
    ids = [_cap("signed_up", {"plan": "pro", "n": i}, distinct_id="u1") for i in range(4)]
    ai = _cap_ai("$ai_generation", {"$ai_model": "m"}, distinct_id="u1")
    assert obs.flush(5)

    stored = read_events(db)
    assert sorted(e["uuid"] for e in stored) == sorted([*ids, ai])
    by_uuid = {e["uuid"]: e for e in stored}
    e = by_uuid[ids[2]]
    assert e["event"] == "signed_up" and e["distinct_id"] == "u1"
    assert e["properties"]["plan"] == "pro" and e["properties"]["n"] == 2
    assert e["properties"]["$lib"] == "obs"
    assert {r[0]: r[5] for r in _rows(db)}[ai] == "ai"
    assert obs.get_client().stats()["sink_errors"] == 0


def test_sinks_from_the_obs_sinks_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "env.db"
    jl = tmp_path / "env.jsonl"
    monkeypatch.setenv("OBS_SINKS", f" sqlite:{db} , jsonl:{jl} ")
    client = _init()
    assert [type(s).__name__ for s in client._sinks] == ["SqliteSink", "JsonlSink"]
    ids = [_cap("from_env", {"i": i}, distinct_id="u") for i in range(3)]
    assert obs.flush(5)

    assert [e["uuid"] for e in read_events(db)] == ids
    assert [json.loads(line)["uuid"] for line in jl.read_text().splitlines()] == ids


def test_sqlite_default_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _init(sinks=["sqlite"])
    u = _cap("here", distinct_id="u")
    assert obs.flush(5)
    assert (tmp_path / ".obs" / "events.db").is_file()
    assert [e["uuid"] for e in read_events()] == [u]


# ------------------------------------------------------------------------------------------- jsonl


def test_jsonl_spec_writes_one_event_per_line(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "events.jsonl"
    _init(sinks=[f"jsonl:{path}"], flush_at=3)
    ids = [_cap("line", {"i": i, "text": "héllo ✓"}, distinct_id="u") for i in range(7)]
    assert obs.flush(5)

    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 7
    events = [json.loads(line) for line in lines]
    assert [e["uuid"] for e in events] == ids
    assert all(set(e) == {"event", "distinct_id", "properties", "timestamp", "uuid"} for e in events)
    assert [e["properties"]["i"] for e in events] == list(range(7))
    assert "héllo ✓" in lines[0]  # written as UTF-8, not \\u escapes


@pytest.mark.anyio
async def test_jsonl_sink_appends(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps({"already": "here"}) + "\n")
    for i in range(2):
        sink = JsonlSink(path)
        try:
            await sink.send(Batch([_event(i)]))
        finally:
            await sink.aclose()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines == [{"already": "here"}, _event(0), _event(1)]


# ------------------------------------------------------------------------------------------- console


@pytest.mark.anyio
async def test_console_sink_writes_a_readable_line_to_its_stream() -> None:
    out = io.StringIO()
    sink = ConsoleSink(out)
    await sink.send(Batch([_event(1, name="signed_up", plan="pro"), _event(2, name="clicked")]))
    await sink.aclose()

    lines = out.getvalue().splitlines()
    assert lines == [
        '[obs] 12:00:01.000 signed_up distinct_id=user-1 {"i": 1, "plan": "pro"}',
        '[obs] 12:00:02.000 clicked distinct_id=user-2 {"i": 2}',
    ]
    assert format_event(_event(1, name="signed_up", plan="pro")) == lines[0]


def test_console_spec_writes_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    _init(sinks=["console"])
    _cap("hello_console", {"plan": "pro"}, distinct_id="u-42")
    assert obs.flush(5)

    captured = capsys.readouterr()
    assert captured.out == ""
    lines = [line for line in captured.err.splitlines() if line.startswith("[obs]")]
    assert len(lines) == 1
    line = lines[0]
    assert "hello_console" in line and "distinct_id=u-42" in line and '"plan": "pro"' in line
    assert "$lib" not in line  # noise hidden


# ------------------------------------------------------------------------------------------- memory


def test_memory_sink_keeps_events_and_batches() -> None:
    mem = MemorySink()
    client = _init(sinks=[mem])
    a = _cap("a", distinct_id="u")
    b = _cap("b", distinct_id="u")
    ai = _cap_ai("$ai_generation", distinct_id="u")
    assert obs.flush(5)

    assert sorted(e["uuid"] for e in mem.events) == sorted([a, b, ai])
    assert [e["uuid"] for e in mem.named("a")] == [a]
    assert sorted(batch.route for batch in mem.batches) == ["ai", "batch"]
    assert sum(len(batch) for batch in mem.batches) == 3
    mem.clear()
    assert mem.events == [] and mem.batches == []
    assert not mem.closed
    assert client.shutdown(5)
    assert mem.closed  # aclose ran at shutdown


# ------------------------------------------------------------------------------------------- several sinks


def test_every_sink_gets_every_event(server: CaptureServer, tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    jl = tmp_path / "events.jsonl"
    mem = MemorySink()
    _init(host=server.url, sinks=["posthog", f"sqlite:{db}", mem, f"jsonl:{jl}"], flush_at=7)
    ids = [_cap("multi", {"i": i}, distinct_id="u") for i in range(20)]
    ids.append(_cap_ai("$ai_generation", {"$ai_model": "m"}, distinct_id="u"))
    assert obs.flush(5)
    assert server.wait_for_events(21, timeout=5)

    want = sorted(ids)
    assert sorted(e["uuid"] for e in server.events()) == want
    assert [e["uuid"] for e in server.events("/i/v0/ai/batch/")] == [ids[-1]]
    assert sorted(e["uuid"] for e in mem.events) == want
    assert sorted(e["uuid"] for e in read_events(db)) == want
    assert sorted(json.loads(line)["uuid"] for line in jl.read_text().splitlines()) == want
    # The same wire event everywhere.
    from_server = {e["uuid"]: e for e in server.events()}
    assert all(from_server[e["uuid"]] == e for e in mem.events)
    stats = obs.get_client().stats()
    assert stats["sent"] == 21 and stats["sink_errors"] == 0 and stats["queued"] == 21


class Boom:
    """A sink whose send always raises."""

    def __init__(self) -> None:
        self.calls = 0
        self.closed = False

    async def send(self, batch: Batch) -> None:
        self.calls += 1
        raise RuntimeError("boom")

    async def aclose(self) -> None:
        self.closed = True


class FailsOnce:
    """A sink whose first send raises; later ones work."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.failed = False

    async def send(self, batch: Batch) -> None:
        if not self.failed:
            self.failed = True
            raise ValueError("first batch fails")
        self.events.extend(batch)

    async def aclose(self) -> None:
        return None


class Slow:
    """A sink that takes ``delay`` seconds per batch."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.events: list[dict[str, Any]] = []

    async def send(self, batch: Batch) -> None:
        await anyio.sleep(self.delay)
        self.events.extend(batch)

    async def aclose(self) -> None:
        return None


class Hangs:
    """A sink whose send hangs until the test releases it."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.events: list[dict[str, Any]] = []

    async def send(self, batch: Batch) -> None:
        while not self.release.is_set():
            await anyio.sleep(0.01)
        self.events.extend(batch)

    async def aclose(self) -> None:
        return None


def test_a_raising_sink_does_not_stop_the_others(server: CaptureServer, tmp_path: Path) -> None:
    boom, mem, once = Boom(), MemorySink(), FailsOnce()
    db = tmp_path / "events.db"
    # A small queue keeps each batch at flush_at events even with a backlog: five batches.
    _init(
        host=server.url, sinks=[boom, mem, "posthog", f"sqlite:{db}", once], flush_at=10, max_queue_size=100
    )
    ids = [_cap("iso", {"i": i}, distinct_id="u") for i in range(50)]
    assert not obs.flush(5)  # the failing sink answers the flush, and it says events were lost

    assert [e["uuid"] for e in mem.events] == ids
    assert server.wait_for_events(50, timeout=5)
    assert sorted(e["uuid"] for e in server.events()) == sorted(ids)
    assert sorted(e["uuid"] for e in read_events(db)) == sorted(ids)
    first_batch = len(mem.batches[0])
    assert [e["uuid"] for e in once.events] == ids[first_batch:]  # the next batches still came

    stats = obs.get_client().stats()
    assert boom.calls == len(mem.batches) >= 5
    assert stats["sink_errors"] == boom.calls + 1  # every Boom batch, and FailsOnce's first
    # An event counts as sent once every sink delivered it: Boom delivered none.
    assert stats["dropped_sink_error"] == 50 and stats["sent"] == 0

    # Later events still reach Boom (and fail) and everyone else.
    _cap("after", distinct_id="u")
    assert not obs.flush(5)
    assert mem.events[-1]["event"] == "after"
    assert obs.get_client().stats()["sink_errors"] == boom.calls + 1
    assert obs.shutdown(5)  # nothing captured since the last flush
    assert boom.closed


def test_a_slow_sink_does_not_delay_the_others() -> None:
    slow, mem = Slow(0.2), MemorySink()
    _init(sinks=[slow, mem], flush_at=10, flush_interval=0.05)
    ids = [_cap("slow", {"i": i}, distinct_id="u") for i in range(50)]

    started = time.monotonic()
    assert _wait(lambda: len(mem.events) == 50, timeout=2)
    assert time.monotonic() - started < 0.6  # 5 batches at 0.2 s each would take ~1 s
    assert len(slow.events) < 50

    assert obs.flush(5)  # flush waits for the slow sink too
    assert [e["uuid"] for e in slow.events] == ids
    assert [e["uuid"] for e in mem.events] == ids
    assert obs.get_client().stats()["sink_errors"] == 0


def test_a_hanging_sink_does_not_block_the_others(server: CaptureServer) -> None:
    hangs, mem = Hangs(), MemorySink()
    _init(host=server.url, sinks=[hangs, mem, "posthog"], flush_at=10)
    try:
        ids = [_cap("hang", {"i": i}, distinct_id="u") for i in range(30)]
        assert obs.flush(0.3) is False  # flush honestly reports the sink that has not finished

        assert _wait(lambda: len(mem.events) == 30)
        assert [e["uuid"] for e in mem.events] == ids
        assert server.wait_for_events(30, timeout=5)
        assert sorted(e["uuid"] for e in server.events()) == sorted(ids)
        assert hangs.events == []

        more = [_cap("hang2", {"i": i}, distinct_id="u") for i in range(5)]
        assert obs.flush(0.2) is False
        assert _wait(lambda: len(mem.events) == 35)
        assert [e["uuid"] for e in mem.events] == ids + more
    finally:
        hangs.release.set()
    assert obs.flush(5)
    assert [e["uuid"] for e in hangs.events] == ids + more
    assert obs.get_client().stats()["sink_errors"] == 0


def test_a_hung_sink_with_a_full_backlog_never_stalls_the_others() -> None:
    # A backlog of 4 batches for the hung sink; many flushes and far more batches than that go past it.
    hangs, mem = Hangs(), MemorySink()
    client = _init(sinks=[hangs, mem], flush_at=10, max_queue_size=40)
    try:
        ids: list[str] = []
        for round_ in range(10):
            ids += [_cap("h", {"r": round_, "i": i}, distinct_id="u") for i in range(10)]
            assert obs.flush(0.05) is False  # the hung sink has not finished: flush says so, promptly
        assert _wait(lambda: len(mem.events) == 100)
        assert [e["uuid"] for e in mem.events] == ids
        stats = client.stats()
        assert stats["dropped_queue_full"] == 0
        assert stats["dropped_sink_overflow"] > 0  # only the hung sink lost batches, and they were counted
    finally:
        hangs.release.set()
    assert not obs.flush(5)  # the overflowed batches were not delivered to every sink: said once
    assert obs.flush(5)
    assert 0 < len(hangs.events) < 100


# ------------------------------------------------------------------------------------------- bad specs


@pytest.mark.parametrize("spec", ["kafka", "jsonl", "console:somewhere", "memory:x", "posthog:eu"])
def test_unknown_sink_spec_is_a_config_error(spec: str) -> None:
    with pytest.raises(obs.ConfigError) as info:
        obs.init(api_key="phc_x", sinks=["memory", spec])
    message = str(info.value)
    assert repr(spec) in message
    assert "unknown sink" in message
    assert "posthog, console, memory, jsonl:PATH or sqlite[:PATH]" in message
    assert obs._current.client is None  # nothing half-built was installed


def test_unknown_sink_in_the_env_var_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBS_SINKS", "memory,kafka")
    with pytest.raises(obs.ConfigError, match="unknown sink 'kafka'"):
        obs.init(api_key="phc_x")


def test_an_object_that_is_not_a_sink_is_a_config_error() -> None:
    with pytest.raises(obs.ConfigError, match="has no async send"):
        obs.init(api_key="phc_x", sinks=[object()])
