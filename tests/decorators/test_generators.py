"""Decorated generators and async generators: one unit of work, with their own context.

A decorated generator is tracked and guarded from the first ``next`` to its end; what it raises
mid-iteration is captured with its own traceback; ``throw``/``close`` reach the inner generator; and
whatever it sets in the context (``obs.context``, any ContextVar) stays inside it — on every resume — while
the consumer's context at iteration start flows in. Ends with a real FastAPI ``StreamingResponse`` served
by uvicorn and fetched over HTTP by concurrent users.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator, Iterator
from contextvars import ContextVar
from typing import Any

import anyio
import httpx
import pytest
import trio

import obs
from obs._client import Client
from obs.sinks import MemorySink

Memory = tuple[Client, MemorySink]
Deco = Callable[[Any], Any]
BACKENDS = ["asyncio", "trio"]
backends = pytest.mark.parametrize("backend", BACKENDS)
ALL_DECORATORS = {
    "capture_errors": obs.capture_errors,
    "track": obs.track("unit"),
    "flush_after": obs.flush_after,
}
all_decorators = pytest.mark.parametrize("deco", ALL_DECORATORS.values(), ids=list(ALL_DECORATORS))


def _events(sink: MemorySink, name: str | None = None) -> list[dict[str, Any]]:
    assert obs.flush(5)
    return [e for e in sink.events if name is None or e["event"] == name]


# ------------------------------------------------------------------ exceptions mid-iteration


def test_exception_mid_iteration_is_captured_with_the_generators_line(memory: Memory) -> None:
    _, sink = memory

    @obs.track("numbers")
    @obs.capture_errors
    def numbers() -> Generator[int, None, None]:
        yield 1
        yield 2
        raise ValueError("mid-stream")

    got: list[int] = []
    with pytest.raises(ValueError, match="mid-stream"):
        for item in numbers():
            got.append(item)
    assert got == [1, 2]
    (exc,) = _events(sink, "$exception")
    frame = exc["properties"]["$exception_list"][0]["stacktrace"]["frames"][-1]
    assert frame["function"] == "numbers"
    assert frame["context_line"].strip() == 'raise ValueError("mid-stream")'
    (tracked,) = _events(sink, "numbers")
    assert tracked["properties"]["success"] is False
    assert tracked["properties"]["error_type"] == "ValueError"


@backends
def test_async_exception_mid_iteration_is_captured_with_the_generators_line(
    backend: str, memory: Memory
) -> None:
    _, sink = memory

    @obs.track("numbers")
    @obs.capture_errors
    async def anumbers() -> AsyncGenerator[int, None]:
        yield 1
        await anyio.sleep(0.001)
        yield 2
        raise ValueError("async mid-stream")

    async def main() -> list[int]:
        got: list[int] = []
        with pytest.raises(ValueError, match="async mid-stream"):
            async for item in anumbers():
                got.append(item)
        return got

    assert anyio.run(main, backend=backend) == [1, 2]
    (exc,) = _events(sink, "$exception")
    frame = exc["properties"]["$exception_list"][0]["stacktrace"]["frames"][-1]
    assert frame["function"] == "anumbers"
    assert frame["context_line"].strip() == 'raise ValueError("async mid-stream")'
    (tracked,) = _events(sink, "numbers")
    assert tracked["properties"]["error_type"] == "ValueError"


# ------------------------------------------------------------------ throw, close, cancellation


def test_throw_reaches_the_inner_generator(memory: Memory) -> None:
    _, sink = memory
    caught: list[BaseException] = []

    @obs.track("resilient")
    @obs.capture_errors
    def resilient() -> Generator[str, None, None]:
        for i in range(2):
            try:
                yield f"item{i}"
            except KeyError as e:
                caught.append(e)
                yield "recovered"

    gen = resilient()
    assert next(gen) == "item0"
    error = KeyError("from the consumer")
    assert gen.throw(error) == "recovered"
    assert caught == [error]
    assert list(gen) == ["item1"]  # and it carries on

    unhandled = ValueError("not handled inside")
    gen = resilient()
    next(gen)
    with pytest.raises(ValueError) as info:
        gen.throw(unhandled)
    assert info.value is unhandled
    first, second = _events(sink, "resilient")
    assert first["properties"]["success"] is True
    assert second["properties"]["error_type"] == "ValueError"


@backends
def test_athrow_reaches_the_inner_async_generator(backend: str, memory: Memory) -> None:
    _, sink = memory
    caught: list[BaseException] = []

    @obs.track("resilient")
    @obs.capture_errors
    async def resilient() -> AsyncGenerator[str, None]:
        for i in range(2):
            try:
                yield f"item{i}"
            except KeyError as e:
                caught.append(e)
                await anyio.sleep(0)
                yield "recovered"

    error = KeyError("from the consumer")

    async def main() -> list[str]:
        gen = resilient()
        got = [await gen.__anext__(), await gen.athrow(error)]
        return got + [x async for x in gen]

    assert anyio.run(main, backend=backend) == ["item0", "recovered", "item1"]
    assert caught == [error]
    assert _events(sink, "$exception") == []
    (tracked,) = _events(sink, "resilient")
    assert tracked["properties"]["success"] is True


def test_close_early_runs_the_inner_finally_and_marks_closed_early(memory: Memory) -> None:
    _, sink = memory
    log: list[str] = []

    @obs.track("rows")
    @obs.capture_errors
    def rows() -> Generator[int, None, None]:
        with obs.context(properties={"inner": 1}):
            try:
                yield from range(10)
            finally:
                log.append("finally")
                obs.capture("cleanup")  # the cleanup runs inside the generator's own context

    gen = rows()
    assert [next(gen), next(gen)] == [0, 1]
    gen.close()
    assert log == ["finally"]
    assert list(rows()) == list(range(10))
    early, full = _events(sink, "rows")
    assert early["properties"]["closed_early"] is True and early["properties"]["success"] is True
    assert "closed_early" not in full["properties"]
    assert [e["properties"].get("inner") for e in _events(sink, "cleanup")] == [1, 1]
    assert _events(sink, "$exception") == []


@backends
def test_aclose_early_runs_the_inner_finally_and_marks_closed_early(backend: str, memory: Memory) -> None:
    _, sink = memory
    log: list[str] = []

    @obs.track("rows")
    @obs.capture_errors
    async def rows() -> AsyncGenerator[int, None]:
        try:
            for i in range(10):
                await anyio.sleep(0)
                yield i
        finally:
            await anyio.sleep(0)  # awaiting during aclose() is allowed and must work
            log.append("finally")
            obs.capture("cleanup")

    async def main() -> None:
        gen = rows()
        async with obs.context(properties={"consumer": 1}):
            assert [await gen.__anext__(), await gen.__anext__()] == [0, 1]
        await gen.aclose()
        assert log == ["finally"]
        async with contextlib.aclosing(rows()) as stream:
            async for i in stream:
                if i == 3:
                    break
        assert log == ["finally", "finally"]

    anyio.run(main, backend=backend)
    events = _events(sink, "rows")
    assert [e["properties"].get("closed_early") for e in events] == [True, True]
    assert all(e["properties"]["success"] is True for e in events)
    # the first generator started inside the consumer's context: its cleanup still sees that context
    assert [e["properties"].get("consumer") for e in _events(sink, "cleanup")] == [1, None]
    assert _events(sink, "$exception") == []


def _blocking_feed(
    log: list[str], sleep_forever: Callable[[], Any]
) -> Callable[[], AsyncGenerator[int, None]]:
    @obs.track("feed")
    @obs.capture_errors(reraise=False)
    async def feed() -> AsyncGenerator[int, None]:
        try:
            yield 1
            await sleep_forever()
            yield 2
        finally:
            log.append("finally")

    return feed


@pytest.mark.asyncio
async def test_cancelling_an_asyncio_consumer_is_not_captured_and_runs_finally(memory: Memory) -> None:
    _, sink = memory
    log: list[str] = []
    feed = _blocking_feed(log, lambda: asyncio.sleep(3600))

    async def consume() -> None:
        async for item in feed():
            log.append(f"item{item}")
        log.append("done")

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert log == ["item1", "finally"]
    assert _events(sink, "$exception") == []
    (tracked,) = _events(sink, "feed")
    assert tracked["properties"]["cancelled"] is True  # it did not finish: cancelled, not swallowed
    assert "success" not in tracked["properties"]  # and cancellation is not a failure


def test_cancelling_a_trio_consumer_is_not_captured_and_runs_finally(memory: Memory) -> None:
    _, sink = memory
    log: list[str] = []
    feed = _blocking_feed(log, trio.sleep_forever)

    async def consume() -> None:
        async for item in feed():
            log.append(f"item{item}")
        log.append("done")

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
        with trio.move_on_after(0.01) as scope:
            await consume()
        assert scope.cancelled_caught

    trio.run(main)
    assert log == ["item1", "finally", "item1", "finally"]
    assert _events(sink, "$exception") == []


# ------------------------------------------------------------------ context across yields

MINE: ContextVar[str] = ContextVar("mine", default="unset")


@all_decorators
def test_context_set_inside_a_generator_stays_inside(deco: Deco, memory: Memory) -> None:
    _, sink = memory
    inside_seen: list[str] = []

    @deco
    def producer() -> Generator[int, None, None]:
        MINE.set("inside")  # never reset: must still not reach the consumer
        with obs.context(properties={"inner": 1}):
            for i in range(3):
                inside_seen.append(MINE.get())
                obs.capture("inside", {"i": i})
                yield i

    consumer_seen = []
    for i in producer():
        consumer_seen.append(MINE.get())
        obs.capture("between", {"i": i})
    assert inside_seen == ["inside"] * 3
    assert consumer_seen == ["unset"] * 3
    assert MINE.get() == "unset"
    assert all(e["properties"]["inner"] == 1 for e in _events(sink, "inside"))
    between = _events(sink, "between")
    assert len(between) == 3 and all("inner" not in e["properties"] for e in between)


@backends
@all_decorators
def test_context_set_inside_an_async_generator_stays_inside(deco: Deco, backend: str, memory: Memory) -> None:
    _, sink = memory
    inside_seen: list[str] = []

    @deco
    async def producer() -> AsyncGenerator[int, None]:
        MINE.set("inside")
        async with obs.context(properties={"inner": 1}):
            for i in range(3):
                await anyio.sleep(0.001)  # a real suspension between resumes
                inside_seen.append(MINE.get())
                obs.capture("inside", {"i": i})
                yield i

    async def main() -> list[str]:
        seen = []
        async for i in producer():
            seen.append(MINE.get())
            obs.capture("between", {"i": i})
            await anyio.sleep(0.001)
        return seen

    assert anyio.run(main, backend=backend) == ["unset"] * 3
    assert inside_seen == ["inside"] * 3
    assert all(e["properties"]["inner"] == 1 for e in _events(sink, "inside"))
    between = _events(sink, "between")
    assert len(between) == 3 and all("inner" not in e["properties"] for e in between)


@all_decorators
def test_the_consumers_context_at_iteration_start_flows_in(deco: Deco, memory: Memory) -> None:
    _, sink = memory

    @deco
    def producer() -> Generator[int, None, None]:
        obs.capture("inside")
        yield 1

    with obs.context(distinct_id="creator"):
        gen = producer()  # created here, iterated below: the unit starts at the first next()
    with obs.context(distinct_id="u1", properties={"request": "r1"}):
        assert list(gen) == [1]
    (event,) = _events(sink, "inside")
    assert event["distinct_id"] == "u1"
    assert event["properties"]["request"] == "r1"


@backends
def test_the_consumers_context_flows_into_an_async_generator(backend: str, memory: Memory) -> None:
    _, sink = memory

    @obs.track("produced")
    @obs.capture_errors
    async def producer() -> AsyncGenerator[int, None]:
        await anyio.sleep(0)
        obs.capture("inside")
        yield 1

    async def main() -> None:
        async with obs.context(distinct_id="u1"):
            assert [x async for x in producer()] == [1]

    anyio.run(main, backend=backend)
    assert [e["distinct_id"] for e in _events(sink)] == ["u1", "u1"]


# ------------------------------------------------------------------ nested async generators


@obs.track("inner_stage")
@obs.capture_errors
async def _inner_stage(name: str) -> AsyncGenerator[int, None]:
    async with obs.context(properties={"level2": "inner"}):
        for i in range(3):
            await anyio.sleep(0.002)
            obs.capture("in_inner", {"i": i})
            yield i


@obs.track("outer_stage")
@obs.capture_errors
async def _outer_stage(name: str) -> AsyncGenerator[int, None]:
    async with obs.context(properties={"level": "outer", "pipeline": name}):
        async for i in _inner_stage(name):
            obs.capture("in_outer", {"i": i})
            yield i * 10
        await anyio.sleep(0.002)
        obs.capture("outer_after")


async def _pipeline(name: str) -> list[int]:
    async with obs.context(distinct_id=f"user-{name}"):
        got = []
        async for value in _outer_stage(name):
            got.append(value)
            obs.capture("consumer", {"pipeline_seen": name})
            await anyio.sleep(0.001)
        return got


def _check_pipeline(sink: MemorySink, name: str) -> None:
    events = [e for e in _events(sink) if e["distinct_id"] == f"user-{name}"]
    by_name: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        by_name.setdefault(e["event"], []).append(e["properties"])
    assert len(by_name["in_inner"]) == len(by_name["in_outer"]) == len(by_name["consumer"]) == 3
    for p in by_name["in_inner"]:
        assert (p["level"], p["level2"], p["pipeline"]) == ("outer", "inner", name)
    for p in by_name["in_outer"] + by_name["outer_after"]:
        assert (p["level"], p["pipeline"]) == ("outer", name) and "level2" not in p
    for p in by_name["consumer"]:
        assert "level" not in p and "pipeline" not in p and p["pipeline_seen"] == name
    # track events are sent as each unit ends: the inner one in the outer's context (its own
    # `level2` block has closed by then), the outer one in the consumer's
    (inner_tracked,) = by_name["inner_stage"]
    assert inner_tracked["level"] == "outer" and "level2" not in inner_tracked
    (outer_tracked,) = by_name["outer_stage"]
    assert "level" not in outer_tracked and "level2" not in outer_tracked


@backends
def test_nested_async_generators_keep_parent_and_child_context(backend: str, memory: Memory) -> None:
    _, sink = memory
    assert anyio.run(_pipeline, "solo", backend=backend) == [0, 10, 20]
    _check_pipeline(sink, "solo")


@pytest.mark.asyncio
async def test_concurrent_pipelines_in_asyncio_gather_do_not_mix(memory: Memory) -> None:
    _, sink = memory
    results = await asyncio.gather(_pipeline("a"), _pipeline("b"), _pipeline("c"))
    assert results == [[0, 10, 20]] * 3
    for name in "abc":
        _check_pipeline(sink, name)


def test_concurrent_pipelines_in_a_trio_nursery_do_not_mix(memory: Memory) -> None:
    _, sink = memory
    results: dict[str, list[int]] = {}

    async def run(name: str) -> None:
        results[name] = await _pipeline(name)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for name in "abc":
                nursery.start_soon(run, name)

    trio.run(main)
    assert results == {name: [0, 10, 20] for name in "abc"}
    for name in "abc":
        _check_pipeline(sink, name)


# ------------------------------------------------------------------ FastAPI StreamingResponse over HTTP

CHUNKS = 5
CHUNK_SLEEP = 0.01


def _streaming_app() -> Any:
    from fastapi import FastAPI
    from fastapi.responses import StreamingResponse

    class UserContext:
        """Pure ASGI middleware: every request runs inside obs.context(distinct_id=<X-User>)."""

        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await self.app(scope, receive, send)
                return
            user = dict(scope["headers"]).get(b"x-user", b"").decode() or None
            with obs.context(distinct_id=user):
                await self.app(scope, receive, send)

    @obs.track("stream")
    @obs.capture_errors
    async def chunks(fail_at: int | None) -> AsyncGenerator[str, None]:
        for i in range(CHUNKS):
            await anyio.sleep(CHUNK_SLEEP)
            if i == fail_at:
                raise RuntimeError("stream broke")
            obs.capture("chunk", {"i": i})
            yield f"chunk{i};"

    app = FastAPI()
    app.add_middleware(UserContext)

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        return StreamingResponse(chunks(None), media_type="text/plain")

    @app.get("/broken")
    async def broken() -> StreamingResponse:
        return StreamingResponse(chunks(2), media_type="text/plain")

    return app


@pytest.fixture
def app_url() -> Iterator[str]:
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(
        _streaming_app(), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


async def _fetch(client: httpx.AsyncClient, path: str, user: str) -> tuple[str, bool, float]:
    """(body received, whether the stream completed, seconds it took)."""
    body, complete, start = "", False, time.perf_counter()
    try:
        async with client.stream("GET", path, headers={"X-User": user}) as response:
            assert response.status_code == 200
            async for text in response.aiter_text():
                body += text
        complete = True
    except httpx.RemoteProtocolError:  # the server dropped the connection mid-body
        pass
    return body, complete, time.perf_counter() - start


@pytest.mark.asyncio
async def test_fastapi_streaming_response_keeps_each_users_context(app_url: str, memory: Memory) -> None:
    _, sink = memory
    async with httpx.AsyncClient(base_url=app_url, timeout=10, trust_env=False) as client:
        (alice, alice_ok, alice_s), (bob, bob_ok, _), (carol, carol_ok, _) = await asyncio.gather(
            _fetch(client, "/stream", "alice"),
            _fetch(client, "/broken", "bob"),
            _fetch(client, "/stream", "carol"),
        )
    full = "".join(f"chunk{i};" for i in range(CHUNKS))
    assert (alice, alice_ok) == (full, True)
    assert (carol, carol_ok) == (full, True)
    assert (bob, bob_ok) == ("chunk0;chunk1;", False)

    deadline = time.monotonic() + 5  # the server thread may still be finishing bob's failed stream
    while len(_events(sink, "stream")) < 3 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    chunks: dict[str, list[int]] = {}
    for e in _events(sink, "chunk"):
        chunks.setdefault(e["distinct_id"], []).append(e["properties"]["i"])
    assert {u: sorted(v) for u, v in chunks.items()} == {
        "alice": list(range(CHUNKS)),
        "carol": list(range(CHUNKS)),
        "bob": [0, 1],
    }
    streams = {e["distinct_id"]: e["properties"] for e in _events(sink, "stream")}
    assert set(streams) == {"alice", "bob", "carol"}
    for user in ("alice", "carol"):
        assert streams[user]["success"] is True
        assert streams[user]["duration_ms"] >= CHUNKS * CHUNK_SLEEP * 1000 * 0.9  # the whole stream
    assert streams["alice"]["duration_ms"] <= alice_s * 1000  # and not more than the client waited
    assert streams["bob"]["success"] is False
    assert streams["bob"]["error_type"] == "RuntimeError"
    assert streams["bob"]["duration_ms"] >= 3 * CHUNK_SLEEP * 1000 * 0.9
    (exc,) = _events(sink, "$exception")
    assert exc["distinct_id"] == "bob"
    frame = exc["properties"]["$exception_list"][0]["stacktrace"]["frames"][-1]
    assert (frame["function"], frame["context_line"].strip()) == (
        "chunks",
        'raise RuntimeError("stream broke")',
    )
