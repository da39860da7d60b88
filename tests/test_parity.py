"""Wire parity with posthog-python: the same call through both SDKs to the same capture server."""

from __future__ import annotations

import datetime as dt
from typing import Any

import posthog

import obs
from tests.capture_server import CaptureServer

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
