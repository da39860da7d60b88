"""What already held under load, kept as tests: big exits, many producers at once, a dead endpoint's burst."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import defaultdict

import anyio
import trio

import obs
from obs._client import Client
from tests.capture_server import CaptureServer, Reply
from tests.reliability.conftest import assert_accounted, run_py


def test_50k_events_then_a_normal_exit_without_flush_all_delivered_once(server: CaptureServer) -> None:
    out = run_py(
        """
        import obs
        for i in range(50_000):
            obs.capture("bulk", {"i": i}, distinct_id="u")
        """,
        {"POSTHOG_API_KEY": "phc_load", "POSTHOG_HOST": server.host_url, "OBS_GZIP": "1"},
    )
    assert out.returncode == 0, out.stderr
    assert server.wait_for_events(50_000, timeout=10)
    events = server.events()
    assert len(events) == 50_000
    assert sorted(e["properties"]["i"] for e in events) == list(range(50_000))


def test_threads_asyncio_and_trio_producers_at_once_exactly_once_in_order(server: CaptureServer) -> None:
    client = obs.init(api_key="phc_load", host=server.host_url, flush_at=50)
    assert isinstance(client, Client)
    per = 2_000

    def produce(tag: str) -> None:
        for i in range(per):
            obs.capture("p", {"tag": tag, "i": i}, distinct_id=tag)

    async def produce_async(tag: str) -> None:
        for i in range(per):
            obs.capture("p", {"tag": tag, "i": i}, distinct_id=tag)
            if i % 100 == 0:
                await anyio.sleep(0)

    threads = [threading.Thread(target=produce, args=(f"thread-{k}",)) for k in range(8)]
    threads.append(threading.Thread(target=lambda: asyncio.run(produce_async("asyncio"))))
    threads.append(threading.Thread(target=lambda: trio.run(produce_async, "trio")))
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert obs.flush(30)
    seen: dict[str, list[int]] = defaultdict(list)
    for e in server.events():  # in the order the server received them
        seen[e["properties"]["tag"]].append(e["properties"]["i"])
    assert set(seen) == {*(f"thread-{k}" for k in range(8)), "asyncio", "trio"}
    for tag, order in seen.items():
        assert order == list(range(per)), f"{tag}: not exactly once in capture order"
    stats = client.stats()
    assert stats["sent"] == 10 * per
    assert_accounted(stats)


def test_dead_endpoint_burst_bounds_memory_and_shutdown_time(server: CaptureServer) -> None:
    server.default = Reply(hang=True, delay=60)
    out = run_py(
        """
        import json, resource, time, obs
        client = obs.init(max_queue_size=100_000, timeout=30)
        rss = lambda: int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize()
        props = {"plan": "pro"}
        obs.capture("warm", props, distinct_id="u")
        time.sleep(0.2)
        before = rss()
        for i in range(200_000):
            obs.capture("burst", props, distinct_id="u")
        after = rss()
        started = time.monotonic()
        ok = obs.shutdown(2)
        took = time.monotonic() - started
        print(json.dumps({"rss": after - before, "ok": ok, "took": took, "stats": client.stats()}))
        """,
        {"POSTHOG_API_KEY": "phc_load", "POSTHOG_HOST": server.host_url},
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    stats = result["stats"]
    assert not result["ok"]
    assert result["took"] < 2.3, f"shutdown(2) took {result['took']:.2f}s"
    # The queue holds at most max_queue_size events, and the PostHog sink's backlog (4 batches, plus the
    # one being sent and the one built and waiting for room) at most max_queue_size / 2 more, as JSON
    # only (each batch at most max_queue_size / 12 events); the rest are refused and counted.
    assert stats["dropped_queue_full"] >= 200_000 - 100_000 - 6 * (100_000 // 12)
    assert stats["captured"] == 200_001
    assert stats["in_flight"] == 0
    assert_accounted(stats)
    # Bound per queued event (docs/reliability.md): well under 1 KiB for a small event.
    per_event = result["rss"] / 100_000
    assert per_event < 1024, f"{per_event:.0f} bytes per queued event"
    time.sleep(0)  # the subprocess is gone; nothing of it lingers here
