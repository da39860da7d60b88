"""obs.testing.capture_events: users assert what their code emits, through the real pipeline."""

from __future__ import annotations

import asyncio

import obs
import obs.testing
from obs._client import Client, DisabledClient
from tests.capture_server import CaptureServer


def test_collects_events_without_an_api_key() -> None:
    assert isinstance(obs.get_client(), DisabledClient)
    with obs.testing.capture_events() as captured:
        with obs.context(distinct_id="u1", properties={"tenant": "acme"}):
            obs.capture("signed_up", {"plan": "pro"})
        obs.identify("u1", {"email": "a@b.c"})
    assert [e["event"] for e in captured] == ["signed_up", "$identify"]
    (signup,) = captured.named("signed_up")
    assert signup["distinct_id"] == "u1"
    assert signup["properties"]["plan"] == "pro" and signup["properties"]["tenant"] == "acme"
    assert signup["properties"]["$lib"] == "obs"
    assert isinstance(obs.get_client(), DisabledClient)  # the previous client is back
    assert obs.capture("after") is None


def test_nothing_is_sent_and_the_previous_client_is_restored(server: CaptureServer) -> None:
    real = obs.init(api_key="phc_real", host=server.url)
    with obs.testing.capture_events(identify_pii="full") as captured:
        obs.capture("inside", distinct_id="u")
        obs.identify("u", {"name": "Ada"})
        assert len(captured) == 2
    assert captured.named("$identify")[0]["properties"]["$set"] == {"name": "Ada"}
    assert obs.get_client() is real
    obs.capture("outside", distinct_id="u")
    assert obs.flush(5)
    assert [e["event"] for e in server.events()] == ["outside"]


def test_works_from_async_code() -> None:
    async def handler() -> None:
        obs.capture("async_event", distinct_id="u")
        await asyncio.sleep(0)

    with obs.testing.capture_events() as captured:
        asyncio.run(handler())
    assert [e["event"] for e in captured.events] == ["async_event"]
    assert isinstance(captured.client, Client) and captured.client._closed
