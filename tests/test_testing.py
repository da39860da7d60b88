"""obs.testing and its fixtures (obs_events, obs_flags): users assert what their code emits, through the
real pipeline, with flag values they choose and failures that say what happened."""

from __future__ import annotations

import asyncio
import re
from typing import Any
from unittest.mock import ANY

import pytest

import obs
import obs.testing
from obs._client import Client, DisabledClient
from obs.testing import CapturedEvents, FlagOverrides
from tests.capture_server import CaptureServer
from tests.flags_server import FlagsServer

# ---------------------------------------------------------------- capture_events, the context manager


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


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
@pytest.mark.anyio
async def test_async_with_on_asyncio_and_trio(anyio_backend: str) -> None:
    async with obs.testing.capture_events(flags={"beta": "v2"}) as captured:
        with obs.context(distinct_id="u1"):
            assert await obs.aget_feature_flag("beta") == "v2"
            obs.capture("async_event", {"backend": anyio_backend})
        assert obs.get_client() is captured.client
    assert captured.client._closed and isinstance(obs.get_client(), DisabledClient)
    captured.assert_captured("async_event", "u1", backend=anyio_backend)
    captured.assert_captured("$feature_flag_called", "u1", properties={"$feature_flag_response": "v2"})


def test_the_apps_own_init_keeps_the_capturing_client() -> None:
    with obs.testing.capture_events() as captured:
        assert obs.init(api_key="phc_app", capture_uncaught=True) is captured.client
        obs.capture("after_init", distinct_id="u")
    captured.assert_captured("after_init")
    assert isinstance(obs.get_client(), DisabledClient)
    assert obs.init(api_key="phc_app") is not captured.client  # after the block, init() is itself again


def test_nested_blocks_restore_in_order() -> None:
    with obs.testing.capture_events() as outer:
        with obs.testing.capture_events() as inner:
            obs.capture("inner", distinct_id="u")
            assert obs.init() is inner.client
        obs.capture("outer", distinct_id="u")
        assert obs.init() is outer.client
    assert (inner.names, outer.names) == (["inner"], ["outer"])


# ---------------------------------------------------------------- the fixture and its helpers


def _emit_one_of_each() -> None:
    with obs.context(distinct_id="u1"):
        obs.capture("signed_up", {"plan": "pro", "seats": 3})
        obs.identify("u1", {"email": "ada@example.com"})
        obs.group_identify("company", "acme", {"size": 50})
        try:
            raise ValueError("bad card")
        except ValueError:
            obs.capture_exception()
        with obs.trace("answer"), obs.span("retrieve"):
            pass
        with obs.trace_generation("openai", "gpt-4o-mini") as generation:
            generation.record({"usage": {"prompt_tokens": 3, "completion_tokens": 2}})
        obs.feature_enabled("new-checkout")
    obs.capture("signed_up", {"plan": "free"}, distinct_id="u2")


def test_obs_events_goes_through_the_real_pipeline(obs_events: CapturedEvents) -> None:
    assert isinstance(obs_events.client, Client) and obs.get_client() is obs_events.client
    obs.capture("clicked", {"button": "buy"}, distinct_id="u1")
    (event,) = obs_events.events
    assert event["event"] == "clicked" and event["distinct_id"] == "u1"
    assert event["properties"]["$lib"] == "obs" and re.fullmatch(r"[0-9a-f-]{36}", event["uuid"])
    assert obs_events.client.stats()["sent"] == 1  # delivered to the in-memory sink by the worker


def test_helpers_find_events_by_name_kind_and_user(
    obs_events: CapturedEvents, obs_flags: FlagOverrides
) -> None:
    obs_flags.set("new-checkout", True)
    _emit_one_of_each()
    kinds = {kind: [e["event"] for e in obs_events.of_kind(kind)] for kind in obs.testing.KINDS}
    assert kinds == {
        "custom": ["signed_up", "signed_up"],
        "exception": ["$exception"],
        "identify": ["$identify"],
        "group_identify": ["$groupidentify"],
        "feature_flag_called": ["$feature_flag_called"],
        "ai_generation": ["$ai_generation"],
        "ai_embedding": [],
        "ai_span": ["$ai_span"],
        "ai_trace": ["$ai_trace"],
    }
    assert [e["properties"]["plan"] for e in obs_events.named("signed_up")] == ["pro", "free"]
    assert {e["event"] for e in obs_events.for_user("u2")} == {"signed_up"}
    assert len(obs_events.for_user("u1")) == len(obs_events) - 2  # u2's signup, the group's identify
    assert obs_events.where("signed_up", plan=ANY) == obs_events.named("signed_up")
    assert [e["distinct_id"] for e in obs_events.where("signed_up", seats=pytest.approx(3.0))] == ["u1"]
    assert obs_events.where(kind="exception", properties={"$exception_level": "error"})
    assert obs_events.names[0] == "signed_up" and obs_events[0]["properties"]["seats"] == 3
    with pytest.raises(ValueError, match="unknown event kind 'errors'; the kinds are custom, exception"):
        obs_events.of_kind("errors")


def test_assertions_return_the_event_and_match_a_subset(obs_events: CapturedEvents) -> None:
    _emit_one_of_each()
    event = obs_events.assert_captured("signed_up", "u1", plan="pro")
    assert event["properties"]["seats"] == 3
    assert obs_events.assert_captured("signed_up", plan="free")["distinct_id"] == "u2"
    assert obs_events.one("$identify", properties={"$set": {"email": "ada@example.com"}})
    obs_events.assert_not_captured("signed_up", "u3")
    obs_events.assert_not_captured("signed_up", plan="enterprise")
    obs_events.assert_not_captured("refunded")
    obs_events.clear()
    assert len(obs_events) == 0
    obs_events.assert_not_captured("signed_up")


# ---------------------------------------------------------------- readable failures


def _failure(check: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(AssertionError) as info:
        check(*args, **kwargs)
    return str(info.value)


def test_a_missing_event_shows_the_closest_and_what_was_captured(obs_events: CapturedEvents) -> None:
    obs.capture("checkout_completed", {"plan": "free", "total": 40}, distinct_id="u1")
    obs.capture("checkout_completed", {"plan": "pro", "total": 42}, distinct_id="u1")
    obs.capture("page_viewed", {"path": "/cart"}, distinct_id="u1")
    message = _failure(
        obs_events.assert_captured, "checkout_completed", "u2", plan="pro", total=42, coupon="X"
    )
    assert message == (
        "no 'checkout_completed' event with distinct_id='u2', plan='pro', total=42, coupon='X'"
        " was captured.\n"
        "The closest, #2 'checkout_completed', differs in:\n"
        "    distinct_id: expected 'u2', got 'u1'\n"
        "    coupon: expected 'X', not set\n"
        "Captured 3 event(s):\n"
        "  #1 'checkout_completed' distinct_id='u1'  plan='free' total=40\n"
        "  #2 'checkout_completed' distinct_id='u1'  plan='pro' total=42\n"
        "  #3 'page_viewed' distinct_id='u1'  path='/cart'"
    )


def test_a_misspelt_name_gets_a_suggestion(obs_events: CapturedEvents) -> None:
    obs.capture("checkout_completed", distinct_id="u1")
    message = _failure(obs_events.assert_captured, "checkout_complete")
    assert "No event is named 'checkout_complete'; did you mean 'checkout_completed'?" in message
    assert _failure(obs_events.one, "anything").endswith("  #1 'checkout_completed' distinct_id='u1'")


def test_nothing_captured_and_a_replaced_client_are_said(obs_events: CapturedEvents) -> None:
    assert _failure(obs_events.assert_captured, "signed_up") == (
        "no 'signed_up' event was captured.\nNothing was captured."
    )
    with obs.testing.capture_events() as ended:  # a block that ended normally: no note
        pass
    assert _failure(ended.assert_captured, "x") == "no 'x' event was captured.\nNothing was captured."
    with obs.testing.capture_events():  # events go to another client for a while
        message = _failure(obs_events.assert_captured, "y")
    assert message.endswith(
        "Note: obs's current client is not the capturing one (was it replaced during the test?); "
        "events captured since went there."
    )
    obs.shutdown()
    message = _failure(obs_events.assert_captured, "signed_up")
    assert message.endswith(
        "Note: the capturing client was shut down (obs.shutdown()?); later events were dropped."
    )


def test_one_and_not_captured_list_the_matches(obs_events: CapturedEvents) -> None:
    for plan in ("pro", "pro", "free"):
        obs.capture("signed_up", {"plan": plan}, distinct_id="u1")
    assert _failure(obs_events.one, "signed_up", plan="pro") == (
        "expected one 'signed_up' event with plan='pro', 2 were captured:\n"
        "  #1 'signed_up' distinct_id='u1'  plan='pro'\n"
        "  #2 'signed_up' distinct_id='u1'  plan='pro'"
    )
    assert _failure(obs_events.assert_not_captured, "signed_up", "u1", plan="free") == (
        "expected no 'signed_up' event with distinct_id='u1', plan='free', 1 captured:\n"
        "  #3 'signed_up' distinct_id='u1'  plan='free'"
    )


def test_other_kinds_are_listed_by_their_gist(obs_events: CapturedEvents, obs_flags: FlagOverrides) -> None:
    obs_flags.set("new-checkout", True)
    _emit_one_of_each()
    listing = _failure(obs_events.assert_captured, "refunded").splitlines()
    assert "  #3 '$groupidentify' distinct_id='$company_acme'" in listing
    assert "  #4 '$exception' distinct_id='u1'  ValueError: bad card" in listing
    assert "  #2 '$identify' distinct_id='u1'  $set={'email': 'ada@example.com'}" in listing
    assert "  #8 '$feature_flag_called' distinct_id='u1'  new-checkout=True" in listing
    assert any(line.startswith("  #7 '$ai_generation' distinct_id='u1'  $ai_trace_id=") for line in listing)


def test_long_listings_are_cut(obs_events: CapturedEvents) -> None:
    for i in range(25):
        obs.capture("tick", {"i": i, "blob": "x" * 500}, distinct_id="u")
    message = _failure(obs_events.assert_captured, "tock")
    assert message.count("\n  #") == 20 and message.endswith("  … and 5 more")
    assert max(len(line) for line in message.splitlines()) < 200


# ---------------------------------------------------------------- feature flags set by hand


def test_flags_reach_every_flag_function(obs_events: CapturedEvents, obs_flags: FlagOverrides) -> None:
    obs_flags.set("new-checkout", True)
    obs_flags.set("pricing", "test", payload={"price": 9, "tags": ("a",)})
    obs_flags.set("dark-mode", False, payload={"unused": True})
    with obs.context(distinct_id="u1"):
        assert obs.feature_enabled("new-checkout") is True
        assert obs.get_feature_flag("pricing") == "test"
        assert obs.get_feature_flag_payload("pricing") == {"price": 9, "tags": ["a"]}  # as decoded from JSON
        assert obs.feature_enabled("dark-mode", default=True) is False  # off is False, not the default
        assert obs.get_feature_flag("not-set", default="control") == "control"
        assert obs.get_feature_flag_payload("not-set", default={}) == {}
    assert obs.feature_enabled("new-checkout") is False  # no distinct_id: the default, as in production
    called = obs_events.named("$feature_flag_called")
    assert [
        (e["properties"]["$feature_flag"], e["properties"]["$feature_flag_response"]) for e in called
    ] == [
        ("new-checkout", True),
        ("pricing", "test"),
        ("dark-mode", False),
    ]
    pricing = obs_events.one("$feature_flag_called", "u1", properties={"$feature_flag": "pricing"})
    assert pricing["properties"]["$feature_flag_payload"] == {"price": 9, "tags": ["a"]}
    assert pricing["properties"]["$feature/pricing"] == "test"


def test_flags_per_user_and_changed_midway(obs_events: CapturedEvents, obs_flags: FlagOverrides) -> None:
    obs_flags.set("pricing", "control")
    obs_flags.set("pricing", "test", distinct_id="vip")
    obs_flags.set("beta", None, distinct_id="vip")  # unknown for them, whatever everyone else gets
    obs_flags.set("beta", True)
    assert obs.get_feature_flag("pricing", "vip") == "test"
    assert obs.get_feature_flag("pricing", "u1") == "control"
    assert obs.feature_enabled("beta", "u1") and not obs.feature_enabled("beta", "vip")
    obs_flags.set("pricing", "v3")  # takes effect at once: no cache in between
    assert obs.get_feature_flag("pricing", "u1") == "v3"
    assert obs.get_feature_flag("pricing", "u1") == "v3"
    obs_flags.clear()
    assert obs.get_feature_flag("pricing", "vip") is None
    responses = [
        e["properties"]["$feature_flag_response"] for e in obs_events.where("$feature_flag_called", "u1")
    ]
    assert responses == ["control", True, "v3"]  # once per user, flag and value, as in production


def test_bad_flag_values_fail_where_they_are_set(obs_flags: FlagOverrides) -> None:
    with pytest.raises(TypeError, match="a value is True/False or a variant key"):
        obs_flags.set("n", 3)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        obs_flags.set("p", True, payload=object())
    with pytest.raises(ValueError, match="a flag key is a non-empty str"):
        obs_flags.set("", True)
    obs_flags.set("beta", True, distinct_id="u1")
    assert repr(obs_flags) == "FlagOverrides({\"beta (distinct_id='u1')\": True})"


def test_feature_gate_and_flags_on_errors_and_track(
    obs_events: CapturedEvents, obs_flags: FlagOverrides
) -> None:
    obs_flags.set("new-checkout", True)
    obs_flags.set("pricing", "test")

    @obs.feature_gate("new-checkout", fallback="old")
    def checkout() -> str:
        return "new"

    @obs.feature_gate("pricing", variant="control", fallback="old")
    def control_price() -> str:
        return "control"

    @obs.track("exported")
    def export() -> None:
        obs.get_feature_flag("pricing")

    @obs.capture_errors(reraise=False)
    @obs.feature_gate("new-checkout")
    def pay() -> None:
        raise RuntimeError("card declined")

    with obs.context(distinct_id="u1"):
        assert (checkout(), control_price()) == ("new", "old")
        export()
        pay()
    assert checkout() == "old"  # no user: the gate's default decides
    seen = {
        "$feature/new-checkout": True,
        "$feature/pricing": "test",
        "$active_feature_flags": ["new-checkout", "pricing"],
    }
    obs_events.assert_captured("exported", "u1", properties=seen)
    obs_events.assert_captured("$exception", "u1", properties=seen)
    assert len(obs_events.named("$feature_flag_called")) == 2


async def _async_flag_checks() -> tuple[Any, ...]:
    @obs.feature_gate("new-checkout", fallback=obs.FeatureDisabled)
    async def checkout() -> str:
        return "new"

    with obs.context(distinct_id="u1"):
        return (
            await obs.afeature_enabled("new-checkout"),
            await obs.aget_feature_flag("pricing"),
            await obs.aget_feature_flag_payload("pricing"),
            await checkout(),
        )


@pytest.mark.asyncio
async def test_async_flags_under_pytest_asyncio(obs_events: CapturedEvents, obs_flags: FlagOverrides) -> None:
    obs_flags.set("new-checkout", True)
    obs_flags.set("pricing", "test", payload=[1, 2])
    assert await _async_flag_checks() == (True, "test", [1, 2], "new")
    obs_events.assert_captured("$feature_flag_called", "u1", properties={"$feature_flag": "new-checkout"})


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
@pytest.mark.anyio
async def test_async_flags_under_anyio(
    anyio_backend: str, obs_events: CapturedEvents, obs_flags: FlagOverrides
) -> None:
    obs_flags.set("new-checkout", True)
    obs_flags.set("pricing", "control")
    assert await _async_flag_checks() == (True, "control", None, "new")
    obs_flags.set("new-checkout", False)
    with pytest.raises(obs.FeatureDisabled):
        await _async_flag_checks()
    responses = [e["properties"]["$feature_flag_response"] for e in obs_events.named("$feature_flag_called")]
    assert responses == [True, "control", False]


def test_no_request_even_with_a_host_and_personal_key(flags_server: FlagsServer) -> None:
    flags_server.flags = {"beta": "from-the-server"}
    key = "phx_test_personal_key_0123456789"
    with obs.testing.capture_events(host=flags_server.url, personal_api_key=key) as captured:
        captured.flags.set("beta", "set-here")
        assert obs.get_feature_flag("beta", "u1") == "set-here"
        assert obs.get_feature_flag("other", "u1", default="d") == "d"
        assert asyncio.run(obs.aget_feature_flag("other", "u1", default="d")) == "d"
    assert flags_server.received == []


@pytest.mark.obs(identify_pii="full")
def test_the_obs_marker_passes_settings(obs_events: CapturedEvents) -> None:
    assert obs_events.client.settings.identify_pii == "full"
    obs.identify("u1", {"name": "Ada", "email": "ada@example.com"})
    obs_events.one("$identify", "u1", properties={"$set": {"name": "Ada", "email": "ada@example.com"}})


def test_capture_events_takes_flags_and_a_new_block_reports_them_again() -> None:
    for _ in range(2):  # the second block has a new client: what the first reported is not "seen" there
        with obs.testing.capture_events(flags={"beta": True}) as captured:
            assert obs.feature_enabled("beta", "u1")
            assert obs.feature_enabled("beta", "u1")
        assert captured.flags.result("beta", "u1").value is True
        assert len(captured.named("$feature_flag_called")) == 1
