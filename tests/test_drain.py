"""The worker's lean path: records taken and built a chunk at a time, properties beside the queue, batches
as JSON only for the PostHog sink alone (`obs/_worker.py`, `Client._put`, `sinks/_base.EncodedBatch`)."""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

import obs
from obs._client import Client
from obs.sinks import Batch, MemorySink
from obs.sinks._base import EncodedBatch
from obs.sinks.posthog import PostHogSink
from tests.capture_server import CaptureServer


@pytest.fixture
def parked(server: CaptureServer) -> Iterator[Client]:
    """An enabled client against the capture server whose worker runs but drains only when flushed."""
    client = obs.init(
        api_key="phc_drain", host=server.host_url, flush_at=10**6, flush_interval=3600, max_queue_size=10**6
    )
    assert isinstance(client, Client)
    client._ensure_worker()  # the flushes below go through the worker, not the cold exit post
    assert client.flush(10)  # its loop has drained once and now waits for the next flush
    yield client
    client.shutdown(10)


def test_a_burst_of_mixed_routes_and_flushes_is_delivered_once_each_to_its_route(
    parked: Client, server: CaptureServer
) -> None:
    # Chunks of plain capture records, chunks with capture_ai records in them, and flush markers in between:
    # the drain takes the first in one step and the others record by record.
    expected: Counter[tuple[str, int]] = Counter()
    for i in range(2_500):
        if i % 7 == 3:
            obs.capture_ai("$ai_generation", {"i": i}, distinct_id="u")
            expected["/i/v0/ai/batch/", i] += 1
        else:
            obs.capture("burst", {"i": i, "f": 1.5, "flag": True}, distinct_id="u")
            expected["/batch/", i] += 1
        if i in (99, 1_000, 1_001, 2_000):
            assert obs.flush(10)
    assert obs.flush(10)
    got = Counter((r.path, e["properties"]["i"]) for r in server.accepted for e in r.delivered)
    assert got == expected
    stats = parked.stats()
    assert (stats["captured"], stats["sent"], stats["in_flight"]) == (2_500, 2_500, 0)
    assert parked._props == {}  # every record's properties were taken when it was built


def test_a_queued_record_is_not_tracked_by_the_cyclic_gc(parked: Client) -> None:
    obs.capture("plain", {"plan": "pro", "n": 1}, distinct_id="u")
    gc.collect(0)
    (record,) = list(parked._queue)
    assert not gc.is_tracked(record)  # its properties wait beside the queue, under the key it holds
    assert parked._props[record[2]] == {"plan": "pro", "n": 1}
    assert obs.flush(10)
    assert parked._props == {}


def test_the_properties_of_records_dropped_at_shutdown_are_let_go(server: CaptureServer) -> None:
    client = obs.init(
        api_key="phc_drain", host=server.host_url, flush_at=10**6, flush_interval=3600, max_queue_size=10**6
    )
    assert isinstance(client, Client)
    worker = client._ensure_worker()
    assert client.flush(10)  # its loop has drained once and now waits for the next flush
    for i in range(300):
        obs.capture("late", {"i": i}, distinct_id="u")
    worker.abort()  # the worker stops before draining: what is queued is settled without being built
    worker.thread.join(10)
    stats = client.stats()
    assert stats["dropped_shutdown"] == 300 and stats["in_queue"] == 0
    assert client._props == {}
    client.shutdown(1)


def _sinks_batches(sinks: list[Any]) -> list[list[Any]]:
    got: list[list[Any]] = [[] for _ in sinks]
    for i, sink in enumerate(sinks):
        send = sink.send

        async def spy(batch: Any, _send: Any = send, _got: list[Any] = got[i]) -> Any:
            _got.append(batch)
            return await _send(batch)

        sink.send = spy
    return got


def test_the_posthog_sink_alone_gets_json_only_and_other_sinks_get_wire_dicts(server: CaptureServer) -> None:
    alone = PostHogSink("phc_drain", server.host_url)
    client = obs.init(api_key="phc_drain", sinks=[alone], flush_interval=3600)
    assert isinstance(client, Client)
    (seen,) = _sinks_batches([alone])
    obs.capture("a", {"k": "v"}, distinct_id="u")
    assert obs.flush(10)
    (batch,) = seen
    assert isinstance(batch, EncodedBatch) and len(batch) == 1
    (event,) = batch.decode()
    assert (event["event"], event["properties"]["k"]) == ("a", "v")
    client.shutdown(5)

    memory, posthog = MemorySink(), PostHogSink("phc_drain", server.host_url)
    client = obs.init(api_key="phc_drain", sinks=[memory, posthog], flush_interval=3600)
    assert isinstance(client, Client)
    seen_memory, seen_posthog = _sinks_batches([memory, posthog])
    obs.capture("b", {"k": "w"}, distinct_id="u")
    assert obs.flush(10)
    assert isinstance(seen_memory[0], Batch) and seen_memory[0] is seen_posthog[0]
    assert seen_memory[0][0]["properties"]["k"] == "w"
    assert [e["event"] for e in server.events()] == ["a", "b"]
    client.shutdown(5)


def test_an_encoded_batch_decodes_to_the_events_it_was_encoded_from() -> None:
    events = [{"event": "e", "properties": {"i": i, "s": "é\n"}} for i in range(5)]
    chunks = [
        b'{"event":"e","properties":{"i":0,"s":"\xc3\xa9\\n"}}',
        b",".join(b'{"event":"e","properties":{"i":%d,"s":"\xc3\xa9\\n"}}' % i for i in range(1, 5)),
    ]
    batch = EncodedBatch(chunks, 5, "ai", max(map(len, chunks)))
    decoded = batch.decode()
    assert list(decoded) == events and decoded.route == "ai"
    assert decoded.encoded == batch.encoded == b"[" + b",".join(chunks) + b"]"


def test_in_capture_v1_the_posthog_sink_gets_wire_dicts(server: CaptureServer) -> None:
    # v1 sends each event in its own form: JSON-only batches would only be decoded again.
    sink = PostHogSink("phc_drain", server.host_url, capture_mode="v1")
    client = obs.init(api_key="phc_drain", sinks=[sink], flush_interval=3600)
    assert isinstance(client, Client)
    (seen,) = _sinks_batches([sink])
    obs.capture("v", {"k": 1}, distinct_id="u")
    assert obs.flush(10)
    assert isinstance(seen[0], Batch) and seen[0][0]["properties"]["k"] == 1
    assert [e["event"] for e in server.events()] == ["v"]
    client.shutdown(5)
