"""`@flush_after`: deliver what an invocation captured before a short-lived worker is frozen or recycled."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, overload

from .. import _api
from .._wrap import RERAISE, Decorator, Probe, wrap

P = ParamSpec("P")
R = TypeVar("R")
DEFAULT_TIMEOUT = 5.0


class _FlushAfter(Probe):
    idle_when_disabled = True

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout

    def finish(
        self,
        state: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        result: Any,
        error: BaseException | None,
    ) -> Any:
        _api.flush(self.timeout)
        return RERAISE

    async def afinish(
        self,
        state: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        result: Any,
        error: BaseException | None,
    ) -> Any:
        await _api.aflush(self.timeout)
        return RERAISE


@overload
def flush_after(fn: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def flush_after(*, timeout: float = DEFAULT_TIMEOUT) -> Decorator: ...
def flush_after(fn: Callable[..., Any] | None = None, /, *, timeout: float = DEFAULT_TIMEOUT) -> Any:
    """Flush obs when each invocation ends (returns, raises, or a generator finishes), waiting at most
    ``timeout`` seconds — for serverless handlers and jobs whose process may be frozen right after.

    Async callables flush without blocking the event loop. Put it outermost, so the events of the
    decorators beneath it (``@capture_errors``, ``@track``) are queued before it flushes.
    """
    probe = _FlushAfter(timeout)
    if fn is None:
        return lambda f: wrap(f, probe)
    return wrap(fn, probe)
