"""PostHogSink against a real HTTP capture server on 127.0.0.1: wire shape, routes, gzip, retries, limits.

Nothing here mocks the network: every request goes through httpx to `tests/capture_server.py`. Tests drive
the sink through `obs.init` / `obs.capture` / `obs.flush` / `stats()`, or construct `PostHogSink` and await
`send` directly when the exact batch matters (413 splitting, byte limits).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import gzip
import itertools
import json
import time
from typing import Any

import pytest

import obs
from obs import _worker
from obs._client import Client
from obs._stats import Stats
from obs.sinks import Batch, PostHogSink
from obs.sinks import posthog as posthog_mod
from tests.capture_server import CaptureServer, Received, Reply, refused_url

RETRYABLE = (500, 502, 503, 504, 408, 429)


# ------------------------------------------------------------------------------------------- helpers


def _init(server: CaptureServer | str, **overrides: Any) -> Client:
    """An enabled global client posting to ``server``; the worker only drains on flush/flush_at.

    The worker is started now: these tests are about its sink, and a flush this soon after init would
    otherwise send by the cold post (obs/_cold.py, tests/test_cold.py) first.
    """
    host = server if isinstance(server, str) else server.url
    settings: dict[str, Any] = {"retry_backoff": 0.01, "flush_interval": 60}
    settings.update(overrides)
    client = obs.init(api_key="phc_test", host=host, **settings)
    assert isinstance(client, Client)
    assert client._ensure_worker() is not None
    return client


def _stats() -> dict[str, Any]:
    return obs.get_client().stats()


def _capture(n: int, name: str = "e", **props: Any) -> list[str]:
    ids = [obs.capture(name, {"i": i, **props}, distinct_id="user-1") for i in range(n)]
    assert all(isinstance(u, str) for u in ids)
    return [str(u) for u in ids]


def _event(i: int, pad: int = 0) -> dict[str, Any]:
    """A wire event as the worker builds it (for driving PostHogSink directly)."""
    return {
        "event": f"e{i}",
        "distinct_id": "user-1",
        "properties": {"i": i, "pad": "x" * pad, "$lib": "obs", "$lib_version": obs.__version__},
        "timestamp": f"2024-05-01T12:00:{i % 60:02d}.{i:06d}+00:00",
        "uuid": f"00000000-0000-7000-8000-{i:012d}",
    }


def _sink(server: CaptureServer, **kwargs: Any) -> PostHogSink:
    kwargs.setdefault("retry_backoff", 0.01)
    kwargs.setdefault("stats", Stats())
    return PostHogSink("phc_test", server.url, **kwargs)


def _requests(server: CaptureServer, n: int) -> list[Received]:
    """The server's requests once there are ``n`` of them, checking no more come.

    CaptureServer records a request only after writing its response, so the client can see the answer
    (and flush() return) a moment before the request shows up in ``server.received``.
    """
    assert server.wait_for_requests(n, timeout=5), f"expected {n} requests, got {len(server.received)}"
    time.sleep(0.05)
    assert len(server.received) == n, [(len(r.events), r.status) for r in server.received]
    return list(server.received)


def _delivered(server: CaptureServer, n: int) -> list[dict[str, Any]]:
    """The accepted events once ``n`` of them arrived."""
    assert server.wait_for_events(n, timeout=5), f"expected {n} events, got {server.count_events}"
    return server.events()


def _gaps(received: list[Received]) -> list[float]:
    return [b.at - a.at for a, b in itertools.pairwise(received)]


def _assert_identical_retries(received: list[Received]) -> None:
    """Every attempt carried the very same events: same uuids, timestamps and properties."""
    first = received[0].events
    for r in received[1:]:
        assert r.events == first
        assert [e["uuid"] for e in r.events] == [e["uuid"] for e in first]
        assert [e["timestamp"] for e in r.events] == [e["timestamp"] for e in first]
    # sent_at is the only thing that moves, and never backwards.
    sent = [dt.datetime.fromisoformat(r.body["sent_at"]) for r in received]
    assert sent == sorted(sent)


def _assert_exactly_once(server: CaptureServer, ids: list[str]) -> None:
    delivered = [e["uuid"] for e in server.events()]
    assert len(delivered) == len(set(delivered)), "an event was delivered twice"
    assert sorted(delivered) == sorted(ids)


# ------------------------------------------------------------------------------------------- wire shape


def test_wire_shape_of_a_batch(server: CaptureServer) -> None:
    _init(server)
    before = dt.datetime.now(dt.timezone.utc)
    ids = _capture(3, plan="pro")
    assert obs.flush(5)

    (req,) = _requests(server, 1)
    assert req.path == "/batch/" and req.status == 200
    assert req.headers["content-type"] == "application/json"
    assert req.headers["user-agent"] == f"obs-python/{obs.__version__}"
    assert req.headers["user-agent"].startswith("obs-python/")
    assert "content-encoding" not in req.headers

    body = json.loads(req.raw)  # plain JSON, not gzip
    assert set(body) == {"api_key", "sent_at", "batch"}
    assert body["api_key"] == "phc_test"
    sent_at = dt.datetime.fromisoformat(body["sent_at"])
    assert sent_at.utcoffset() == dt.timedelta(0)
    assert before - dt.timedelta(seconds=1) <= sent_at <= dt.datetime.now(dt.timezone.utc)

    batch = body["batch"]
    assert [e["uuid"] for e in batch] == ids  # capture order, the uuids capture() returned
    for i, e in enumerate(batch):
        assert set(e) == {"event", "distinct_id", "properties", "timestamp", "uuid"}
        assert e["event"] == "e" and e["distinct_id"] == "user-1"
        props = e["properties"]
        assert props["i"] == i and props["plan"] == "pro"
        assert props["$lib"] == "obs"
        assert props["$lib_version"] == obs.__version__
        ts = dt.datetime.fromisoformat(e["timestamp"])
        assert ts.utcoffset() == dt.timedelta(0)
        assert before - dt.timedelta(seconds=1) <= ts <= sent_at
    assert _stats()["sent"] == 3
    assert _stats()["retries"] == 0


def test_capture_ai_goes_to_the_ai_route(server: CaptureServer) -> None:
    _init(server)
    ai = obs.capture_ai("$ai_generation", {"$ai_model": "m"}, distinct_id="u")
    plain = obs.capture("$ai_generation", {"$ai_model": "m"}, distinct_id="u")
    other = obs.capture("clicked", distinct_id="u")
    assert obs.flush(5)

    assert sorted(r.path for r in _requests(server, 2)) == ["/batch/", "/i/v0/ai/batch/"]
    assert [e["uuid"] for e in server.events("/i/v0/ai/batch/")] == [ai]
    assert [e["uuid"] for e in server.events("/batch/")] == [plain, other]
    ai_req = next(r for r in server.received if r.path == "/i/v0/ai/batch/")
    assert set(ai_req.body) == {"api_key", "sent_at", "batch"}
    assert ai_req.body["api_key"] == "phc_test"
    assert ai_req.headers["user-agent"].startswith("obs-python/")
    assert _stats()["sent"] == 3


def test_gzip_sends_a_gzipped_body(server: CaptureServer) -> None:
    _init(server, gzip=True)
    ids = _capture(20, text="hello " * 50)
    assert obs.flush(5)

    (req,) = _requests(server, 1)
    assert req.headers["content-encoding"] == "gzip"
    assert req.headers["content-type"] == "application/json"
    assert req.raw[:2] == b"\x1f\x8b"
    body = json.loads(gzip.decompress(req.raw))
    assert set(body) == {"api_key", "sent_at", "batch"}
    assert [e["uuid"] for e in body["batch"]] == ids
    assert len(req.raw) < len(gzip.decompress(req.raw))  # it did compress
    assert int(req.headers["content-length"]) == len(req.raw)


def test_without_gzip_the_body_is_plain_json(server: CaptureServer) -> None:
    _init(server, gzip=False)
    ids = _capture(2)
    assert obs.flush(5)
    (req,) = _requests(server, 1)
    assert "content-encoding" not in req.headers
    assert req.raw.startswith(b"{")
    assert [e["uuid"] for e in json.loads(req.raw)["batch"]] == ids


# ------------------------------------------------------------------------------------------- retries


@pytest.mark.parametrize("status", RETRYABLE)
def test_retryable_status_is_retried_with_identical_events(server: CaptureServer, status: int) -> None:
    _init(server, max_retries=3)
    server.script(status, status)
    ids = _capture(5)
    assert obs.flush(5)

    assert [r.status for r in _requests(server, 3)] == [status, status, 200]
    _assert_identical_retries(server.received)
    _assert_exactly_once(server, ids)
    stats = _stats()
    assert stats["retries"] == 2
    assert stats["sent"] == 5
    assert stats["dropped_failed"] == stats["dropped_rejected"] == 0


def test_dropped_connection_is_retried(server: CaptureServer) -> None:
    _init(server, max_retries=3)
    server.script(Reply(close=True), Reply(close=True))
    ids = _capture(4)
    assert obs.flush(5)

    assert [r.status for r in _requests(server, 3)] == [0, 0, 200]  # 0: closed without an answer
    _assert_identical_retries(server.received)
    _assert_exactly_once(server, ids)
    assert _stats()["retries"] == 2
    assert _stats()["sent"] == 4


def test_hanging_request_times_out_and_is_retried(server: CaptureServer) -> None:
    _init(server, timeout=0.2, max_retries=3)
    server.script(Reply(hang=True, delay=0.8))
    ids = _capture(3)
    started = time.monotonic()
    assert obs.flush(5)
    elapsed = time.monotonic() - started

    # The client gave up after its own timeout, not when the server finally closed the connection.
    assert 0.15 <= elapsed < 0.75
    assert _stats()["retries"] == 1
    assert _stats()["sent"] == 3
    _requests(server, 2)  # the hung handler notes its request only when it wakes up
    _assert_exactly_once(server, ids)
    hung = [r for r in server.received if r.status == 0]
    ok = [r for r in server.received if r.status == 200]
    assert len(hung) == 1 and len(ok) == 1
    assert hung[0].events == ok[0].events


def test_retry_after_seconds_is_honoured(server: CaptureServer) -> None:
    _init(server, max_retries=3)
    server.script(Reply(429, headers={"Retry-After": "1"}))
    ids = _capture(2)
    assert obs.flush(10)

    assert [r.status for r in _requests(server, 2)] == [429, 200]
    (gap,) = _gaps(server.received)
    assert 0.95 <= gap < 3.0  # backoff alone would have been <= 0.01 s
    _assert_identical_retries(server.received)
    _assert_exactly_once(server, ids)
    assert _stats()["retries"] == 1


def test_retry_after_http_date_is_honoured(server: CaptureServer) -> None:
    _init(server, max_retries=3)
    when = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=2)
    server.script(Reply(503, headers={"Retry-After": email.utils.format_datetime(when, usegmt=True)}))
    ids = _capture(2)
    assert obs.flush(10)

    assert [r.status for r in _requests(server, 2)] == [503, 200]
    (gap,) = _gaps(server.received)
    # The date has whole-second resolution, so the wait is between ~1 s and 2 s.
    assert 0.7 <= gap < 3.0
    _assert_exactly_once(server, ids)


def test_retry_after_in_the_past_falls_back_to_the_backoff(server: CaptureServer) -> None:
    _init(server, max_retries=3, retry_backoff=0.2)
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    server.script(Reply(503, headers={"Retry-After": email.utils.format_datetime(past, usegmt=True)}))
    ids = _capture(1)
    started = time.monotonic()
    assert obs.flush(5)
    assert time.monotonic() - started < 2.0  # not 5 minutes
    (gap,) = _gaps(_requests(server, 2))
    assert gap >= 0.2  # Retry-After is a minimum: the backoff still applies
    assert [r.status for r in _requests(server, 2)] == [503, 200]
    _assert_exactly_once(server, ids)


def test_retry_after_is_capped_by_retry_max_delay(server: CaptureServer) -> None:
    _init(server, max_retries=3, retry_max_delay=0.2)
    server.script(Reply(429, headers={"Retry-After": "30"}), Reply(503, headers={"Retry-After": "3600"}))
    ids = _capture(2)
    started = time.monotonic()
    assert obs.flush(5)
    assert time.monotonic() - started < 2.0

    assert [r.status for r in _requests(server, 3)] == [429, 503, 200]
    for gap in _gaps(server.received):
        assert 0.15 <= gap < 1.0
    _assert_exactly_once(server, ids)
    assert _stats()["retries"] == 2


class _MaxJitter:
    """Stands in for the sink's `random` module: records each jitter range and picks its upper end."""

    def __init__(self) -> None:
        self.ranges: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.ranges.append((a, b))
        return b


def test_backoff_doubles_each_attempt(server: CaptureServer, monkeypatch: pytest.MonkeyPatch) -> None:
    jitter = _MaxJitter()
    monkeypatch.setattr(posthog_mod, "random", jitter)
    _init(server, max_retries=3, retry_backoff=0.1)
    server.default = Reply(500)
    _capture(2)
    assert not obs.flush(10)

    assert jitter.ranges == [(1.0, 1.25)] * 3  # a doubling base, stretched by at most 25 %
    _requests(server, 4)
    for gap, wait in zip(_gaps(server.received), (0.125, 0.25, 0.5), strict=True):
        assert wait * 0.95 <= gap < wait + 0.5
    assert _stats()["dropped_failed"] == 2


def test_backoff_with_real_jitter_stays_within_its_caps(server: CaptureServer) -> None:
    _init(server, max_retries=3, retry_backoff=0.2)
    server.default = Reply(500)
    _capture(2)
    started = time.monotonic()
    assert not obs.flush(10)
    elapsed = time.monotonic() - started

    gaps = _gaps(_requests(server, 4))
    for gap, base in zip(gaps, (0.2, 0.4, 0.8), strict=True):
        assert base * 0.95 <= gap <= base * 1.25 + 0.3  # a floor, and bounded jitter
    assert sum(gaps) <= (0.2 + 0.4 + 0.8) * 1.25 + 0.5
    assert elapsed <= (0.2 + 0.4 + 0.8) * 1.25 + 1.0
    assert _stats()["retries"] == 3


def test_backoff_is_capped_by_retry_max_delay(server: CaptureServer) -> None:
    _init(server, max_retries=3, retry_backoff=30, retry_max_delay=0.05)
    server.default = Reply(503)
    _capture(1)
    started = time.monotonic()
    assert not obs.flush(10)
    assert time.monotonic() - started < 2.0
    _requests(server, 4)
    assert _stats()["dropped_failed"] == 1


@pytest.mark.parametrize("max_retries", [0, 2])
def test_max_retries_is_respected(server: CaptureServer, max_retries: int) -> None:
    _init(server, max_retries=max_retries)
    server.default = Reply(500)
    _capture(7)
    assert not obs.flush(5)

    assert [r.status for r in _requests(server, max_retries + 1)] == [500] * (max_retries + 1)
    _assert_identical_retries(server.received)
    stats = _stats()
    assert stats["retries"] == max_retries
    assert stats["dropped_failed"] == 7
    assert stats["sent"] == 0
    assert stats["dropped_rejected"] == 0


@pytest.mark.parametrize("status", [400, 401])
def test_client_errors_are_not_retried(server: CaptureServer, status: int) -> None:
    _init(server, max_retries=3)
    server.script(status)
    _capture(6)
    assert not obs.flush(5)

    assert [r.status for r in _requests(server, 1)] == [status]
    stats = _stats()
    assert stats["dropped_rejected"] == 6
    assert stats["retries"] == 0
    assert stats["dropped_failed"] == 0
    assert stats["sent"] == 0

    # The sink keeps working for later batches.
    later = _capture(2, name="later")
    assert obs.flush(5)
    assert [e["uuid"] for e in _delivered(server, 2)] == later


def test_refused_connection_never_raises_and_is_counted() -> None:
    _init(refused_url(), max_retries=2)
    ids = _capture(5)  # no exception into the caller
    started = time.monotonic()
    assert not obs.flush(10)
    assert time.monotonic() - started < 5
    stats = _stats()
    assert len(ids) == 5
    assert stats["dropped_failed"] == 5
    assert stats["retries"] == 2
    assert stats["sent"] == 0
    # Capturing still works after the failure.
    assert obs.capture("again", distinct_id="u") is not None
    assert not obs.flush(10)
    assert _stats()["dropped_failed"] == 6


# ------------------------------------------------------------------------------------------- 413 and sizes


@pytest.mark.anyio
async def test_413_splits_the_batch_in_halves(server: CaptureServer) -> None:
    sink = _sink(server)
    events = [_event(i) for i in range(8)]
    server.script(413, 413)
    try:
        outcome = await sink.send(Batch(events))
    finally:
        await sink.aclose()

    assert [(len(r.events), r.status) for r in _requests(server, 5)] == [
        (8, 413),
        (4, 413),
        (2, 200),
        (2, 200),
        (4, 200),
    ]
    sizes = [len(r.raw) for r in server.received]
    assert sizes[0] > sizes[1] > sizes[2]
    assert server.events() == events  # every event once, in order
    assert outcome is None  # all delivered
    assert sink.stats.snapshot()["retries"] == 0


@pytest.mark.anyio
async def test_single_event_that_always_gets_413_is_dropped(server: CaptureServer) -> None:
    sink = _sink(server)
    events = [_event(i) for i in range(4)]
    server.script(413, 413, 413)  # [0..3] → [0,1] → [0]: dropped; then [1], [2,3] are accepted
    try:
        outcome = await sink.send(Batch(events))
    finally:
        await sink.aclose()

    assert [len(r.events) for r in _requests(server, 5)] == [4, 2, 1, 1, 2]
    assert server.events() == events[1:]
    assert outcome == {"dropped_too_large": 1}


@pytest.mark.anyio
async def test_413_splits_a_chunk_cut_by_max_batch_bytes(server: CaptureServer) -> None:
    sink = _sink(server, max_batch_bytes=4096)
    events = [_event(i, pad=900) for i in range(8)]  # ~1.1 KB each: requests of 3, 3 and 2
    server.script(413)
    try:
        outcome = await sink.send(Batch(events))
    finally:
        await sink.aclose()

    assert [(len(r.events), r.status) for r in _requests(server, 5)] == [
        (3, 413),
        (1, 200),
        (2, 200),
        (3, 200),
        (2, 200),
    ]
    assert server.events() == events
    assert outcome is None


def test_413_through_the_client(server: CaptureServer) -> None:
    _init(server)
    server.script(413)
    ids = _capture(10)
    assert obs.flush(5)
    assert [len(r.events) for r in _requests(server, 3)] == [10, 5, 5]
    assert [e["uuid"] for e in server.events()] == ids
    assert _stats()["sent"] == 10
    assert _stats()["dropped_too_large"] == 0


def test_event_over_max_event_bytes_is_dropped_others_delivered(server: CaptureServer) -> None:
    _init(server)  # default max_event_bytes: 900 KiB
    first = obs.capture("small", {"n": 1}, distinct_id="u")
    big = obs.capture("huge", {"blob": "x" * (5 * 1024 * 1024)}, distinct_id="u")
    last = obs.capture("small", {"n": 2}, distinct_id="u")
    assert big is not None
    assert not obs.flush(10)

    assert [e["uuid"] for e in _delivered(server, 2)] == [first, last]
    assert all(len(r.raw) < 900 * 1024 for r in server.received)
    stats = _stats()
    assert stats["dropped_too_large"] == 1
    assert stats["sent"] == 2
    assert stats["queued"] == 3


def test_ai_route_has_its_own_larger_event_cap(server: CaptureServer) -> None:
    _init(server)  # 900 KiB for /batch/, 8 MiB for the AI route
    blob = "y" * (2 * 1024 * 1024)
    ai = obs.capture_ai("$ai_generation", {"$ai_input": blob}, distinct_id="u")
    obs.capture("$ai_generation", {"$ai_input": blob}, distinct_id="u")
    assert not obs.flush(10)

    assert [r.path for r in _requests(server, 1)] == ["/i/v0/ai/batch/"]
    assert [e["uuid"] for e in server.events("/i/v0/ai/batch/")] == [ai]
    assert server.events("/i/v0/ai/batch/")[0]["properties"]["$ai_input"] == blob
    assert server.events("/batch/") == []
    assert _stats()["dropped_too_large"] == 1
    assert _stats()["sent"] == 1


def test_max_event_bytes_setting_is_used(server: CaptureServer) -> None:
    _init(server, max_event_bytes=2048)
    ok = obs.capture("fits", {"s": "a" * 500}, distinct_id="u")
    obs.capture("too_big", {"s": "a" * 3000}, distinct_id="u")
    assert not obs.flush(5)
    assert [e["uuid"] for e in _delivered(server, 1)] == [ok]
    assert _stats()["dropped_too_large"] == 1


def test_max_batch_bytes_splits_large_batches(server: CaptureServer) -> None:
    cap = 4096
    _init(server, max_batch_bytes=cap)
    ids = _capture(40, pad="p" * 400)  # ~0.5 KB each, ~20 KB in all
    assert obs.flush(5)
    assert [e["uuid"] for e in _delivered(server, 40)] == ids

    assert len(server.received) >= 5
    assert all(r.status == 200 for r in server.received)
    for r in server.received:
        assert len(r.raw) <= cap, f"request body of {len(r.raw)} bytes is over max_batch_bytes={cap}"
        assert len(r.events) >= 2  # not needlessly one event per request
    assert [e["uuid"] for e in server.events()] == ids
    assert _stats()["sent"] == 40


@pytest.mark.anyio
async def test_max_batch_bytes_bound_is_tight_for_the_whole_body(server: CaptureServer) -> None:
    """Each request body, envelope included, fits max_batch_bytes, even when events fill it exactly."""
    cap = 2048
    sink = _sink(server, max_batch_bytes=cap)
    events = [_event(i, pad=p) for i, p in enumerate(range(300, 1400, 90))]
    try:
        await sink.send(Batch(events))
    finally:
        await sink.aclose()
    assert _delivered(server, len(events)) == events
    received = list(server.received)
    assert len(received) >= 5
    for r in received:
        assert len(r.raw) <= cap, f"request body of {len(r.raw)} bytes is over max_batch_bytes={cap}"
    # Greedy packing: the next request's first event would not have fitted in the previous request.
    for r, nxt in itertools.pairwise(received):
        first = json.dumps(nxt.events[0], separators=(",", ":")).encode()
        assert len(r.raw) + 1 + len(first) > cap - 16


# ------------------------------------------------------------------------------------------- batching


def test_a_backlog_goes_in_requests_sized_by_bytes_not_by_flush_at(server: CaptureServer) -> None:
    _init(server, flush_at=100, max_batch_bytes=64 * 1024)
    # The fork hook holds the worker between two turns of its loop: 2,000 events wait in the queue.
    _worker._before_fork()
    try:
        ids = _capture(2_000)
    finally:
        _worker._after_fork_in_parent()
    assert obs.flush(10)
    assert [e["uuid"] for e in _delivered(server, 2_000)] == ids

    sizes = [len(r.events) for r in server.received]
    assert sum(sizes) == 2_000
    assert max(sizes) > 100  # flush_at woke the worker; it does not cut the requests
    assert len(sizes) >= 5  # ~300 bytes an event: 600 KB do not fit in fewer 64 KiB requests
    assert all(len(r.raw) <= 64 * 1024 for r in server.received)
    assert _stats()["sent"] == 2_000


def test_without_a_backlog_flush_at_events_go_at_once(server: CaptureServer) -> None:
    _init(server, flush_at=100)
    ids = _capture(100)  # the 100th wakes the worker: no flush, no interval (60 s here)
    assert [e["uuid"] for e in _delivered(server, 100)] == ids
