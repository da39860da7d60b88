"""The fault table: each fault a PostHog endpoint can show, against the real sink, reached by name.

Every event is delivered exactly once or counted as dropped (by reason), and `captured = sent + spooled +
dropped + in flight` holds. Each test adds a row to the table printed at the end of the run, which
docs/reliability.md quotes. Waits are bounded: every fault here lasts at most a few seconds, except the
10 s burst that shows the default retry budget's promise.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

import obs
from obs._client import Client
from tests.capture_server import CaptureServer, Reply, free_port
from tests.reliability.conftest import assert_accounted

Table = list[tuple[str, str, str]]


def _init(host: str, **kw: Any) -> Client:
    settings: dict[str, Any] = {"flush_interval": 60, "retry_backoff": 0.1}
    settings.update(kw)
    client = obs.init(api_key="phc_faults", host=host, **settings)
    assert isinstance(client, Client)
    # Each row is about the worker's sink meeting the fault. Started now: a flush this soon after init would
    # otherwise send by the cold post first (obs/_cold.py, tested in tests/test_cold.py), which meets the
    # first scripted fault and hands over to the worker.
    assert client._ensure_worker() is not None
    return client


def _capture(n: int, name: str = "f") -> list[str]:
    return [str(obs.capture(name, {"i": i}, distinct_id="u")) for i in range(n)]


def _exactly_once(server: CaptureServer, ids: list[str]) -> None:
    got = Counter(e["uuid"] for e in server.events())
    assert sorted(got) == sorted(ids), f"{len(got)} of {len(ids)} delivered"
    assert max(got.values()) == 1, "an event was delivered twice"


def _timed_flush(timeout: float) -> tuple[bool, float]:
    started = time.monotonic()
    ok = obs.flush(timeout)
    return ok, time.monotonic() - started


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_for_n_requests(server: CaptureServer, status: int, fault_table: Table) -> None:
    client = _init(server.host_url)
    server.script(*[status] * 3)
    ids = _capture(200)
    ok, took = _timed_flush(20)
    assert ok
    _exactly_once(server, ids)
    stats = client.stats()
    assert stats["retries"] >= 3 and stats["sent"] == 200
    assert_accounted(stats)
    fault_table.append(
        (f"{status} × 3 requests", f"retried {stats['retries']}×", f"200/200 once, {took:.2f}s")
    )


def test_503_burst_of_10_seconds_loses_nothing_with_default_retries(
    server: CaptureServer, fault_table: Table
) -> None:
    client = obs.init(api_key="phc_faults", host=server.host_url, flush_interval=60)  # default retries
    assert isinstance(client, Client)
    server.fail_for(10, 503)
    ids = _capture(300)
    ok, took = _timed_flush(40)
    assert ok
    assert took >= 10
    _exactly_once(server, ids)
    stats = client.stats()
    assert_accounted(stats)
    fault_table.append(("503 for 10 s", f"backoff, {stats['retries']} retries", f"300/300 once, {took:.1f}s"))


def test_429_with_retry_after_waits_at_least_that_long(server: CaptureServer, fault_table: Table) -> None:
    _init(server.host_url)
    server.script(Reply(429, headers={"Retry-After": "1"}))
    ids = _capture(50)
    ok, took = _timed_flush(10)
    assert ok and took >= 1.0
    first, second = server.received[:2]
    assert second.at - first.at >= 0.95
    _exactly_once(server, ids)
    fault_table.append(("429 Retry-After: 1", "waited ≥ 1 s", f"50/50 once, {took:.2f}s"))


def test_429_without_retry_after_backs_off(server: CaptureServer, fault_table: Table) -> None:
    _init(server.host_url)
    server.script(429, 429)
    ids = _capture(50)
    ok, took = _timed_flush(10)
    assert ok
    gaps = [b.at - a.at for a, b in zip(server.received, server.received[1:], strict=False)]
    assert gaps[0] >= 0.1 and gaps[1] >= 0.2  # the floor, then doubling
    _exactly_once(server, ids)
    fault_table.append(("429, no Retry-After", "backoff 0.1 s, 0.2 s", f"50/50 once, {took:.2f}s"))


def test_hang_times_out_and_is_retried(server: CaptureServer, fault_table: Table) -> None:
    client = _init(server.host_url, timeout=0.5)
    server.script(Reply(hang=True, delay=2))
    ids = _capture(100)
    ok, took = _timed_flush(10)
    assert ok
    _exactly_once(server, ids)
    assert client.stats()["retries"] == 1
    fault_table.append(("hang (no answer)", "timeout 0.5 s, retried", f"100/100 once, {took:.2f}s"))


def test_reset_mid_response_is_retried(server: CaptureServer, fault_table: Table) -> None:
    client = _init(server.host_url)
    server.script(Reply(reset=True), Reply(reset=True))
    ids = _capture(100)
    ok, took = _timed_flush(10)
    assert ok
    _exactly_once(server, ids)
    assert client.stats()["retries"] == 2
    fault_table.append(("reset mid-response × 2", "retried", f"100/100 once, {took:.2f}s"))


def test_slow_accept_is_waited_out(server: CaptureServer, fault_table: Table) -> None:
    client = _init(server.host_url, timeout=0.5)
    server.pause_accept(1.5)
    ids = _capture(100)
    ok, took = _timed_flush(15)
    assert ok
    # The attempts that timed out waited in the listen backlog and are served once accepted: the same
    # events (same uuid, which PostHog dedupes on) arrive again. At least once, never lost, never altered.
    got = Counter(e["uuid"] for e in server.events())
    assert sorted(got) == sorted(ids)
    copies = set(got.values())
    assert len(copies) == 1  # whole requests repeated, not parts of them
    retries = client.stats()["retries"]
    assert retries >= 1 and copies.pop() <= retries + 1
    fault_table.append(
        (
            "slow accept (1.5 s)",
            f"timeouts, retried {retries}×",
            f"100/100, late copies deduped by uuid, {took:.2f}s",
        )
    )


def test_413_above_a_size_splits_and_drops_only_what_can_never_fit(fault_table: Table) -> None:
    with CaptureServer(max_body=20_000) as server:
        client = _init(server.host_url)
        ids = _capture(200)  # ~30 KB: over the limit as one request
        big = obs.capture("big", {"s": "x" * 30_000}, distinct_id="u")
        ok, took = _timed_flush(10)
        assert not ok  # one event could never be accepted
        _exactly_once(server, ids)
        stats = client.stats()
        assert stats["dropped_too_large"] == 1 and stats["sent"] == 200
        assert big not in {e["uuid"] for e in server.events()}
        assert_accounted(stats)
    fault_table.append(
        ("413 above 20 KB", "split in halves", f"200/200 once, 1 too large dropped, {took:.2f}s")
    )


def test_refused_until_the_server_comes_up(fault_table: Table) -> None:
    port = free_port()
    client = _init(f"http://localhost:{port}")
    ids = _capture(100)
    obs.get_client().flush(0.3)  # the worker is now retrying against a refused port
    time.sleep(0.5)
    with CaptureServer(port=port) as server:
        ok, took = _timed_flush(15)
        assert ok
        _exactly_once(server, ids)
    stats = client.stats()
    assert stats["retries"] >= 2
    assert_accounted(stats)
    fault_table.append(
        ("refused, then up after ~1 s", f"retried {stats['retries']}×", f"100/100 once, {took:.2f}s")
    )


def test_refused_for_good_is_counted_within_the_budget(fault_table: Table) -> None:
    client = _init(f"http://localhost:{free_port()}", retry_budget=1.0)
    _capture(100)
    ok, took = _timed_flush(10)
    assert not ok and took < 3
    stats = client.stats()
    assert stats["dropped_failed"] == 100
    assert_accounted(stats)
    fault_table.append(
        ("refused for good", "gave up at retry_budget=1 s", f"100 dropped_failed, {took:.2f}s")
    )


def test_shutdown_against_a_dead_endpoint_accounts_for_every_event(
    server: CaptureServer, fault_table: Table
) -> None:
    server.default = Reply(hang=True, delay=30)
    client = _init(server.host_url, timeout=10)
    for i in range(50_000):
        obs.capture("bulk", {"i": i}, distinct_id="u")
    started = time.monotonic()
    assert not obs.shutdown(2)
    took = time.monotonic() - started
    assert took < 2.3, f"shutdown(2) took {took:.2f}s"
    stats = client.stats()
    assert stats["captured"] == 50_000
    assert stats["in_flight"] == 0
    assert stats["dropped_shutdown"] == 50_000
    assert_accounted(stats)
    fault_table.append(
        ("hang at shutdown(2)", "aborted at the deadline", f"50,000 dropped_shutdown, {took:.2f}s")
    )
