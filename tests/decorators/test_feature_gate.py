"""`@feature_gate` on every callable kind, against the local flags server: on, off, variants, fallbacks,
the off switch, caching, and that async callables never block the loop."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import anyio
import pytest

import obs
from obs.sinks import MemorySink
from obs.testing import CapturedEvents, FlagOverrides
from tests.flags_server import FlagsServer
from tests.runners import RUNNERS as ALL_RUNNERS


@pytest.fixture
def gates(flags_server: FlagsServer) -> Iterator[tuple[FlagsServer, MemorySink]]:
    flags_server.flags = {"on": True, "off": False, "pricing": "test"}
    sink = MemorySink()
    obs.init(api_key="phc_test", host=flags_server.url, sinks=[sink])
    with obs.context(distinct_id="u1"):
        yield flags_server, sink


def test_runs_only_when_the_flag_is_on(gates: tuple[FlagsServer, MemorySink]) -> None:
    calls: list[str] = []

    @obs.feature_gate("on", fallback="old")
    def new(x: int) -> str:
        calls.append("on")
        return f"new {x}"

    @obs.feature_gate("off", fallback="old")
    def hidden(x: int) -> str:
        calls.append("off")
        return f"new {x}"

    @obs.feature_gate("missing")
    def unknown() -> str:
        calls.append("missing")
        return "new"

    assert new(1) == "new 1" and hidden(1) == "old" and unknown() is None
    assert calls == ["on"]


def test_variant(gates: tuple[FlagsServer, MemorySink]) -> None:
    @obs.feature_gate("pricing", variant="test", fallback=10)
    def test_price() -> int:
        return 9

    @obs.feature_gate("pricing", variant="control", fallback=10)
    def control_price() -> int:
        return 8

    assert (test_price(), control_price()) == (9, 10)


def test_fallback_callable_gets_the_same_arguments(gates: tuple[FlagsServer, MemorySink]) -> None:
    def old_checkout(cart: list[int], *, coupon: str | None = None) -> str:
        return f"old {sum(cart)} {coupon}"

    @obs.feature_gate("off", fallback=old_checkout)
    def checkout(cart: list[int], *, coupon: str | None = None) -> str:
        return "new"

    assert checkout([1, 2], coupon="X") == "old 3 X"


def test_fallback_raises_feature_disabled(gates: tuple[FlagsServer, MemorySink]) -> None:
    @obs.feature_gate("off", fallback=obs.FeatureDisabled)
    def beta() -> str:
        return "beta"

    @obs.feature_gate("off", fallback=PermissionError("not for you"))
    def admin() -> str:
        return "admin"

    @obs.feature_gate("off", fallback=LookupError)
    def lookup() -> str:
        return "found"

    with pytest.raises(obs.FeatureDisabled) as e:
        beta()
    assert e.value.flag == "off" and e.value.value is False and "'off'" in str(e.value)
    with pytest.raises(PermissionError, match="not for you"):
        admin()
    with pytest.raises(LookupError, match="feature flag 'off' is off"):
        lookup()


RUNNERS = {k: ALL_RUNNERS[k] for k in ("asyncio", "trio", "anyio-trio")}


@pytest.fixture(params=list(RUNNERS))
def run(request: pytest.FixtureRequest) -> Callable[[Callable[[], Awaitable[Any]]], Any]:
    return RUNNERS[request.param]


def test_async_callables(
    gates: tuple[FlagsServer, MemorySink], run: Callable[[Callable[[], Awaitable[Any]]], Any]
) -> None:
    srv, _ = gates

    async def old(x: int) -> str:
        await anyio.sleep(0)
        return f"old {x}"

    @obs.feature_gate("on", fallback=old)
    async def new(x: int) -> str:
        return f"new {x}"

    @obs.feature_gate("off", fallback=old)
    async def hidden(x: int) -> str:
        return f"new {x}"

    @obs.feature_gate("off", fallback=lambda x: f"sync {x}")
    async def sync_fallback(x: int) -> str:
        return f"new {x}"

    @obs.feature_gate("off", fallback=obs.FeatureDisabled)
    async def beta() -> str:
        return "beta"

    async def main() -> list[str]:
        with pytest.raises(obs.FeatureDisabled):
            await beta()
        return [await new(1), await hidden(2), await sync_fallback(3)]

    assert inspect.iscoroutinefunction(new)
    assert run(main) == ["new 1", "old 2", "sync 3"]  # asked the flags server, on every loop
    assert len(srv.flag_requests) == 2 and obs.get_client().stats()["flag_errors"] == 0


def test_disable_geoip_and_groups(gates: tuple[FlagsServer, MemorySink]) -> None:
    srv, sink = gates

    @obs.feature_gate("on", fallback="off", groups={"company": "acme"}, disable_geoip=False)
    def geo() -> str:
        return "on"

    @obs.feature_gate("on", fallback="off", groups={"company": "other"})
    def other() -> str:
        return "on"

    assert (geo(), geo(), other()) == ("on", "on", "on")
    assert [r.body["geoip_disable"] for r in srv.flag_requests] == [False, True]
    assert obs.flush(5)
    called = sink.named("$feature_flag_called")  # one per group, as posthog-python reports them
    assert [(e["properties"]["$groups"], e["properties"]["$geoip_disable"]) for e in called] == [
        ({"company": "acme"}, False),
        ({"company": "other"}, True),
    ]


def test_generators(gates: tuple[FlagsServer, MemorySink]) -> None:
    @obs.feature_gate("on", fallback=[0])
    def on(n: int) -> Iterator[int]:
        got = yield 1
        yield got

    @obs.feature_gate("off", fallback=lambda n: iter(range(n)))
    def off(n: int) -> Iterator[int]:
        yield 99

    @obs.feature_gate("on")
    async def aon(n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    @obs.feature_gate("off", fallback=[7, 8])
    async def aoff(n: int) -> AsyncIterator[int]:
        yield 99

    @obs.feature_gate("off")
    async def anothing(n: int) -> AsyncIterator[int]:
        yield 99

    g = on(0)
    assert next(g) == 1 and g.send(5) == 5  # send() reaches the real generator
    assert list(off(3)) == [0, 1, 2]

    async def main() -> list[list[int]]:
        return [[i async for i in aon(3)], [i async for i in aoff(1)], [i async for i in anothing(1)]]

    assert inspect.isasyncgenfunction(aon) and inspect.isgeneratorfunction(on)
    assert asyncio.run(main()) == [[0, 1, 2], [7, 8], []]


def test_methods(gates: tuple[FlagsServer, MemorySink]) -> None:
    class Shop:
        @obs.feature_gate("on", fallback="old")
        def method(self, x: int) -> str:
            return f"new {x}"

        @classmethod
        @obs.feature_gate("off", fallback="old")
        def build(cls) -> str:
            return "new"

        @staticmethod
        @obs.feature_gate("on", fallback="old")
        def static() -> str:
            return "new"

    assert (Shop().method(1), Shop.build(), Shop.static()) == ("new 1", "old", "new")


def test_distinct_id_groups_and_properties_from_the_arguments(gates: tuple[FlagsServer, MemorySink]) -> None:
    srv, _ = gates
    srv.flags["pro"] = lambda body: body["person_properties"].get("plan") == "pro"

    @obs.feature_gate(
        "pro",
        fallback="free",
        distinct_id=lambda user, **_: user["id"],
        groups=lambda user, **_: {"company": user["company"]},
        person_properties=lambda user, **_: {"plan": user["plan"]},
    )
    def dashboard(user: dict[str, str]) -> str:
        return "pro"

    assert dashboard({"id": "a", "company": "acme", "plan": "pro"}) == "pro"
    assert dashboard({"id": "b", "company": "acme", "plan": "free"}) == "free"
    bodies = [r.body for r in srv.flag_requests]
    assert [b["distinct_id"] for b in bodies] == ["a", "b"]
    assert bodies[0]["groups"] == {"company": "acme"}


def test_a_hot_gate_asks_once_and_reports_once(gates: tuple[FlagsServer, MemorySink]) -> None:
    srv, sink = gates

    @obs.feature_gate("on")
    def hot() -> int:
        return 1

    assert sum(hot() for _ in range(500)) == 500
    assert len(srv.flag_requests) == 1
    assert obs.flush(5)
    assert len(sink.named("$feature_flag_called")) == 1


def test_an_error_inside_a_gated_call_carries_the_flag(gates: tuple[FlagsServer, MemorySink]) -> None:
    _, sink = gates

    @obs.capture_errors(reraise=False)
    @obs.feature_gate("pricing", variant="test")
    def buy() -> None:
        raise RuntimeError("card declined")

    buy()
    assert obs.flush(5)
    (event,) = sink.named("$exception")
    assert event["properties"]["$feature/pricing"] == "test"
    assert event["properties"]["$active_feature_flags"] == ["pricing"]


def test_variants_per_user_set_by_the_test(obs_events: CapturedEvents, obs_flags: FlagOverrides) -> None:
    obs_flags.set("pricing", "control")
    obs_flags.set("pricing", "test", distinct_id="u2")

    @obs.feature_gate("pricing", variant="test", fallback=lambda user: 10, distinct_id=lambda user: user)
    def price(user: str) -> int:
        return 9

    assert [price("u1"), price("u2"), price("u1")] == [10, 9, 10]
    obs_events.one("$feature_flag_called", "u1", properties={"$feature_flag_response": "control"})
    obs_events.one("$feature_flag_called", "u2", properties={"$feature_flag_response": "test"})


def test_disabled_sdk_uses_the_default_without_requests(flags_server: FlagsServer) -> None:
    flags_server.flags = {"on": True}
    obs.init(host=flags_server.url)  # no key: off

    @obs.feature_gate("on", fallback="off")
    def closed() -> str:
        return "on"

    @obs.feature_gate("on", default=True, fallback="off")
    def open_by_default() -> str:
        return "on"

    @obs.feature_gate("on", default=True, fallback="off")
    async def aopen_by_default() -> str:
        return "on"

    with obs.context(distinct_id="u"):
        assert (closed(), open_by_default(), asyncio.run(aopen_by_default())) == ("off", "on", "on")
    assert flags_server.received == []


def test_a_failing_argument_callable_uses_the_default(gates: tuple[FlagsServer, MemorySink]) -> None:
    @obs.feature_gate("on", fallback="off", groups=lambda: 1 / 0)
    def broken() -> str:
        return "on"

    assert broken() == "off"  # default=False decides; the error is logged, not raised


def test_async_gate_never_blocks_the_loop(
    gates: tuple[FlagsServer, MemorySink], run: Callable[[Callable[[], Awaitable[Any]]], Any]
) -> None:
    srv, _ = gates

    def slow(body: dict[str, Any]) -> bool:
        time.sleep(0.4)
        return True

    srv.flags["slow"] = slow

    @obs.feature_gate("slow", fallback="off")
    async def handler() -> str:
        return "on"

    async def main() -> tuple[str, int]:
        ticks = 0
        async with anyio.create_task_group() as tg:

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    await anyio.sleep(0.02)
                    ticks += 1

            tg.start_soon(ticker)
            result = await handler()
            tg.cancel_scope.cancel()
        return result, ticks

    result, ticks = run(main)
    assert result == "on" and ticks >= 8


def test_bad_key_fails_at_decoration() -> None:
    with pytest.raises(ValueError, match="flag key"):
        obs.feature_gate("")
