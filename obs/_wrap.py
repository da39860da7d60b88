"""The one wrapping helper behind every obs decorator, ``obs.context`` and ``obs.trace``.

A decorator describes what it does around one *unit of work* as a :class:`Probe`; :func:`wrap` turns any
callable kind into a wrapper that calls the probe at the unit's start and end. A unit is one call of a
function or coroutine function, and one whole iteration of a generator or async generator: from the first
``next`` to exhaustion, an exception, or ``close()``.

What the helper guarantees, so no decorator has to:

- Signature, ``__wrapped__``, ``__name__``/``__doc__`` and what ``inspect`` reports are the original's.
- Only the probe methods a decorator overrides are called: ``@capture_errors``' success path is a bare
  ``try``.
- A *gating* probe (``gates = True``, e.g. ``@feature_gate``) decides before each unit whether it runs at
  all, or what runs in its place; async callables await its ``agate``, so it may do I/O.
- A probe that fails is logged, never raised into the caller. ``SystemExit``, ``KeyboardInterrupt``,
  ``GeneratorExit`` and cancellation always propagate, whatever the probe returns.
- A generator runs in its own copy of the context, taken when iteration starts: what it sets (an
  ``obs.context``, a span) is visible inside it on every resume and invisible to the consumer between
  yields, and a nested decorated generator started inside it inherits its context (parent/child).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Generator
from contextvars import Context, copy_context
from typing import Any, ParamSpec, Protocol, TypeAlias, TypeVar, cast

from . import _current
from ._log import warn_every

F = TypeVar("F", bound=Callable[..., Any])
P = ParamSpec("P")
R = TypeVar("R")


class Decorator(Protocol):
    """What a decorator factory such as ``capture_errors(level="warning")`` returns: type-preserving."""

    def __call__(self, fn: Callable[P, R], /) -> Callable[P, R]: ...


RERAISE: Any = object()
"""What :meth:`Probe.finish` returns to let the exception propagate unchanged."""

RUN: Any = object()
"""What :meth:`Probe.gate` returns to let the unit run."""


class Probe:
    """What a decorator does around one unit of work. Override only what you need.

    ``start`` returns per-unit state (e.g. a start time); ``item`` sees each value a generator yields;
    ``finish`` runs once at the end with the result or the exception. For an exception, ``finish``
    returns :data:`RERAISE` or a value to return instead (a generator then simply ends). Async callables
    await ``afinish``, which defaults to ``finish``.
    """

    #: Call ``finish`` only when the unit raised (no per-call work at all on success).
    errors_only = False
    #: Nothing to do while the SDK is off: the wrapper then calls straight through. "Off" means a client
    #: exists and is disabled; before the first client exists, ``start`` runs and initialises it.
    idle_when_disabled = False
    #: Call ``gate`` (``agate`` for coroutine functions and async generators) before each unit instead of
    #: ``start``/``item``/``finish``: a gating probe only decides whether the unit runs.
    gates = False

    def start(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return None

    def item(self, state: Any, value: Any) -> None:
        return None

    def finish(
        self,
        state: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        result: Any,
        error: BaseException | None,
    ) -> Any:
        return RERAISE

    async def afinish(
        self,
        state: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        result: Any,
        error: BaseException | None,
    ) -> Any:
        return self.finish(state, args, kwargs, result, error)

    def gate(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """:data:`RUN`, or a callable taking the unit's arguments, called instead (what it returns or
        raises is the call's; for a generator, what it returns is iterated)."""
        return RUN

    async def agate(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return self.gate(args, kwargs)


DistinctId: TypeAlias = "str | Callable[..., Any] | None"
"""A decorator's ``distinct_id=`` option: a value, or a callable given the call's arguments."""


def distinct_id_for(spec: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """A decorator's ``distinct_id=`` option: a value, or a callable given the call's arguments."""
    if not callable(spec):
        return spec
    try:
        return spec(*args, **kwargs)
    except Exception as e:
        warn_every("distinct-id-callable", 60, "obs: distinct_id callable failed, using the context's: %r", e)
        return None


def _overrides(probe: Probe, name: str) -> bool:
    return getattr(type(probe), name) is not getattr(Probe, name)


def _start(probe: Probe, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        return probe.start(args, kwargs)
    except Exception as e:
        _probe_failed(probe, "start", e)
        return None


def _item(probe: Probe, state: Any, value: Any) -> None:
    try:
        probe.item(state, value)
    except Exception as e:
        _probe_failed(probe, "item", e)


def _finish(
    probe: Probe, state: Any, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any, error: Any
) -> Any:
    try:
        out = probe.finish(state, args, kwargs, result, error)
    except Exception as e:
        _probe_failed(probe, "finish", e)
        return RERAISE
    return out if isinstance(error, Exception) else RERAISE


async def _afinish(
    probe: Probe, state: Any, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any, error: Any
) -> Any:
    try:
        out = await probe.afinish(state, args, kwargs, result, error)
    except Exception as e:
        _probe_failed(probe, "finish", e)
        return RERAISE
    return out if isinstance(error, Exception) else RERAISE


def _gate(probe: Probe, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        return probe.gate(args, kwargs)
    except Exception as e:
        _probe_failed(probe, "gate", e)
        return RUN


async def _agate(probe: Probe, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        return await probe.agate(args, kwargs)
    except Exception as e:
        _probe_failed(probe, "gate", e)
        return RUN


def _probe_failed(probe: Probe, where: str, e: Exception) -> None:
    name = type(probe).__name__
    warn_every(f"probe-{name}-{where}", 60, "obs: %s.%s failed and was skipped: %r", name, where, e)


def wrap(fn: F, probe: Probe) -> F:
    """Wrap any callable kind with ``probe``; the result has ``fn``'s type and signature."""
    if isinstance(fn, (classmethod, staticmethod)):
        return type(fn)(wrap(fn.__func__, probe))
    if probe.gates:
        wrapper: Callable[..., Any] = _gated(fn, probe)
    elif inspect.isasyncgenfunction(fn):
        wrapper = _async_gen(fn, probe)
    elif inspect.isgeneratorfunction(fn):
        wrapper = _gen(fn, probe)
    elif inspect.iscoroutinefunction(fn):
        wrapper = _coro(fn, probe)
    else:
        wrapper = _sync(fn, probe)
    return cast(F, functools.wraps(fn)(wrapper))


def _sync(fn: Callable[..., Any], probe: Probe) -> Callable[..., Any]:
    if probe.errors_only:

        def errors_only(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except BaseException as e:
                out = _finish(probe, None, args, kwargs, None, e)
                if out is RERAISE:
                    raise
                return out

        return errors_only

    idle = probe.idle_when_disabled

    def around(*args: Any, **kwargs: Any) -> Any:
        if idle and (c := _current.client) is not None and not c.enabled:  # off: call straight through
            return fn(*args, **kwargs)
        state = _start(probe, args, kwargs)
        try:
            result = fn(*args, **kwargs)
        except BaseException as e:
            out = _finish(probe, state, args, kwargs, None, e)
            if out is RERAISE:
                raise
            return out
        _finish(probe, state, args, kwargs, result, None)
        return result

    return around


def _coro(fn: Callable[..., Awaitable[Any]], probe: Probe) -> Callable[..., Any]:
    if probe.errors_only and not _overrides(probe, "afinish"):

        async def errors_only(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            except BaseException as e:
                out = _finish(probe, None, args, kwargs, None, e)
                if out is RERAISE:
                    raise
                return out

        return errors_only

    idle = probe.idle_when_disabled

    async def around(*args: Any, **kwargs: Any) -> Any:
        if idle and (c := _current.client) is not None and not c.enabled:
            return await fn(*args, **kwargs)
        state = _start(probe, args, kwargs)
        try:
            result = await fn(*args, **kwargs)
        except BaseException as e:
            out = await _afinish(probe, state, args, kwargs, None, e)
            if out is RERAISE:
                raise
            return out
        await _afinish(probe, state, args, kwargs, result, None)
        return result

    return around


def _gen(fn: Callable[..., Generator[Any, Any, Any]], probe: Probe) -> Callable[..., Any]:
    wants_items = _overrides(probe, "item")
    errors_only = probe.errors_only

    def generator(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        ctx = copy_context()
        state = None if errors_only else ctx.run(_start, probe, args, kwargs)
        try:
            inner = ctx.run(fn, *args, **kwargs)
            value = ctx.run(next, inner)
            while True:
                if wants_items:
                    ctx.run(_item, probe, state, value)
                try:
                    sent = yield value
                except GeneratorExit:
                    ctx.run(inner.close)
                    raise
                except BaseException as thrown:  # consumer's .throw(): hand it to the inner generator
                    value = ctx.run(inner.throw, thrown)
                else:
                    value = ctx.run(inner.send, sent)
        except StopIteration as stop:
            if not errors_only:
                ctx.run(_finish, probe, state, args, kwargs, stop.value, None)
            return stop.value
        except BaseException as e:
            out = ctx.run(_finish, probe, state, args, kwargs, None, e)
            if out is RERAISE:
                raise
            return out

    return generator


def _async_gen(fn: Callable[..., AsyncGenerator[Any, Any]], probe: Probe) -> Callable[..., Any]:
    wants_items = _overrides(probe, "item")
    errors_only = probe.errors_only and not _overrides(probe, "afinish")

    async def async_generator(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        ctx = copy_context()
        state = None if errors_only else ctx.run(_start, probe, args, kwargs)
        try:
            inner = ctx.run(fn, *args, **kwargs)
            value = await _InContext(ctx, inner.__anext__())
            while True:
                if wants_items:
                    ctx.run(_item, probe, state, value)
                try:
                    sent = yield value
                except GeneratorExit:
                    await _InContext(ctx, inner.aclose())
                    raise
                except BaseException as thrown:
                    value = await _InContext(ctx, inner.athrow(thrown))
                else:
                    value = await _InContext(ctx, inner.asend(sent))
        except StopAsyncIteration:
            if not errors_only:
                await _InContext(ctx, _afinish(probe, state, args, kwargs, None, None))
            return
        except BaseException as e:
            if errors_only:
                out = ctx.run(_finish, probe, state, args, kwargs, None, e)
            else:
                out = await _InContext(ctx, _afinish(probe, state, args, kwargs, None, e))
            if out is RERAISE:
                raise
            return

    return async_generator


def _gated(fn: Callable[..., Any], probe: Probe) -> Callable[..., Any]:
    """The wrapper of a gating probe: the unit, or the callable ``gate`` returned in its place."""
    if inspect.isasyncgenfunction(fn):

        async def async_generator(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
            alt = await _agate(probe, args, kwargs)
            inner = fn(*args, **kwargs) if alt is RUN else _as_async_gen(alt(*args, **kwargs))
            try:
                value = await inner.__anext__()
                while True:
                    try:
                        sent = yield value
                    except GeneratorExit:
                        await inner.aclose()
                        raise
                    except BaseException as thrown:
                        value = await inner.athrow(thrown)
                    else:
                        value = await inner.asend(sent)
            except StopAsyncIteration:
                return

        return async_generator
    if inspect.isgeneratorfunction(fn):

        def generator(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
            alt = _gate(probe, args, kwargs)
            if alt is RUN:
                return (yield from fn(*args, **kwargs))
            out = alt(*args, **kwargs)
            if out is not None:
                yield from out
            return None

        return generator
    if inspect.iscoroutinefunction(fn):

        async def coroutine(*args: Any, **kwargs: Any) -> Any:
            alt = await _agate(probe, args, kwargs)
            if alt is RUN:
                return await fn(*args, **kwargs)
            out = alt(*args, **kwargs)
            return await out if inspect.isawaitable(out) else out

        return coroutine

    def function(*args: Any, **kwargs: Any) -> Any:
        alt = _gate(probe, args, kwargs)
        if alt is RUN:
            return fn(*args, **kwargs)
        return alt(*args, **kwargs)

    return function


async def _as_async_gen(items: Any) -> AsyncGenerator[Any, Any]:
    """A gate's replacement output for an async generator: an async iterable, an iterable, or None."""
    if items is None:
        return
    if hasattr(items, "__aiter__"):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item


class _InContext:
    """Await ``coro`` with every step run inside ``ctx``: an async generator's own context.

    Each value the coroutine yields to the event loop (asyncio future, trio trap) passes through
    untouched, and whatever the loop sends or throws back (results, cancellation) is forwarded.
    """

    __slots__ = ("coro", "ctx")

    def __init__(self, ctx: Context, coro: Coroutine[Any, Any, Any] | Awaitable[Any]) -> None:
        self.ctx = ctx
        self.coro = cast(Coroutine[Any, Any, Any], coro)

    def __await__(self) -> Generator[Any, Any, Any]:
        run, coro = self.ctx.run, self.coro
        try:
            signal = run(coro.send, None)
            while True:
                try:
                    reply = yield signal
                except GeneratorExit:
                    run(coro.close)
                    raise
                except BaseException as e:
                    signal = run(coro.throw, e)
                else:
                    signal = run(coro.send, reply)
        except StopIteration as stop:
            return stop.value
