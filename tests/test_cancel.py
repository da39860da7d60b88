"""Cancellation is not a failure: ``obs._cancel.is_cancellation``, and what ``@track``, spans, traces and
generations record for a unit that was cancelled, on asyncio, trio and anyio over both.

Each unit blocks in ``anyio.sleep_forever()`` and is cancelled the way each library does it: an asyncio
task's ``cancel()``, a trio deadline, an anyio cancel scope around a task group. What must hold every
time: the cancellation propagates unchanged, no ``$exception`` is sent, and the event says
``cancelled: true`` without marking an error (``success``/``error_type`` for ``@track``,
``$ai_is_error``/``$ai_error`` for LLM events).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from typing import Any

import anyio
import pytest
import trio

import obs
from obs._cancel import is_cancellation
from obs.sinks import MemorySink

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup, ExceptionGroup

HOW = ["asyncio", "trio", "anyio-asyncio", "anyio-trio"]


@pytest.fixture
def sink() -> Iterator[MemorySink]:
    s = MemorySink()
    obs.init(api_key="phc_test", sinks=[s], llm_payloads=True)
    yield s


def _props(sink: MemorySink, name: str) -> dict[str, Any]:
    assert obs.flush(5)
    (event,) = sink.named(name)
    return dict(event["properties"])


def _cancel(how: str, work: Callable[[], Awaitable[Any]]) -> None:
    """Run ``work`` until it blocks, cancel it as ``how`` does, and check the cancellation came out."""
    if how == "asyncio":

        async def with_asyncio() -> None:
            task = asyncio.create_task(work())  # type: ignore[arg-type]
            await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert task.cancelled()

        asyncio.run(with_asyncio())
    elif how == "trio":

        async def with_trio() -> None:
            with trio.move_on_after(0.01) as deadline:
                await work()
            assert deadline.cancelled_caught

        trio.run(with_trio)
    else:

        async def with_anyio() -> None:
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(work)
                    await anyio.sleep(0.01)
                    scope.cancel()
            assert scope.cancelled_caught

        anyio.run(with_anyio, backend=how.removeprefix("anyio-"))


# ---------------------------------------------------------------- what counts as cancellation


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_each_backends_cancellation_is_recognised(backend: str) -> None:
    seen: list[BaseException] = []

    async def main() -> None:
        with anyio.CancelScope() as scope:
            scope.cancel()
            try:
                await anyio.sleep(1)
            except anyio.get_cancelled_exc_class() as e:
                seen.append(e)
                raise

    anyio.run(main, backend=backend)
    (cancelled,) = seen
    assert is_cancellation(cancelled)
    assert type(cancelled) is (trio.Cancelled if backend == "trio" else asyncio.CancelledError)


def test_what_is_not_cancellation() -> None:
    import concurrent.futures

    assert is_cancellation(asyncio.CancelledError())
    assert is_cancellation(BaseExceptionGroup("all cancelled", [asyncio.CancelledError()]))
    nested = BaseExceptionGroup("outer", [BaseExceptionGroup("inner", [asyncio.CancelledError()])])
    assert is_cancellation(nested)
    assert not is_cancellation(None)
    assert not is_cancellation(ValueError("failed"))
    assert not is_cancellation(KeyboardInterrupt())
    assert not is_cancellation(SystemExit(1))
    assert not is_cancellation(GeneratorExit())
    # A result that was cancelled makes the waiting call fail: an Exception, not a cancellation.
    assert not is_cancellation(concurrent.futures.CancelledError())
    assert not is_cancellation(BaseExceptionGroup("mixed", [asyncio.CancelledError(), ValueError("x")]))
    assert not is_cancellation(ExceptionGroup("errors", [ValueError("x")]))


# ---------------------------------------------------------------- @track


@pytest.mark.parametrize("how", HOW)
def test_a_cancelled_tracked_call_is_no_failure(how: str, sink: MemorySink) -> None:
    @obs.track("job")
    @obs.capture_errors(reraise=False, default="swallowed")
    async def job() -> str:
        await anyio.sleep_forever()
        return "done"

    _cancel(how, job)
    props = _props(sink, "job")
    assert props["cancelled"] is True
    assert "success" not in props and "error_type" not in props  # neither succeeded nor failed
    assert props["duration_ms"] >= 5
    assert sink.named("$exception") == []


@pytest.mark.parametrize("how", HOW)
def test_a_cancelled_tracked_stream_is_no_failure(how: str, sink: MemorySink) -> None:
    @obs.track("feed")
    async def feed() -> AsyncGenerator[int, None]:
        yield 1
        await anyio.sleep_forever()
        yield 2

    async def consume() -> None:
        async for _ in feed():
            pass

    _cancel(how, consume)
    props = _props(sink, "feed")
    assert props["cancelled"] is True and "success" not in props and "error_type" not in props


def test_a_group_of_cancellations_is_cancellation_and_a_mixed_group_a_failure(sink: MemorySink) -> None:
    @obs.track("grouped")
    def grouped(*errors: BaseException) -> None:
        raise BaseExceptionGroup("from a task group", list(errors))

    with pytest.raises(BaseExceptionGroup):
        grouped(asyncio.CancelledError(), asyncio.CancelledError())
    with pytest.raises(BaseExceptionGroup):
        grouped(asyncio.CancelledError(), ValueError("a real failure"))
    assert obs.flush(5)
    cancelled, failed = (e["properties"] for e in sink.named("grouped"))
    assert cancelled["cancelled"] is True and "success" not in cancelled
    assert failed["success"] is False and failed["error_type"] == "BaseExceptionGroup"
    assert "cancelled" not in failed


def test_other_interruptions_are_still_failures(sink: MemorySink) -> None:
    @obs.track("interrupted")
    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    props = _props(sink, "interrupted")
    assert props["success"] is False and props["error_type"] == "KeyboardInterrupt"
    assert "cancelled" not in props


# ---------------------------------------------------------------- spans, traces and generations


@pytest.mark.parametrize("how", HOW)
def test_a_cancelled_span_and_trace_are_no_errors(how: str, sink: MemorySink) -> None:
    @obs.span("retrieve")
    async def retrieve() -> None:
        await anyio.sleep_forever()

    async def chat() -> None:
        async with obs.trace("chat"):
            await retrieve()

    _cancel(how, chat)
    span, trace = _props(sink, "$ai_span"), _props(sink, "$ai_trace")
    for props in (span, trace):
        assert props["cancelled"] is True
        assert "$ai_is_error" not in props and "$ai_error" not in props
    assert trace["$ai_trace_errors"] == 0
    assert span["$ai_parent_id"] == trace["$ai_span_id"]


@pytest.mark.parametrize("how", HOW)
def test_a_cancelled_generation_is_no_error(how: str, sink: MemorySink) -> None:
    @obs.trace_llm(provider="openai", model="gpt-4o-mini")
    async def complete(prompt: str) -> dict[str, Any]:
        await anyio.sleep_forever()
        return {}

    async def block() -> None:
        async with obs.trace_generation("anthropic", "claude-sonnet-4"):
            await anyio.sleep_forever()

    async def both() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(complete, "hello")
            tg.start_soon(block)

    _cancel(how, both)
    assert obs.flush(5)
    generations = [e["properties"] for e in sink.named("$ai_generation")]
    assert {g["$ai_provider"] for g in generations} == {"openai", "anthropic"}
    for props in generations:
        assert props["cancelled"] is True
        assert "$ai_is_error" not in props and "$ai_error" not in props
        assert "$ai_stream_completed" not in props  # not a stream


@pytest.mark.parametrize("how", HOW)
def test_a_cancelled_stream_generation_is_incomplete_not_an_error(how: str, sink: MemorySink) -> None:
    @obs.trace_llm(provider="openai", model="gpt-4o-mini")
    async def stream(prompt: str) -> AsyncGenerator[str, None]:
        yield "Hel"
        yield "lo"
        await anyio.sleep_forever()

    async def consume() -> None:
        async for _ in stream("hi"):
            pass

    _cancel(how, consume)
    props = _props(sink, "$ai_generation")
    assert props["cancelled"] is True and props["$ai_stream_completed"] is False
    assert "$ai_is_error" not in props
    # What streamed before the cancellation, in posthog-python's content shape.
    assert props["$ai_output_choices"][0]["content"] == [{"type": "text", "text": "Hello"}]
