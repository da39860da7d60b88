"""The one wrapping helper (`obs._wrap`) behind every decorator, across every callable kind.

Each decorator — bare and with arguments — is applied to a function, coroutine function, generator,
async generator, instance method, classmethod and staticmethod (the last two with the decorator inside
and outside ``@classmethod``/``@staticmethod``). What must hold for all of them: the wrapper looks like
the original to ``inspect``, values pass through unchanged, and exceptions and cancellation behave as the
decorator documents. Events are asserted through the ``memory`` fixture's sink after ``obs.flush()``.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
import traceback
from collections.abc import AsyncGenerator, Callable, Generator
from typing import Any, NamedTuple

import anyio
import pytest
import trio

import obs
from obs._client import Client, DisabledClient
from obs._wrap import RERAISE, Probe, wrap
from obs.sinks import MemorySink
from tests.capture_server import CaptureServer

Memory = tuple[Client, MemorySink]
Deco = Callable[[Any], Any]


def _events(sink: MemorySink, name: str | None = None) -> list[dict[str, Any]]:
    assert obs.flush(5)
    return [e for e in sink.events if name is None or e["event"] == name]


def _exceptions(sink: MemorySink) -> list[dict[str, Any]]:
    return _events(sink, "$exception")


# ------------------------------------------------------------------ callable kinds
#
# Every builder returns the decorated callable, the same callable without the decorator (what
# ``inspect`` must report for both) and the raw function (what ``__wrapped__`` must be). Called as
# ``(1)`` or ``(1, y=5)``; ``fail`` is raised from the body (for generators after the first yield).


class Built(NamedTuple):
    decorated: Any
    original: Any
    raw: Callable[..., Any]
    slots: tuple[Any, Any] | None = None  # the class attributes (decorated, original) for methods


def _function(deco: Deco, fail: BaseException | None) -> Built:
    def add(x: int, y: int = 10) -> int:
        """Add two numbers."""
        if fail is not None:
            raise fail
        return x + y

    return Built(deco(add), add, add)


def _coroutine(deco: Deco, fail: BaseException | None) -> Built:
    async def add(x: int, y: int = 10) -> int:
        """Add two numbers, asynchronously."""
        await anyio.sleep(0)
        if fail is not None:
            raise fail
        return x + y

    return Built(deco(add), add, add)


def _generator(deco: Deco, fail: BaseException | None) -> Built:
    def pair(x: int, y: int = 10) -> Generator[int, None, int]:
        """Yield both numbers, return their sum."""
        yield x
        if fail is not None:
            raise fail
        yield y
        return x + y

    return Built(deco(pair), pair, pair)


def _async_generator(deco: Deco, fail: BaseException | None) -> Built:
    async def pair(x: int, y: int = 10) -> AsyncGenerator[int, None]:
        """Yield both numbers, asynchronously."""
        yield x
        await anyio.sleep(0)
        if fail is not None:
            raise fail
        yield y

    return Built(deco(pair), pair, pair)


def _instance_method(deco: Deco, fail: BaseException | None) -> Built:
    class Plain:
        def add(self, x: int, y: int = 10) -> int:
            """Add two numbers."""
            if fail is not None:
                raise fail
            return x + y

    class Decorated:
        add = deco(Plain.__dict__["add"])

    return Built(Decorated().add, Plain().add, Plain.__dict__["add"])


def _method_builder(
    kind: type[classmethod[Any, Any, Any]] | type[staticmethod[Any, Any]], outside: bool
) -> Any:
    """``@deco @classmethod def add`` (outside) or ``@classmethod @deco def add`` (inside); same for static"""

    def build(deco: Deco, fail: BaseException | None) -> Built:
        class Plain:
            @classmethod
            def add(cls, x: int, y: int = 10) -> int:
                """Add two numbers."""
                if fail is not None:
                    raise fail
                return x + y

            @staticmethod
            def static_add(x: int, y: int = 10) -> int:
                """Add two numbers."""
                if fail is not None:
                    raise fail
                return x + y

        name = "add" if kind is classmethod else "static_add"
        raw = Plain.__dict__[name].__func__

        slot = deco(kind(raw)) if outside else kind(deco(raw))
        decorated = type("Decorated", (), {name: slot})
        return Built(getattr(decorated, name), getattr(Plain, name), raw, (slot, Plain.__dict__[name]))

    return build


class Kind(NamedTuple):
    name: str
    flavor: str  # sync | coro | gen | agen
    build: Callable[[Deco, BaseException | None], Built]

    def __repr__(self) -> str:
        return self.name


KINDS = [
    Kind("function", "sync", _function),
    Kind("coroutine", "coro", _coroutine),
    Kind("generator", "gen", _generator),
    Kind("async_generator", "agen", _async_generator),
    Kind("method", "sync", _instance_method),
    Kind("classmethod_inside", "sync", _method_builder(classmethod, outside=False)),
    Kind("classmethod_outside", "sync", _method_builder(classmethod, outside=True)),
    Kind("staticmethod_inside", "sync", _method_builder(staticmethod, outside=False)),
    Kind("staticmethod_outside", "sync", _method_builder(staticmethod, outside=True)),
]
ASYNC_KINDS = [k for k in KINDS if k.flavor in ("coro", "agen")]
kinds = pytest.mark.parametrize("kind", KINDS, ids=repr)

EXITS: list[Callable[[], BaseException]] = [lambda: SystemExit(3), KeyboardInterrupt, GeneratorExit]

# What a call with (1) returns: generators as (yielded values, return value).
EXPECTED = {"sync": 11, "coro": 11, "gen": ([1, 10], 11), "agen": ([1, 10], None)}


def _swallowed(flavor: str, default: Any) -> Any:
    """What a call returns when ``capture_errors(reraise=False, default=...)`` swallowed its failure."""
    return {"gen": ([1], default), "agen": ([1], None)}.get(flavor, default)


def call(flavor: str, target: Any, *args: Any, **kwargs: Any) -> Any:
    """Run one unit of work of any flavor to completion."""
    if flavor == "sync":
        return target(*args, **kwargs)
    if flavor == "coro":
        return asyncio.run(target(*args, **kwargs))
    if flavor == "gen":
        gen, items = target(*args, **kwargs), []
        while True:
            try:
                items.append(next(gen))
            except StopIteration as stop:
                return items, stop.value

    async def collect() -> tuple[list[Any], None]:
        return [x async for x in target(*args, **kwargs)], None

    return asyncio.run(collect())


def _bound_args(built: Built) -> tuple[Any, ...]:
    """The implicit first argument (self / cls) a method call receives, if any."""
    owner = getattr(built.decorated, "__self__", None)
    return () if owner is None else (owner,)


DECORATORS = {
    "capture_errors": obs.capture_errors,
    "capture_errors(...)": obs.capture_errors(level="warning", properties={"area": "a"}),
    "track": obs.track,
    "track(...)": obs.track("tracked", properties={"area": "a"}),
    "flush_after": obs.flush_after,
    "flush_after(...)": obs.flush_after(timeout=2),
}
decorators = pytest.mark.parametrize("deco", DECORATORS.values(), ids=list(DECORATORS))


# ------------------------------------------------------------------ looks like the original


@decorators
@kinds
def test_wrapper_looks_like_the_original(kind: Kind, deco: Deco) -> None:
    built = kind.build(deco, None)
    new, old = built.decorated, built.original
    assert new.__wrapped__ is built.raw
    for attr in ("__name__", "__qualname__", "__doc__", "__module__"):
        assert getattr(new, attr) == getattr(old, attr), attr
    assert inspect.signature(new) == inspect.signature(old)
    for check in (inspect.iscoroutinefunction, inspect.isgeneratorfunction, inspect.isasyncgenfunction):
        assert check(new) == check(old), check.__name__
    if built.slots is not None:
        assert type(built.slots[0]) is type(built.slots[1])


@decorators
@kinds
def test_values_pass_through_unchanged(kind: Kind, deco: Deco, memory: Memory) -> None:
    _, sink = memory
    built = kind.build(deco, None)
    assert call(kind.flavor, built.decorated, 1) == EXPECTED[kind.flavor]
    assert call(kind.flavor, built.decorated, x=1, y=10) == EXPECTED[kind.flavor]
    events = _events(sink)
    if deco in (obs.track, DECORATORS["track(...)"]):
        name = built.raw.__name__ if deco is obs.track else "tracked"
        assert [e["event"] for e in events] == [name, name]
        assert all(e["properties"]["success"] is True for e in events)
    else:
        assert events == []


def _echo(start: int) -> Generator[int, int | None, list[int]]:
    received: list[int] = []
    value = yield start
    while value is not None:
        received.append(value)
        value = yield value * 2
    return received


async def _aecho(start: int) -> AsyncGenerator[int, int | None]:
    value = yield start
    while value is not None:
        await anyio.sleep(0)
        value = yield value * 2


@decorators
def test_send_reaches_the_inner_generator_and_return_value_arrives(deco: Deco) -> None:
    echo = deco(_echo)
    gen = echo(1)
    assert next(gen) == 1
    assert gen.send(2) == 4
    assert gen.send(3) == 6
    with pytest.raises(StopIteration) as stop:
        gen.send(None)
    assert stop.value.value == [2, 3]

    def delegate() -> Generator[int, int | None, list[int]]:
        result = yield from echo(5)
        return [*result, -1]

    outer = delegate()
    assert next(outer) == 5
    assert outer.send(7) == 14
    with pytest.raises(StopIteration) as stop:
        outer.send(None)
    assert stop.value.value == [7, -1]


@decorators
def test_asend_reaches_the_inner_async_generator(deco: Deco) -> None:
    async def main() -> list[int]:
        gen = deco(_aecho)(1)
        got = [await gen.asend(None), await gen.asend(2), await gen.asend(3)]
        with pytest.raises(StopAsyncIteration):
            await gen.asend(None)
        return got

    assert asyncio.run(main()) == [1, 4, 6]


# ------------------------------------------------------------------ @capture_errors options × kinds


@kinds
def test_reraise_propagates_the_same_exception_with_its_traceback(kind: Kind, memory: Memory) -> None:
    _, sink = memory
    error = ValueError("boom")
    built = kind.build(obs.capture_errors, error)
    with pytest.raises(ValueError) as info:
        call(kind.flavor, built.decorated, 1)
    assert info.value is error
    assert "raise fail" in [frame.line for frame in traceback.extract_tb(info.value.__traceback__)]
    (event,) = _exceptions(sink)
    entry = event["properties"]["$exception_list"][0]
    assert entry["value"] == "boom"
    assert entry["mechanism"]["handled"] is False
    last = entry["stacktrace"]["frames"][-1]
    assert (last["function"], last["context_line"].strip()) == (built.raw.__name__, "raise fail")


@kinds
def test_reraise_false_returns_the_default(kind: Kind, memory: Memory) -> None:
    _, sink = memory
    built = kind.build(obs.capture_errors(reraise=False, default="fallback"), ValueError("boom"))
    assert call(kind.flavor, built.decorated, 1) == _swallowed(kind.flavor, "fallback")
    (event,) = _exceptions(sink)
    assert event["properties"]["$exception_list"][0]["mechanism"]["handled"] is True


@kinds
def test_ignored_exceptions_are_neither_captured_nor_swallowed(kind: Kind, memory: Memory) -> None:
    _, sink = memory
    error = KeyError("expected")
    built = kind.build(obs.capture_errors(reraise=False, ignore=(KeyError,)), error)
    with pytest.raises(KeyError) as info:
        call(kind.flavor, built.decorated, 1)
    assert info.value is error
    assert _exceptions(sink) == []


@kinds
def test_properties_level_fingerprint_and_distinct_id_callable(kind: Kind, memory: Memory) -> None:
    _, sink = memory
    seen: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def user_of(*args: Any, **kwargs: Any) -> str:
        seen.append((args, kwargs))
        return f"user-{args[-1]}-{kwargs['y']}"

    deco = obs.capture_errors(
        reraise=False,
        properties={"area": "billing"},
        distinct_id=user_of,
        level="warning",
        fingerprint="fp-1",
    )
    built = kind.build(deco, ValueError("boom"))
    call(kind.flavor, built.decorated, 1, y=5)
    assert seen == [((*_bound_args(built), 1), {"y": 5})]
    (event,) = _exceptions(sink)
    props = event["properties"]
    assert event["distinct_id"] == "user-1-5"
    assert props["area"] == "billing"
    assert props["$exception_level"] == "warning"
    assert props["$exception_fingerprint"] == "fp-1"


@kinds
def test_distinct_id_string_beats_the_context(kind: Kind, memory: Memory) -> None:
    _, sink = memory
    built = kind.build(obs.capture_errors(reraise=False, distinct_id="fixed"), ValueError("boom"))
    with obs.context(distinct_id="ctx-user"):
        call(kind.flavor, built.decorated, 1)
    assert [e["distinct_id"] for e in _exceptions(sink)] == ["fixed"]


@pytest.mark.parametrize("reraise", [True, False])
@kinds
def test_failing_distinct_id_callable_falls_back_to_the_context(
    kind: Kind, reraise: bool, memory: Memory
) -> None:
    _, sink = memory

    def broken(*args: Any, **kwargs: Any) -> str:
        raise LookupError("no user here")

    error = ValueError("boom")
    built = kind.build(obs.capture_errors(reraise=reraise, distinct_id=broken), error)
    with obs.context(distinct_id="ctx-user"):
        if reraise:
            with pytest.raises(ValueError) as info:
                call(kind.flavor, built.decorated, 1)
            assert info.value is error  # the call's own exception, not the callable's
        else:
            call(kind.flavor, built.decorated, 1)
    (event,) = _exceptions(sink)
    assert event["distinct_id"] == "ctx-user"
    assert event["properties"]["$exception_list"][0]["type"] == "ValueError"


# ------------------------------------------------------------------ never captured, never swallowed


@pytest.mark.parametrize("make", EXITS, ids=["SystemExit", "KeyboardInterrupt", "GeneratorExit"])
@kinds
def test_process_exits_are_never_captured_or_swallowed(
    kind: Kind, make: Callable[[], BaseException], memory: Memory
) -> None:
    _, sink = memory
    error = make()
    for deco in (obs.capture_errors(reraise=False, default="swallowed"), obs.track("t")):
        built = kind.build(deco, error)
        with pytest.raises(type(error)) as info:
            call(kind.flavor, built.decorated, 1)
        assert info.value is error
    assert _exceptions(sink) == []


CANCEL_DECORATORS = {
    "capture_errors": obs.capture_errors(reraise=False, default="swallowed"),
    "track+capture_errors": lambda fn: obs.track("t")(obs.capture_errors(reraise=False)(fn)),
    "flush_after+capture_errors": lambda fn: obs.flush_after(obs.capture_errors(reraise=False)(fn)),
}
cancel_decorators = pytest.mark.parametrize("deco", CANCEL_DECORATORS.values(), ids=list(CANCEL_DECORATORS))


def _blocked(deco: Deco, sleep_forever: Callable[[], Any], log: list[str]) -> Callable[[], Any]:
    """A decorated coroutine that blocks until cancelled; the returned coroutine function awaits it."""

    @deco
    async def work() -> str:
        try:
            await sleep_forever()
        finally:
            log.append("finally")
        return "done"

    async def consume() -> None:
        log.append(await work())

    return consume


@cancel_decorators
@pytest.mark.asyncio
async def test_asyncio_task_cancellation_propagates(deco: Deco, memory: Memory) -> None:
    _, sink = memory
    log: list[str] = []
    task = asyncio.create_task(_blocked(deco, lambda: asyncio.sleep(3600), log)())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
    assert log == ["finally"]
    assert _exceptions(sink) == []


@cancel_decorators
def test_trio_cancellation_propagates(deco: Deco, memory: Memory) -> None:
    _, sink = memory
    log: list[str] = []
    consume = _blocked(deco, trio.sleep_forever, log)

    async def main() -> None:
        with trio.move_on_after(0.01) as scope:
            await consume()
        assert scope.cancelled_caught
        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
        assert nursery.cancel_scope.cancelled_caught

    trio.run(main)
    assert log == ["finally", "finally"]
    assert _exceptions(sink) == []


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@cancel_decorators
def test_anyio_cancellation_propagates(deco: Deco, backend: str, memory: Memory) -> None:
    _, sink = memory
    log: list[str] = []
    consume = _blocked(deco, anyio.sleep_forever, log)

    async def main() -> None:
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                await anyio.sleep(0.01)
                scope.cancel()
        assert scope.cancelled_caught
        with anyio.move_on_after(0.01) as timeout:
            await consume()
        assert timeout.cancelled_caught

    anyio.run(main, backend=backend)
    assert log == ["finally", "finally"]
    assert _exceptions(sink) == []


# ------------------------------------------------------------------ captured once


def _raise(msg: str) -> None:
    raise ValueError(msg)


def test_inner_capture_is_not_repeated_by_outer_decorators(memory: Memory) -> None:
    _, sink = memory

    @obs.capture_errors
    def inner() -> None:
        _raise("once")

    @obs.capture_errors(reraise=False, default="outer default")
    def outer() -> str:
        inner()
        return "unreachable"

    assert outer() == "outer default"  # still swallowed by the outer one, just not sent again
    with pytest.raises(ValueError) as info:
        obs.capture_errors(inner)()
    assert obs.capture_exception(info.value) is None
    assert len(_exceptions(sink)) == 2  # one per raised exception


@pytest.mark.asyncio
async def test_captured_once_across_sync_to_async_nesting(memory: Memory) -> None:
    _, sink = memory

    @obs.capture_errors
    def sync_inner() -> None:
        _raise("sync inside async")

    @obs.capture_errors
    async def async_middle() -> None:
        await asyncio.sleep(0)
        sync_inner()

    @obs.capture_errors
    async def async_outer() -> None:
        await async_middle()

    @obs.capture_errors
    async def agen_outer() -> AsyncGenerator[int, None]:
        yield 1
        await async_middle()

    with pytest.raises(ValueError) as info:
        await async_outer()
    assert obs.capture_exception(info.value) is None
    with pytest.raises(ValueError) as info2:
        async for _ in agen_outer():
            pass
    assert info2.value is not info.value
    assert obs.capture_exception(info2.value) is None
    assert [e["properties"]["$exception_list"][0]["value"] for e in _exceptions(sink)] == [
        "sync inside async",
        "sync inside async",
    ]


def test_capture_exception_after_the_decorator_returns_none(memory: Memory) -> None:
    _, sink = memory

    @obs.capture_errors(reraise=False)
    def swallow(exc: Exception) -> None:
        raise exc

    error = RuntimeError("decorated")
    swallow(error)
    assert obs.capture_exception(error) is None
    fresh = RuntimeError("manual")
    assert isinstance(obs.capture_exception(fresh), str)
    assert len(_exceptions(sink)) == 2


# ------------------------------------------------------------------ async: asyncio and trio


async def _async_scenario(sleep: Callable[[float], Any]) -> None:
    """capture_errors and track on a coroutine and an async generator, on whatever loop runs this."""

    @obs.track("job")
    @obs.capture_errors(properties={"where": "job"})
    async def job(fail: bool) -> str:
        await sleep(0.01)
        if fail:
            raise ValueError("job failed")
        return "ok"

    @obs.track("feed")
    @obs.capture_errors(reraise=False)
    async def feed(fail: bool) -> AsyncGenerator[int, None]:
        for i in range(3):
            await sleep(0.005)
            if fail and i == 1:
                raise KeyError("feed failed")
            yield i

    with obs.context(distinct_id="async-user"):
        assert await job(False) == "ok"
        with pytest.raises(ValueError, match="job failed"):
            await job(True)
        assert [i async for i in feed(False)] == [0, 1, 2]
        assert [i async for i in feed(True)] == [0]


def _check_async_scenario(sink: MemorySink) -> None:
    events = _events(sink)
    assert {e["distinct_id"] for e in events} == {"async-user"}
    jobs, feeds = _events(sink, "job"), _events(sink, "feed")
    assert [j["properties"]["success"] for j in jobs] == [True, False]
    assert jobs[1]["properties"]["error_type"] == "ValueError"
    assert all(j["properties"]["duration_ms"] >= 10 for j in jobs)
    assert [f["properties"]["success"] for f in feeds] == [True, True]  # the failure was swallowed
    assert feeds[0]["properties"]["duration_ms"] >= 14
    excs = _exceptions(sink)
    assert [e["properties"]["$exception_list"][0]["type"] for e in excs] == ["ValueError", "KeyError"]
    assert excs[0]["properties"]["where"] == "job"


@pytest.mark.asyncio
async def test_async_decorators_on_asyncio(memory: Memory) -> None:
    await _async_scenario(asyncio.sleep)
    _check_async_scenario(memory[1])


def test_async_decorators_on_trio(memory: Memory) -> None:
    trio.run(_async_scenario, trio.sleep)
    _check_async_scenario(memory[1])


# ------------------------------------------------------------------ @track


def test_track_duration_covers_a_real_sleep(memory: Memory) -> None:
    _, sink = memory

    @obs.track("slow")
    def slow() -> None:
        time.sleep(0.03)

    @obs.track("slow_async")
    async def slow_async() -> None:
        await anyio.sleep(0.03)

    slow()
    asyncio.run(slow_async())
    trio.run(slow_async)
    durations = [e["properties"]["duration_ms"] for e in _events(sink)]
    assert len(durations) == 3
    assert all(30 <= d < 2000 for d in durations), durations


def test_track_generator_duration_covers_the_whole_iteration(memory: Memory) -> None:
    _, sink = memory

    @obs.track("produce")
    def produce() -> Generator[int, None, None]:
        yield 1
        time.sleep(0.02)  # inside the generator, between yields
        yield 2

    @obs.track("aproduce")
    async def aproduce() -> AsyncGenerator[int, None]:
        yield 1
        await anyio.sleep(0.02)
        yield 2

    for item in produce():
        time.sleep(0.02)  # the consumer's time between yields is part of the unit too
        assert item in (1, 2)

    async def consume() -> None:
        async for _ in aproduce():
            await anyio.sleep(0.02)

    asyncio.run(consume())
    (sync_event,) = _events(sink, "produce")
    (async_event,) = _events(sink, "aproduce")
    assert sync_event["properties"]["duration_ms"] >= 60
    assert async_event["properties"]["duration_ms"] >= 60


def test_track_generator_unit_starts_at_the_first_next(memory: Memory) -> None:
    _, sink = memory

    @obs.track("lazy")
    def lazy() -> Generator[int, None, None]:
        yield 1

    gen = lazy()
    time.sleep(0.2)  # created long before it is iterated: not part of the unit
    assert list(gen) == [1]
    (event,) = _events(sink, "lazy")
    assert event["properties"]["duration_ms"] < 150


@kinds
def test_track_success_and_source(kind: Kind, memory: Memory) -> None:
    _, sink = memory
    built = kind.build(obs.track("t", capture_result=True), None)
    call(kind.flavor, built.decorated, 1)
    (event,) = _events(sink)
    props = event["properties"]
    assert props["success"] is True
    assert "error_type" not in props and "closed_early" not in props
    assert props["source"] == f"{built.raw.__module__}.{built.raw.__qualname__}"
    assert props["duration_ms"] >= 0
    if kind.flavor != "agen":  # an async generator has no return value
        assert props["result"] == 11


@kinds
def test_track_failure_has_error_type_and_the_exception_propagates(kind: Kind, memory: Memory) -> None:
    _, sink = memory
    error = ValueError("tracked failure")
    built = kind.build(obs.track("t"), error)
    with pytest.raises(ValueError) as info:
        call(kind.flavor, built.decorated, 1)
    assert info.value is error
    (event,) = _events(sink)  # track alone sends no $exception
    assert event["event"] == "t"
    assert event["properties"]["success"] is False
    assert event["properties"]["error_type"] == "ValueError"
    assert "result" not in event["properties"]


@kinds
def test_track_capture_args_on_every_kind(kind: Kind, memory: Memory) -> None:
    _, sink = memory
    built = kind.build(obs.track("t", capture_args=["x", "y"]), None)
    call(kind.flavor, built.decorated, 1)
    call(kind.flavor, built.decorated, 2, y=5)
    call(kind.flavor, built.decorated, y=6, x=3)
    got = [(e["properties"]["arg_x"], e["properties"]["arg_y"]) for e in _events(sink)]
    assert got == [(1, 10), (2, 5), (3, 6)]


def test_track_capture_args_positional_keyword_defaults_and_keyword_only(memory: Memory) -> None:
    _, sink = memory

    @obs.track("args", capture_args=["a", "b", "c", "d"])
    def f(a: int, b: int = 2, *rest: int, c: int, d: int = 4, **extra: int) -> None:
        pass

    f(1, c=3)
    f(1, 20, 30, 40, c=3, d=5, e=6)
    f(a=7, b=8, c=9)
    f(1, 2, 30, 40, 50, 60, c=3)  # extra positionals never stand in for keyword-only parameters
    got = [{k: v for k, v in e["properties"].items() if k.startswith("arg_")} for e in _events(sink)]
    assert got == [
        {"arg_a": 1, "arg_b": 2, "arg_c": 3, "arg_d": 4},
        {"arg_a": 1, "arg_b": 20, "arg_c": 3, "arg_d": 5},
        {"arg_a": 7, "arg_b": 8, "arg_c": 9, "arg_d": 4},
        {"arg_a": 1, "arg_b": 2, "arg_c": 3, "arg_d": 4},
    ]


def test_track_capture_args_unknown_name_fails_at_decoration() -> None:
    decorate = obs.track("t", capture_args=["a", "nope"])
    with pytest.raises(TypeError, match="nope"):

        @decorate
        def f(a: int) -> None:
            pass


def test_track_result_only_on_request_and_distinct_id(memory: Memory) -> None:
    _, sink = memory

    @obs.track("plain")
    def plain() -> str:
        return "secret"

    @obs.track("explicit", distinct_id=lambda user: f"user-{user}")
    def explicit(user: int) -> None:
        pass

    with obs.context(distinct_id="ctx-user"):
        plain()
        explicit(42)
    plain()
    first, second, outside = _events(sink)
    assert "result" not in first["properties"]
    assert first["distinct_id"] == "ctx-user"
    assert second["distinct_id"] == "user-42"
    assert outside["distinct_id"] not in ("ctx-user", "user-42")
    assert outside["properties"]["$process_person_profile"] is False


# ------------------------------------------------------------------ @flush_after (real HTTP)


def _init_for_flush(server: CaptureServer) -> None:
    """Only an explicit flush delivers: no interval tick, no batch-size trigger in this test's time."""
    obs.init(api_key="phc_test", host=server.url, flush_interval=60, flush_at=1000)
    assert obs.flush(5)  # the worker is up and past its first drain: now it waits 60 s between drains


def _delivered(server: CaptureServer) -> list[str]:
    return [e["event"] for e in server.events()]


@pytest.mark.parametrize("fail", [False, True])
def test_flush_after_delivers_before_a_sync_call_returns(server: CaptureServer, fail: bool) -> None:
    _init_for_flush(server)
    obs.capture("before", distinct_id="u")

    @obs.flush_after
    @obs.capture_errors
    def handler() -> str:
        obs.capture("inside", distinct_id="u")
        if fail:
            raise ValueError("handler failed")
        return "ok"

    time.sleep(0.05)
    assert _delivered(server) == []  # nothing goes out on its own here
    if fail:
        with pytest.raises(ValueError):
            handler()
    else:
        assert handler() == "ok"
    expected = ["before", "inside", "$exception"] if fail else ["before", "inside"]
    assert _delivered(server) == expected


@pytest.mark.parametrize("fail", [False, True])
def test_flush_after_delivers_when_a_generator_finishes(server: CaptureServer, fail: bool) -> None:
    _init_for_flush(server)

    @obs.flush_after
    def rows() -> Generator[int, None, None]:
        obs.capture("row", distinct_id="u")
        yield 1
        if fail:
            raise ValueError("rows failed")

    gen = rows()
    assert next(gen) == 1
    assert _delivered(server) == []  # the unit is still running
    with pytest.raises(ValueError) if fail else pytest.raises(StopIteration):
        next(gen)
    assert _delivered(server) == ["row"]


async def _async_handler_scenario(server: CaptureServer) -> None:
    @obs.flush_after(timeout=5)
    @obs.track("handled")
    async def handler(fail: bool) -> str:
        obs.capture("inside", distinct_id="u")
        await anyio.sleep(0)
        if fail:
            raise ValueError("handler failed")
        return "ok"

    assert await handler(False) == "ok"
    assert _delivered(server) == ["inside", "handled"]
    with pytest.raises(ValueError):
        await handler(True)
    assert _delivered(server) == ["inside", "handled", "inside", "handled"]


@pytest.mark.asyncio
async def test_flush_after_delivers_before_an_async_call_returns_asyncio(server: CaptureServer) -> None:
    _init_for_flush(server)
    await _async_handler_scenario(server)


def test_flush_after_delivers_before_an_async_call_returns_trio(server: CaptureServer) -> None:
    _init_for_flush(server)
    trio.run(_async_handler_scenario, server)


# ------------------------------------------------------------------ disabled SDK


@decorators
@kinds
def test_disabled_sdk_runs_everything_and_sends_nothing(
    kind: Kind, deco: Deco, monkeypatch: pytest.MonkeyPatch
) -> None:
    from obs import _exceptions

    attempts: list[Any] = []
    monkeypatch.setattr(_exceptions, "capture", lambda *a, **k: attempts.append(a))
    threads = set(threading.enumerate())

    assert call(kind.flavor, kind.build(deco, None).decorated, 1) == EXPECTED[kind.flavor]
    error = ValueError("off")
    with pytest.raises(ValueError) as info:
        call(kind.flavor, kind.build(deco, error).decorated, 1)
    assert info.value is error
    swallow = obs.capture_errors(reraise=False, default="d")
    assert call(kind.flavor, kind.build(swallow, error).decorated, 1) == _swallowed(kind.flavor, "d")

    assert isinstance(obs.get_client(), DisabledClient)
    assert attempts == []
    assert set(threading.enumerate()) <= threads  # no worker, no flush thread


# ------------------------------------------------------------------ a failing probe


class _BrokenProbe(Probe):
    def __init__(self) -> None:
        self.calls: list[str] = []

    def start(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        self.calls.append("start")
        raise RuntimeError("start broke")

    def item(self, state: Any, value: Any) -> None:
        self.calls.append("item")
        raise RuntimeError("item broke")

    def finish(self, state: Any, args: Any, kwargs: Any, result: Any, error: BaseException | None) -> Any:
        self.calls.append("finish")
        raise RuntimeError("finish broke")


class _BrokenErrorsOnly(_BrokenProbe):
    errors_only = True

    def finish(self, state: Any, args: Any, kwargs: Any, result: Any, error: BaseException | None) -> Any:
        self.calls.append("finish")
        raise RuntimeError("finish broke")  # would have swallowed with a value; RERAISE instead


class _AsyncBrokenProbe(_BrokenProbe):
    async def afinish(
        self, state: Any, args: Any, kwargs: Any, result: Any, error: BaseException | None
    ) -> Any:
        self.calls.append("afinish")
        await anyio.sleep(0)
        raise RuntimeError("afinish broke")


@pytest.mark.parametrize("probe_type", [_BrokenProbe, _BrokenErrorsOnly, _AsyncBrokenProbe])
@kinds
def test_a_failing_probe_never_reaches_the_caller(kind: Kind, probe_type: type[_BrokenProbe]) -> None:
    probe = probe_type()

    def deco(fn: Any) -> Any:
        return wrap(fn, probe)

    assert call(kind.flavor, kind.build(deco, None).decorated, 1) == EXPECTED[kind.flavor]
    error = ValueError("own")
    with pytest.raises(ValueError) as info:
        call(kind.flavor, kind.build(deco, error).decorated, 1)
    assert info.value is error
    assert "finish" in probe.calls or "afinish" in probe.calls
    if not probe.errors_only:
        assert "start" in probe.calls
        if kind.flavor in ("gen", "agen"):
            assert "item" in probe.calls


class _SwallowEverything(Probe):
    errors_only = True

    def finish(self, state: Any, args: Any, kwargs: Any, result: Any, error: Any) -> Any:
        return "swallowed"


@pytest.mark.parametrize("make", EXITS, ids=["SystemExit", "KeyboardInterrupt", "GeneratorExit"])
@kinds
def test_process_exits_propagate_whatever_the_probe_returns(
    kind: Kind, make: Callable[[], BaseException]
) -> None:
    error = make()
    built = kind.build(lambda fn: wrap(fn, _SwallowEverything()), error)
    with pytest.raises(type(error)) as info:
        call(kind.flavor, built.decorated, 1)
    assert info.value is error
    swallowed = kind.build(lambda fn: wrap(fn, _SwallowEverything()), ValueError("ordinary"))
    assert call(kind.flavor, swallowed.decorated, 1) == _swallowed(kind.flavor, "swallowed")


@pytest.mark.parametrize("flavor", ["coro", "agen"])
@pytest.mark.asyncio
async def test_cancellation_propagates_whatever_the_probe_returns(flavor: str) -> None:
    async def work() -> None:
        await asyncio.sleep(3600)

    async def feed() -> AsyncGenerator[int, None]:
        yield 1
        await asyncio.sleep(3600)
        yield 2

    guarded = wrap(work if flavor == "coro" else feed, _SwallowEverything())

    async def consume() -> None:
        if flavor == "coro":
            await guarded()
        else:
            async for _ in guarded():
                pass

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


def test_probe_finish_can_return_a_value_instead_of_raising() -> None:
    class Fallback(Probe):
        errors_only = True

        def finish(self, state: Any, args: Any, kwargs: Any, result: Any, error: Any) -> Any:
            return RERAISE if isinstance(error, KeyError) else ("fallback", type(error).__name__)

    def raises(exc: Exception) -> Any:
        raise exc

    fails = wrap(raises, Fallback())
    assert fails(ValueError()) == ("fallback", "ValueError")
    with pytest.raises(KeyError):
        fails(KeyError())
