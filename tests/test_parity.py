"""Wire parity with posthog-python: the same call through both SDKs to the same capture server."""

from __future__ import annotations

import datetime as dt
import uuid as uuidlib
from typing import Any

import posthog

import obs
from tests.capture_server import CaptureServer, Received

TS = dt.datetime(2026, 5, 1, 14, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))


def _via_posthog(server: CaptureServer) -> dict[str, Any]:
    client = posthog.Client("phc_parity", host=server.url)
    client.capture("e", distinct_id="u", properties={"a": 1}, groups={"company": "acme"}, timestamp=TS)
    client.shutdown()
    assert server.wait_for_events(1)
    (request,) = server.received
    server.received.clear()
    assert request.path == "/batch/"
    body = request.body
    assert body["api_key"] == "phc_parity" and "sent_at" in body
    return body["batch"][0]  # type: ignore[no-any-return]


def _via_obs(server: CaptureServer) -> dict[str, Any]:
    obs.init(api_key="phc_parity", host=server.url)
    obs.capture("e", {"a": 1}, distinct_id="u", groups={"company": "acme"}, timestamp=TS)
    assert obs.shutdown(5)
    (request,) = server.accepted
    assert request.path == "/batch/"
    body = request.body
    assert body["api_key"] == "phc_parity" and "sent_at" in body
    return body["batch"][0]  # type: ignore[no-any-return]


def test_capture_has_posthog_pythons_wire_shape(server: CaptureServer) -> None:
    theirs = _via_posthog(server)
    ours = _via_obs(server)
    assert set(theirs) <= set(ours)
    for key in ("event", "distinct_id", "timestamp"):
        assert ours[key] == theirs[key], key
    assert ours["timestamp"] == "2026-05-01T12:30:00+00:00"
    # Left out on purpose: the runtime, constant per process (docs/events.md).
    runtime = {"$python_runtime", "$python_version", "$os", "$os_version", "$os_distro"}
    missing = set(theirs["properties"]) - set(ours["properties"]) - runtime
    assert not missing, f"posthog-python sends {missing}, obs does not"
    for key, value in theirs["properties"].items():
        if key not in runtime | {"$lib", "$lib_version"}:
            assert ours["properties"][key] == value, key
    assert ours["properties"]["$lib"] == "obs"


# ------------------------------------------------------------------------------------------- capture v1

_RUNTIME = {"$python_runtime", "$python_version", "$os", "$os_version", "$os_distro"}
_V1_HEADERS = (
    "content-type",
    "content-encoding",
    "authorization",
    "posthog-sdk-info",
    "posthog-attempt",
    "posthog-request-id",
    "posthog-request-timestamp",
)
_SENTINELS = {
    "$process_person_profile": False,
    "$cookieless_mode": True,
    "$ignore_sent_at": True,
    "$product_tour_id": "tour-1",
}


def _v1_request(server: CaptureServer) -> Received:
    assert server.wait_for_events(2, timeout=10)
    (request,) = server.received
    server.received.clear()
    assert request.path == "/i/v1/analytics/events" and request.status == 200
    return request


def _v1_via_posthog(server: CaptureServer) -> Received:
    client = posthog.Client(
        "phc_parity", host=server.host_url, capture_mode="v1", gzip=True, historical_migration=True
    )
    client.capture(
        "e",
        distinct_id="u",
        properties={"a": 1, "$session_id": "s-1", **_SENTINELS},
        groups={"company": "acme"},
        timestamp=TS,
    )
    client.capture("anon", properties={"b": 2}, timestamp=TS)  # personless
    client.shutdown()
    return _v1_request(server)


def _v1_via_obs(server: CaptureServer) -> Received:
    obs.init(
        api_key="phc_parity", host=server.host_url, capture_mode="v1", gzip=True, historical_migration=True
    )
    with obs.context(session_id="s-1"):
        obs.capture(
            "e",
            {"a": 1},
            distinct_id="u",
            groups={"company": "acme"},
            timestamp=TS,
            options={
                "process_person_profile": False,
                "cookieless_mode": True,
                "disable_skew_correction": True,
                "product_tour_id": "tour-1",
            },
        )
    obs.capture("anon", {"b": 2}, timestamp=TS)
    assert obs.shutdown(5)
    return _v1_request(server)


def test_capture_v1_has_posthog_pythons_wire_shape(server: CaptureServer) -> None:
    theirs, ours = _v1_via_posthog(server), _v1_via_obs(server)

    for name in _V1_HEADERS:
        assert name in theirs.headers and name in ours.headers, name
    for name in ("content-type", "content-encoding", "authorization", "posthog-attempt"):
        assert ours.headers[name] == theirs.headers[name], name
    for r in (theirs, ours):  # the ids and times differ; their forms do not
        assert uuidlib.UUID(r.headers["posthog-request-id"]).version == 4
        assert dt.datetime.fromisoformat(r.headers["posthog-request-timestamp"]).utcoffset() == dt.timedelta(
            0
        )
    lib, _, version = ours.headers["posthog-sdk-info"].partition("/")
    assert (lib, version) == ("obs", obs.__version__)  # "<$lib>/<$lib_version>", as theirs is

    assert list(ours.body) == list(theirs.body) == ["created_at", "batch", "historical_migration"]
    assert ours.body["historical_migration"] is theirs.body["historical_migration"] is True
    for mine, other in zip(ours.events, theirs.events, strict=True):
        assert list(mine) == list(other)  # same keys in the same order
        for key in ("event", "timestamp", "options", "session_id"):
            assert mine.get(key) == other.get(key), key
        props = {k: v for k, v in other["properties"].items() if k not in _RUNTIME}
        ours_props = {k: v for k, v in mine["properties"].items() if k != "environment"}
        assert ours_props == props
    named, anon = ours.events
    assert named["distinct_id"] == theirs.events[0]["distinct_id"] == "u"
    assert anon["options"] == {"process_person_profile": False}  # personless on both sides
