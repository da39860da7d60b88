"""Flush, shutdown, interpreter exit, fork, queue limits and many concurrent producers."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import Counter

import anyio
import pytest
import trio

import obs
from obs.sinks import MemorySink
from tests.capture_server import CaptureServer, Reply
from tests.procs import run_py


def test_exit_without_flush_loses_nothing(server: CaptureServer) -> None:
    out = run_py(
        """
        import obs
        for i in range(10_000):
            obs.capture("bulk", {"i": i}, distinct_id="u")
        print("captured")
        """,
        {"POSTHOG_API_KEY": "phc_sub", "POSTHOG_HOST": server.host_url},
    )
    assert out.returncode == 0, out.stderr
    assert server.wait_for_events(10_000, timeout=5)
    events = server.events()
    assert len(events) == 10_000
    assert sorted(e["properties"]["i"] for e in events) == list(range(10_000))
    assert len({e["uuid"] for e in events}) == 10_000


def test_exit_with_an_unreachable_server_is_bounded(server: CaptureServer) -> None:
    server.default = Reply(hang=True, delay=30)
    started = time.monotonic()
    out = run_py(
        """
        import obs
        obs.capture("x", distinct_id="u")
        """,
        {
            "POSTHOG_API_KEY": "phc_sub",
            "POSTHOG_HOST": server.host_url,
            "OBS_SHUTDOWN_TIMEOUT": "1",
            "OBS_TIMEOUT": "0.5",
        },
    )
    assert out.returncode == 0, out.stderr
    assert time.monotonic() - started < 15
    assert "shutdown timed out" in out.stderr


def test_flush_waits_for_delivery_and_shutdown_stops(server: CaptureServer) -> None:
    client = obs.init(api_key="phc_x", host=server.host_url, flush_interval=60)
    for i in range(5):
        obs.capture("e", {"i": i}, distinct_id="u")
    assert obs.flush(5)
    assert len(server.events()) == 5  # flush returned after the server acknowledged
    assert obs.shutdown(5)
    # A process this short delivers without starting the worker (obs/_cold.py); if it started, it stopped.
    assert client._worker is None or not client._worker.thread.is_alive()
    assert obs.capture("late", distinct_id="u") is None
    assert client.stats()["dropped_closed"] == 1
    assert not obs.shutdown(5)  # a second shutdown is harmless, and says the late event was lost
    assert obs.shutdown(5)  # once
    again = obs.init(api_key="phc_x", host=server.host_url)
    assert again is not client and obs.capture("again", distinct_id="u") is not None


def test_flush_timeout_returns_false_while_the_server_hangs(server: CaptureServer) -> None:
    # Both hang: the cold post (obs/_cold.py) and then the worker's request.
    server.script(Reply(hang=True, delay=3), Reply(hang=True, delay=3))
    obs.init(api_key="phc_x", host=server.host_url, timeout=5, max_retries=0)
    obs.capture("e", distinct_id="u")
    started = time.monotonic()
    assert obs.flush(0.3) is False
    assert time.monotonic() - started < 2


def test_flush_from_many_threads_at_once(server: CaptureServer) -> None:
    obs.init(api_key="phc_x", host=server.host_url, flush_interval=60)
    results: list[bool] = []

    def worker(n: int) -> None:
        for i in range(50):
            obs.capture("t", {"n": n, "i": i}, distinct_id="u")
        results.append(obs.flush(10))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True] * 4
    assert len(server.events()) == 200


def test_aflush_and_ashutdown_on_asyncio_and_trio(server: CaptureServer) -> None:
    obs.init(api_key="phc_x", host=server.host_url, flush_interval=60)

    async def produce(tag: str) -> bool:
        obs.capture(tag, distinct_id="u")
        return await obs.aflush(5)

    assert asyncio.run(produce("asyncio"))
    assert trio.run(produce, "trio")
    assert sorted(e["event"] for e in server.events()) == ["asyncio", "trio"]

    async def stop() -> bool:
        return await obs.ashutdown(5)

    assert anyio.run(stop)
    assert obs.capture("late") is None


def test_queue_full_drops_new_events_counts_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    sink = MemorySink()
    client = obs.init(api_key="phc_x", sinks=[sink], max_queue_size=10, flush_at=1000, flush_interval=60)
    time.sleep(0.2)  # the worker is idle, waiting for the interval
    with caplog.at_level(logging.WARNING, logger="obs"):
        ids = [obs.capture("e", {"i": i}, distinct_id="u") for i in range(15)]
    assert ids[10:] == [None] * 5 and all(ids[:10])
    assert client.stats()["dropped_queue_full"] == 5
    assert len([r for r in caplog.records if "queue is full" in r.getMessage()]) == 1
    assert not obs.flush(5)  # five events captured before it were dropped
    assert [e["properties"]["i"] for e in sink.events] == list(range(10))  # the oldest are kept


def test_flush_at_wakes_the_worker_before_the_interval(server: CaptureServer) -> None:
    obs.init(api_key="phc_x", host=server.host_url, flush_at=10, flush_interval=60)
    for i in range(10):
        obs.capture("e", {"i": i}, distinct_id="u")
    assert server.wait_for_events(10, timeout=5)


def test_flush_interval_sends_a_partial_batch(server: CaptureServer) -> None:
    obs.init(api_key="phc_x", host=server.host_url, flush_at=100, flush_interval=0.2)
    obs.capture("e", distinct_id="u")
    assert server.wait_for_events(1, timeout=5)


def test_many_producers_threads_asyncio_and_trio_exactly_once(server: CaptureServer) -> None:
    client = obs.init(api_key="phc_x", host=server.host_url, flush_at=50)
    per = 500
    barrier = threading.Barrier(10)

    def thread_producer(n: int) -> None:
        barrier.wait()
        for i in range(per):
            obs.capture("p", {"src": f"thread-{n}", "i": i}, distinct_id=f"t{n}")

    def asyncio_producer() -> None:
        async def task(n: int) -> None:
            for i in range(per // 5):
                obs.capture("p", {"src": f"asyncio-{n}", "i": i}, distinct_id="a")
                await asyncio.sleep(0)

        async def main() -> None:
            barrier.wait()
            await asyncio.gather(*(task(n) for n in range(5)))

        asyncio.run(main())

    def trio_producer() -> None:
        async def task(n: int) -> None:
            for i in range(per // 5):
                obs.capture("p", {"src": f"trio-{n}", "i": i}, distinct_id="t")
                await trio.sleep(0)

        async def main() -> None:
            barrier.wait()
            async with trio.open_nursery() as nursery:
                for n in range(5):
                    nursery.start_soon(task, n)

        trio.run(main)

    threads = [threading.Thread(target=thread_producer, args=(n,)) for n in range(8)]
    threads += [threading.Thread(target=asyncio_producer), threading.Thread(target=trio_producer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert obs.flush(20)
    events = server.events()
    expected = 8 * per + 2 * 5 * (per // 5)
    assert len(events) == expected
    assert len({e["uuid"] for e in events}) == expected  # no duplicates
    per_source = Counter(e["properties"]["src"] for e in events)
    assert all(per_source[f"thread-{n}"] == per for n in range(8))
    assert all(per_source[f"asyncio-{n}"] == per // 5 for n in range(5))
    assert all(per_source[f"trio-{n}"] == per // 5 for n in range(5))
    assert client.stats()["sent"] == expected


def test_events_from_one_thread_keep_their_order(server: CaptureServer) -> None:
    obs.init(api_key="phc_x", host=server.host_url, flush_at=7)
    for i in range(100):
        obs.capture("o", {"i": i}, distinct_id="u")
    assert obs.flush(5)
    assert [e["properties"]["i"] for e in server.events()] == list(range(100))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX-only")
def test_fork_child_gets_a_fresh_worker_and_not_the_parents_queue(server: CaptureServer) -> None:
    out = run_py(
        """
        import os, obs
        obs.init(flush_interval=60)
        for i in range(3):
            obs.capture("parent_before_fork", {"i": i}, distinct_id="parent")
        pid = os.fork()
        if pid == 0:
            obs.capture("child", distinct_id="child")
            ok = obs.flush(10)
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
        obs.capture("parent_after_fork", distinct_id="parent")
        """,
        {"POSTHOG_API_KEY": "phc_fork", "POSTHOG_HOST": server.host_url},
    )
    assert out.returncode == 0, out.stderr
    assert server.wait_for_events(5, timeout=5)
    counts = Counter(e["event"] for e in server.events())
    assert counts == {"parent_before_fork": 3, "child": 1, "parent_after_fork": 1}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX-only")
def test_multiprocessing_fork_children_flush_when_they_end(server: CaptureServer) -> None:
    out = run_py(
        """
        import multiprocessing as mp, obs
        obs.init()
        def work(n):
            for i in range(20):
                obs.capture("mp_child", {"n": n, "i": i}, distinct_id=f"w{n}")
        if __name__ == "__main__":
            ctx = mp.get_context("fork")
            procs = [ctx.Process(target=work, args=(n,)) for n in range(3)]
            for p in procs: p.start()
            for p in procs: p.join()
            assert all(p.exitcode == 0 for p in procs)
        """,
        {"POSTHOG_API_KEY": "phc_mp", "POSTHOG_HOST": server.host_url},
    )
    assert out.returncode == 0, out.stderr
    assert server.wait_for_events(60, timeout=5)
    assert Counter(e["properties"]["n"] for e in server.events()) == {0: 20, 1: 20, 2: 20}
