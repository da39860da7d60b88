"""PostHogSink in capture v1 (`OBS_CAPTURE_MODE=v1`) against the local capture server, reached by name.

The server checks v1 requests as PostHog's capture does (Bearer key, the `PostHog-*` headers, the body's
shape) and answers per event; `Reply(results=...)` marks chosen events `retry` or `drop`. Everything goes
through the real network path: obs.init → capture → worker → httpx → tests/capture_server.py.
"""

from __future__ import annotations

import datetime as dt
import gzip
import itertools
import json
import logging
import time
import uuid as uuidlib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import obs
from obs._client import Client
from obs._stats import Stats
from obs.sinks import Batch, PostHogSink
from tests.capture_server import V1_PATH, CaptureServer, Received, Reply, refused_url
from tests.reliability.conftest import assert_accounted


def _init(host: str, **overrides: Any) -> Client:
    settings: dict[str, Any] = {"capture_mode": "v1", "retry_backoff": 0.01, "flush_interval": 60}
    settings.update(overrides)
    client = obs.init(api_key="phc_test", host=host, **settings)
    assert isinstance(client, Client)
    # Started now: these tests are about the sink; a flush this soon would otherwise go by the cold post.
    assert client._ensure_worker() is not None
    return client


def _capture(n: int, name: str = "e") -> list[str]:
    ids = [obs.capture(name, {"i": i}, distinct_id="user-1") for i in range(n)]
    assert all(isinstance(u, str) for u in ids)
    return [str(u) for u in ids]


def _requests(server: CaptureServer, n: int) -> list[Received]:
    """The server's requests once there are ``n``, checking no more come."""
    assert server.wait_for_requests(n, timeout=5), f"expected {n} requests, got {len(server.received)}"
    time.sleep(0.05)
    assert len(server.received) == n, [(len(r.events), r.status) for r in server.received]
    return list(server.received)


def _uuids(r: Received) -> list[str]:
    return [e["uuid"] for e in r.events]


def _delivered_once(server: CaptureServer) -> Counter[str]:
    got = Counter(e["uuid"] for e in server.events())
    assert not got or max(got.values()) == 1, "an event was delivered twice"
    return got


def _wait(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


# ------------------------------------------------------------------------------------------- wire


def test_wire_shape_of_a_v1_request(server: CaptureServer) -> None:
    _init(server.host_url)
    before = dt.datetime.now(dt.timezone.utc)
    with obs.context(session_id="sess-1"):
        ids = _capture(3)
    assert obs.flush(5)

    (req,) = _requests(server, 1)
    assert req.path == V1_PATH and req.status == 200  # the server accepted every header
    h = req.headers
    assert h["authorization"] == "Bearer phc_test"
    assert h["content-type"] == "application/json"
    assert h["user-agent"] == f"obs-python/{obs.__version__}"
    assert h["posthog-sdk-info"] == f"obs/{obs.__version__}"  # PostHog derives $lib/$lib_version from it
    assert h["posthog-attempt"] == "1"
    assert uuidlib.UUID(h["posthog-request-id"]).version == 4
    stamp = dt.datetime.fromisoformat(h["posthog-request-timestamp"])
    assert stamp.utcoffset() == dt.timedelta(0)
    assert before - dt.timedelta(seconds=1) <= stamp <= dt.datetime.now(dt.timezone.utc)
    assert "content-encoding" not in h

    body = json.loads(req.raw)
    assert set(body) == {"created_at", "batch"}  # no api_key, no sent_at, no historical_migration
    assert dt.datetime.fromisoformat(body["created_at"]) <= stamp
    assert [e["uuid"] for e in body["batch"]] == ids
    for i, e in enumerate(body["batch"]):
        assert list(e) == [
            "event",
            "uuid",
            "distinct_id",
            "timestamp",
            "options",
            "properties",
            "session_id",
        ]
        assert e["event"] == "e" and e["distinct_id"] == "user-1" and e["session_id"] == "sess-1"
        assert e["options"] == {}
        assert e["properties"]["i"] == i
        assert not {"$lib", "$lib_version", "$session_id"} & set(e["properties"])
        assert dt.datetime.fromisoformat(e["timestamp"]).utcoffset() == dt.timedelta(0)
    assert req.results == {u: {"result": "ok"} for u in ids}
    assert obs.get_client().stats()["sent"] == 3


def test_gzip_compresses_the_v1_body(server: CaptureServer) -> None:
    _init(server.host_url, gzip=True)
    ids = _capture(20)
    assert obs.flush(5)
    (req,) = _requests(server, 1)
    assert req.status == 200
    assert req.headers["content-encoding"] == "gzip" and req.raw[:2] == b"\x1f\x8b"
    assert [e["uuid"] for e in json.loads(gzip.decompress(req.raw))["batch"]] == ids


@pytest.mark.parametrize("mode", ["v0", "v1"])
def test_historical_migration_is_in_the_body_only_when_set(server: CaptureServer, mode: str) -> None:
    _init(server.host_url, capture_mode=mode, historical_migration=True)
    _capture(2)
    assert obs.flush(5)
    obs.init(api_key="phc_test", host=server.host_url, capture_mode=mode)  # a new client: setting off
    _capture(1)
    assert obs.flush(5)
    on, off = _requests(server, 2)
    assert on.body["historical_migration"] is True
    assert "historical_migration" not in off.body
    assert len(server.events()) == 3


def test_obs_capture_mode_and_historical_migration_from_the_environment(
    server: CaptureServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OBS_CAPTURE_MODE", "V1")
    monkeypatch.setenv("OBS_HISTORICAL_MIGRATION", "1")
    client = obs.init(api_key="phc_test", host=server.host_url)
    assert client.settings is not None and client.settings.capture_mode == "v1"
    _capture(1)
    assert obs.flush(5)
    (req,) = _requests(server, 1)
    assert req.path == V1_PATH and req.body["historical_migration"] is True


@pytest.mark.parametrize("how", ["init", "env"])
def test_an_unknown_capture_mode_is_a_config_error(monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    if how == "env":
        monkeypatch.setenv("OBS_CAPTURE_MODE", "v2")
        kwargs: dict[str, Any] = {}
    else:
        kwargs = {"capture_mode": "v2"}
    with pytest.raises(obs.ConfigError, match=r"'v2' is not a capture mode"):
        obs.init(api_key="phc_test", **kwargs)


def test_capture_ai_keeps_the_v0_ai_route(server: CaptureServer) -> None:
    _init(server.host_url)
    ai = obs.capture_ai("$ai_generation", {"$ai_model": "m"}, distinct_id="u")
    plain = obs.capture("clicked", distinct_id="u")
    assert obs.flush(5)
    assert sorted(r.path for r in _requests(server, 2)) == ["/i/v0/ai/batch/", V1_PATH]
    ai_req = next(r for r in server.received if r.path == "/i/v0/ai/batch/")
    assert set(ai_req.body) == {"api_key", "sent_at", "batch"} and _uuids(ai_req) == [ai]
    assert [e["uuid"] for e in server.events(V1_PATH)] == [plain]


# ------------------------------------------------------------------------------------------- retries


def test_retries_keep_the_request_id_count_attempts_and_stamp_each_anew(server: CaptureServer) -> None:
    _init(server.host_url, max_retries=3, retry_backoff=0.05)
    server.script(503, Reply(close=True))
    ids = _capture(4)
    assert obs.flush(5)

    reqs = _requests(server, 3)
    assert [r.status for r in reqs] == [503, 0, 200]
    assert [r.headers["posthog-attempt"] for r in reqs] == ["1", "2", "3"]
    assert len({r.headers["posthog-request-id"] for r in reqs}) == 1
    stamps = [dt.datetime.fromisoformat(r.headers["posthog-request-timestamp"]) for r in reqs]
    assert all(a < b for a, b in itertools.pairwise(stamps))  # taken afresh for every attempt
    assert len({r.body["created_at"] for r in reqs}) == 1
    assert all(r.events == reqs[0].events for r in reqs)  # same uuids, timestamps, properties
    assert sorted(_delivered_once(server)) == sorted(ids)
    assert obs.get_client().stats()["retries"] == 2


def test_404_is_retried_in_v1_as_posthog_python_does(server: CaptureServer) -> None:
    _init(server.host_url, max_retries=2)
    server.script(404)
    ids = _capture(2)
    assert obs.flush(5)
    assert [r.status for r in _requests(server, 2)] == [404, 200]
    assert sorted(_delivered_once(server)) == sorted(ids)


def test_partial_retry_resends_only_the_marked_events(server: CaptureServer) -> None:
    client = _init(server.host_url, max_retries=3)
    ids = _capture(6)
    server.script(
        Reply(results={ids[1]: "retry", ids[4]: ("retry", "not_persisted")}),
        Reply(results={ids[4]: "retry"}),
    )
    assert obs.flush(5)  # every event delivered in the end

    first, second, third = _requests(server, 3)
    assert _uuids(first) == ids
    assert _uuids(second) == [ids[1], ids[4]]  # the accepted four are never sent again
    assert _uuids(third) == [ids[4]]
    assert [r.headers["posthog-attempt"] for r in (first, second, third)] == ["1", "2", "3"]
    assert len({r.headers["posthog-request-id"] for r in (first, second, third)}) == 1
    assert second.events == [first.events[1], first.events[4]]  # byte for byte the same events
    assert sorted(_delivered_once(server)) == sorted(ids)
    stats = client.stats()
    assert stats["sent"] == 6 and stats["retries"] == 2 and stats["dropped_failed"] == 0
    assert_accounted(stats)


def test_retry_after_on_a_partial_answer_is_honoured(server: CaptureServer) -> None:
    _init(server.host_url, max_retries=3)
    ids = _capture(3)
    server.script(Reply(headers={"Retry-After": "1"}, results={ids[0]: "retry"}))
    assert obs.flush(10)
    first, second = _requests(server, 2)
    assert 0.95 <= second.at - first.at < 3.0  # the backoff alone would be ~0.1 s
    assert _uuids(second) == [ids[0]]


def test_dropped_events_are_counted_by_reason_and_never_resent(
    server: CaptureServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = _init(server.host_url, max_retries=3)
    ids = _capture(5)
    server.script(
        Reply(
            results={
                ids[0]: ("drop", "billing_limit_exceeded"),
                ids[2]: ("drop", "billing_limit_exceeded"),
                ids[3]: ("warning", "person_processing_disabled"),  # accepted: not resent either
                ids[4]: "drop",
            }
        )
    )
    with caplog.at_level(logging.WARNING, logger="obs"):
        assert not obs.flush(5)  # three were not delivered

    _requests(server, 1)
    assert sorted(_delivered_once(server)) == sorted([ids[1], ids[3]])
    stats = client.stats()
    assert stats["dropped_rejected"] == 3 and stats["sent"] == 2 and stats["retries"] == 0
    assert stats["rejected_reasons"] == {"billing_limit_exceeded": 2, "unspecified": 1}
    assert_accounted(stats)
    assert "PostHog dropped 3 event(s) (billing_limit_exceeded ×2, unspecified ×1)" in caplog.text
    assert obs.flush(5)  # the loss was reported once


def test_events_the_server_keeps_asking_to_retry_are_given_up_after_the_budget(
    server: CaptureServer,
) -> None:
    client = _init(server.host_url, max_retries=2)
    ids = _capture(4)
    stuck = ids[2]
    server.default = Reply(results=lambda e: "retry" if e["uuid"] == stuck else None)
    assert not obs.flush(5)

    reqs = _requests(server, 3)
    assert [_uuids(r) for r in reqs] == [ids, [stuck], [stuck]]
    stats = client.stats()
    assert stats["dropped_failed"] == 1 and stats["sent"] == 3 and stats["retries"] == 2
    assert_accounted(stats)
    assert stuck not in _delivered_once(server)


def test_a_refused_request_counts_every_event_rejected_by_status(server: CaptureServer) -> None:
    client = _init(server.host_url, max_retries=3)
    server.script(Reply(401, body=b'{"error":"invalid token"}'))
    _capture(3)
    assert not obs.flush(5)
    assert [r.status for r in _requests(server, 1)] == [401]
    stats = client.stats()
    assert stats["dropped_rejected"] == 3 and stats["rejected_reasons"] == {"http_401": 3}
    assert_accounted(stats)


def test_a_success_without_results_is_taken_as_delivered(server: CaptureServer) -> None:
    client = _init(server.host_url)
    server.script(Reply(body=b""))  # e.g. a proxy in front of PostHog
    ids = _capture(2)
    assert obs.flush(5)
    (req,) = _requests(server, 1)
    assert req.results is None and _uuids(req) == ids
    assert client.stats()["sent"] == 2


def test_options_the_server_cannot_read_drop_the_event_not_the_batch(server: CaptureServer) -> None:
    """A property that stands for an option is sent in `options` only when PostHog can read it."""
    client = _init(server.host_url)
    good = obs.capture("e", {"$process_person_profile": "false"}, distinct_id="u")
    odd = obs.capture("e", {"$process_person_profile": "maybe", "$product_tour_id": 7}, distinct_id="u")
    assert obs.flush(5)
    (req,) = _requests(server, 1)
    by_id = {e["uuid"]: e for e in req.events}
    assert by_id[good]["options"] == {"process_person_profile": False}
    assert by_id[odd]["options"] == {}  # left out, as posthog-python does, rather than fail the batch
    assert "$process_person_profile" not in by_id[odd]["properties"]
    assert client.stats()["sent"] == 2


# ------------------------------------------------------------------------------------------- 413 and sizes


@pytest.mark.anyio
async def test_413_splits_the_pending_events_into_new_requests(server: CaptureServer) -> None:
    sink = PostHogSink("phc_test", server.host_url, capture_mode="v1", retry_backoff=0.01, stats=Stats())
    events = [
        {
            "event": f"e{i}",
            "distinct_id": "u",
            "properties": {"i": i, "$lib": "obs", "$lib_version": obs.__version__},
            "timestamp": f"2026-05-01T12:00:0{i}+00:00",
            "uuid": f"00000000-0000-7000-8000-{i:012d}",
        }
        for i in range(6)
    ]
    uuids = [e["uuid"] for e in events]
    server.script(Reply(results={uuids[0]: "retry", uuids[3]: "retry", uuids[5]: "retry"}), 413)
    try:
        assert await sink.send(Batch(events)) is None
    finally:
        await sink.aclose()
    reqs = _requests(server, 4)
    assert [(_uuids(r), r.status) for r in reqs] == [
        (uuids, 200),
        ([uuids[0], uuids[3], uuids[5]], 413),
        ([uuids[0]], 200),
        ([uuids[3], uuids[5]], 200),
    ]
    assert reqs[0].headers["posthog-request-id"] == reqs[1].headers["posthog-request-id"]
    assert len({r.headers["posthog-request-id"] for r in reqs[1:]}) == 3  # each half is a request of its own
    assert sorted(_delivered_once(server)) == sorted(uuids)


def test_max_batch_bytes_bounds_v1_bodies(server: CaptureServer) -> None:
    _init(server.host_url, max_batch_bytes=4096)
    ids = [obs.capture("e", {"pad": "p" * 400, "i": i}, distinct_id="u") for i in range(30)]
    assert obs.flush(5)
    assert len(server.received) >= 4
    assert all(len(r.raw) <= 4096 and r.status == 200 for r in server.received)
    assert [e["uuid"] for e in server.events()] == ids


# ------------------------------------------------------------------------------------------- the spool


def _drained(client: Client, timeout: float = 15.0) -> None:
    _wait(lambda: client.stats()["spool_pending"] == 0, timeout)


def test_a_v1_outage_is_spooled_then_resent_as_a_new_v1_request(
    server: CaptureServer, tmp_path: Path
) -> None:
    client = _init(server.host_url, spool_dir=str(tmp_path), retry_backoff=0.1, flush_interval=0.5)
    server.fail_for(1.5, 503)
    ids = _capture(50)
    assert not obs.flush(10)  # in the spool, not delivered yet
    stats = client.stats()
    assert stats["spooled"] == 50
    assert_accounted(stats)
    _drained(client)

    assert sorted(_delivered_once(server)) == sorted(ids)
    failed = [r for r in server.received if r.status == 503]
    resent = [r for r in server.accepted]
    assert failed and resent and all(r.path == V1_PATH for r in server.received)
    assert {r.headers["posthog-request-id"] for r in resent}.isdisjoint(
        {r.headers["posthog-request-id"] for r in failed}
    )
    assert all(r.headers["posthog-attempt"] == "1" for r in resent)
    assert client.stats()["spool_sent"] == 50


def test_after_a_partial_answer_only_the_retry_events_are_spooled(
    server: CaptureServer, tmp_path: Path
) -> None:
    client = _init(server.host_url, spool_dir=str(tmp_path), retry_backoff=0.1, flush_interval=0.5)
    ids = _capture(5)
    server.script(Reply(results={ids[1]: "retry", ids[3]: "retry"}))
    server.default = Reply(503)  # from the second request on: an outage
    assert not obs.flush(10)
    stats = client.stats()
    assert stats["sent"] == 3 and stats["spooled"] == 2 and client.stats()["spool_pending"] == 2
    assert_accounted(stats)
    assert [_uuids(r) for r in server.received][:2] == [ids, [ids[1], ids[3]]]
    server.default = Reply()
    _drained(client)
    assert sorted(_delivered_once(server)) == sorted(ids)
    assert client.stats()["spool_sent"] == 2


def test_a_spooled_resend_settles_each_event_by_its_verdict(server: CaptureServer, tmp_path: Path) -> None:
    client = _init(server.host_url, spool_dir=str(tmp_path), retry_backoff=0.1, flush_interval=0.5)
    server.fail_for(60, 503)
    ids = _capture(4)
    assert not obs.flush(10)
    assert client.stats()["spool_pending"] == 4
    # The first re-send: one event dropped, one to retry; the retry then goes through.
    server.script(Reply(results={ids[0]: ("drop", "event_restriction_drop"), ids[2]: "retry"}))
    server.fail_for(0, 503)
    _drained(client)

    resent = [r for r in server.received if r.status == 200]
    assert [_uuids(r) for r in resent] == [ids, [ids[2]]]  # delivered ones never went again
    assert sorted(_delivered_once(server)) == sorted([ids[1], ids[2], ids[3]])
    stats = client.stats()
    assert stats["spool_sent"] == 3 and stats["spool_rejected"] == 1
    assert stats["rejected_reasons"] == {"event_restriction_drop": 1}
    assert_accounted(stats)


def test_a_batch_spooled_by_a_v0_process_is_resent_in_v1(server: CaptureServer, tmp_path: Path) -> None:
    client = obs.init(api_key="phc_test", host=refused_url(), spool_dir=str(tmp_path), max_retries=0)
    with obs.context(session_id="s-9"):
        ids = [obs.capture("old", {"i": i}, distinct_id="u") for i in range(3)]
    assert not client.flush(5)
    assert client.stats()["spooled"] == 3
    obs.shutdown(5)
    client = _init(server.host_url, spool_dir=str(tmp_path))  # the next process, in v1
    _drained(client)
    (req,) = server.accepted
    assert req.path == V1_PATH and _uuids(req) == ids
    assert all(e["session_id"] == "s-9" and "$lib" not in e["properties"] for e in req.events)


# ------------------------------------------------------------------------------------------- options


def test_options_in_v1_travel_in_the_options_object(server: CaptureServer) -> None:
    _init(server.host_url)
    opts: obs.CaptureOptions = {
        "process_person_profile": False,
        "cookieless_mode": True,
        "disable_skew_correction": True,
        "product_tour_id": "tour-1",
    }
    u = obs.capture("e", {"a": 1}, distinct_id="u", options=opts)
    assert obs.flush(5)
    (event,) = server.events()
    assert event["uuid"] == u
    assert event["options"] == opts
    assert event["properties"] == {
        "a": 1,
        "environment": "unknown",
        "$geoip_disable": True,
        "$is_server": True,
    }


def test_options_in_v0_are_posthogs_properties(server: CaptureServer) -> None:
    obs.init(api_key="phc_test", host=server.host_url)
    obs.capture(
        "e",
        distinct_id="u",
        options={
            "process_person_profile": False,
            "cookieless_mode": True,
            "disable_skew_correction": True,
            "product_tour_id": "tour-1",
        },
    )
    assert obs.flush(5)
    (event,) = server.events("/batch/")
    props = event["properties"]
    assert props["$process_person_profile"] is False
    assert props["$cookieless_mode"] is True
    assert props["$ignore_sent_at"] is True
    assert props["$product_tour_id"] == "tour-1"
