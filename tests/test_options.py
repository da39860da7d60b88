"""Per-event capture options (`obs.capture(..., options=...)`): checked on the caller's thread, carried as
PostHog's properties to every sink (the PostHog sink lifts them into v1's `options`; see
tests/sinks/test_posthog_v1.py for both wires)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

import obs
from obs._client import Client
from obs.sinks import MemorySink


def test_each_option_becomes_posthogs_property(memory: tuple[Client, MemorySink]) -> None:
    client, sink = memory
    u = obs.capture(
        "e",
        {"plan": "pro"},
        distinct_id="u",
        options={
            "process_person_profile": False,
            "cookieless_mode": True,
            "disable_skew_correction": True,
            "product_tour_id": "tour-1",
        },
    )
    assert client.flush(5)
    (event,) = sink.events
    assert event["uuid"] == u
    props = event["properties"]
    assert props["plan"] == "pro"
    assert props["$process_person_profile"] is False
    assert props["$cookieless_mode"] is True
    assert props["$ignore_sent_at"] is True  # posthog-js's name for disabling skew correction
    assert props["$product_tour_id"] == "tour-1"


def test_client_capture_takes_options_too(memory: tuple[Client, MemorySink]) -> None:
    client, sink = memory
    client.capture("e", distinct_id="u", options={"process_person_profile": True})
    assert client.flush(5)
    assert sink.events[0]["properties"]["$process_person_profile"] is True


def test_an_option_set_to_none_is_left_out(memory: tuple[Client, MemorySink]) -> None:
    client, sink = memory
    obs.capture("e", distinct_id="u", options={"cookieless_mode": None})
    assert client.flush(5)
    assert "$cookieless_mode" not in sink.events[0]["properties"]


def test_options_win_over_a_property_of_the_same_meaning(memory: tuple[Client, MemorySink]) -> None:
    client, sink = memory
    obs.capture(
        "e", {"$process_person_profile": True}, distinct_id="u", options={"process_person_profile": False}
    )
    assert client.flush(5)
    assert sink.events[0]["properties"]["$process_person_profile"] is False


@pytest.mark.parametrize(
    ("options", "why"),
    [
        ({"process_person_profile": "no"}, "option process_person_profile must be a bool"),
        ({"cookieless_mode": 1}, "option cookieless_mode must be a bool"),
        ({"product_tour_id": ""}, "option product_tour_id must be a non-empty str"),
        ({"product_tour_id": 7}, "option product_tour_id must be a non-empty str"),
        ({"historical_migration": True}, "historical_migration is a client setting"),
        ({"person_profiles": False}, "unknown option 'person_profiles'"),
        (["cookieless_mode"], "options must be a dict"),
    ],
)
def test_invalid_options_refuse_the_event_with_a_log_line(
    memory: tuple[Client, MemorySink], caplog: pytest.LogCaptureFixture, options: Any, why: str
) -> None:
    client, sink = memory
    with caplog.at_level(logging.WARNING, logger="obs"):
        assert obs.capture("e", distinct_id="u", options=options) is None  # never an exception
    assert why in caplog.text
    assert not client.flush(5)  # the refused event is a loss, reported once
    stats = client.stats()
    assert stats["dropped_invalid"] == 1 and stats["captured"] == 1
    assert sink.events == []
    assert obs.capture("next", distinct_id="u") is not None  # capturing goes on


def test_unreadable_properties_are_left_out_and_the_options_kept(memory: tuple[Client, MemorySink]) -> None:
    class Broken(dict[str, Any]):
        def keys(self) -> Any:
            raise RuntimeError("no")

        def __iter__(self) -> Any:
            raise RuntimeError("no")

    client, sink = memory
    assert obs.capture("e", Broken(a=1), distinct_id="u", options={"cookieless_mode": True}) is not None
    assert client.flush(5)
    assert sink.events[0]["properties"]["$cookieless_mode"] is True
    assert client.stats()["properties_dropped"] == 1


def test_options_on_a_disabled_sdk_are_a_no_op() -> None:
    assert obs.capture("e", options={"cookieless_mode": "not even checked"}) is None
    assert obs.get_client().enabled is False


def test_capture_options_is_a_typed_dict_exported_from_obs() -> None:
    opts: obs.CaptureOptions = {"process_person_profile": False}
    assert obs.CaptureOptions.__required_keys__ == frozenset()
    assert set(obs.CaptureOptions.__optional_keys__) == {
        "process_person_profile",
        "cookieless_mode",
        "disable_skew_correction",
        "product_tour_id",
    }
    assert "CaptureOptions" in obs.__all__ and opts["process_person_profile"] is False
