"""`obs.context`: who and what an event belongs to, carried by contextvars.

A frame is immutable, so a snapshot taken on the hot path (one ``ContextVar.get``) stays valid while the
event waits in the queue; merging its properties into the event happens on the worker. Because it is a
contextvar it follows ``await``, asyncio tasks, anyio task groups and ``anyio.to_thread.run_sync``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextvars import Token
from types import MappingProxyType, TracebackType
from typing import Any, TypeVar

from ._frame import Frame, current, flags_seen
from ._wrap import RERAISE, Probe, wrap

__all__ = ["Frame", "context", "current", "flags_seen", "pop_own"]

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

_EMPTY: Mapping[str, Any] = MappingProxyType({})


class context:
    """Attach a distinct_id, a session id and properties to every event captured inside.

    Works as ``with``, ``async with`` and as a decorator of sync and async functions. Levels nest: an
    inner level inherits the outer distinct_id/session_id unless it sets its own, and its properties
    are layered over the outer ones.
    """

    __slots__ = ("_distinct_id", "_properties", "_session_id", "_tokens")

    def __init__(
        self,
        distinct_id: str | None = None,
        session_id: str | None = None,
        properties: Mapping[str, Any] | None = None,
    ) -> None:
        self._distinct_id = None if distinct_id is None else str(distinct_id)
        self._session_id = None if session_id is None else str(session_id)
        self._properties = dict(properties) if properties else None
        # One entry per open `with`: (frame, tokens). Tasks sharing one instance may exit in any order.
        self._tokens: list[tuple[Frame, Token[Frame | None], Token[Any]]] = []

    def _frame(self) -> Frame:
        parent = current.get()
        if parent is None:
            props: Mapping[str, Any] = MappingProxyType(self._properties) if self._properties else _EMPTY
            return Frame(self._distinct_id, self._session_id, props)
        if self._properties:
            props = MappingProxyType({**parent.properties, **self._properties})
        else:
            props = parent.properties
        return Frame(
            self._distinct_id if self._distinct_id is not None else parent.distinct_id,
            self._session_id if self._session_id is not None else parent.session_id,
            props,
        )

    def __enter__(self) -> Frame:
        frame = self._frame()
        self._tokens.append((frame, current.set(frame), flags_seen.set(flags_seen.get())))
        return frame

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        _, frame_token, flags_token = pop_own(self._tokens, current.get(), lambda entry: entry[0])
        flags_seen.reset(flags_token)
        current.reset(frame_token)

    async def __aenter__(self) -> Frame:
        return self.__enter__()

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(et, ev, tb)

    def __call__(self, fn: F) -> F:
        """As a decorator: each call (or whole generator iteration) runs inside a new level like this one."""
        return wrap(fn, _ContextProbe(self._distinct_id, self._session_id, self._properties))


def pop_own(entries: list[T], here: object, key: Callable[[T], object]) -> T:
    """Remove and return the current task's entry from a context manager instance's stack of open entries.

    One instance (``step = obs.span("step")`` at module level) may be entered by concurrent tasks that exit
    in any order, so the entry to end is not the last one pushed but the one whose ``key`` is ``here``, the
    contextvar value this task's entry set; the last one when none is (the value was replaced meanwhile).
    """
    for i in range(len(entries) - 1, -1, -1):
        if key(entries[i]) is here:
            return entries.pop(i)
    return entries.pop()


class _ContextProbe(Probe):
    def __init__(self, *spec: Any) -> None:
        self.spec = spec

    def start(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return current.set(context(*self.spec)._frame()), flags_seen.set(flags_seen.get())

    def finish(self, state: Any, args: Any, kwargs: Any, result: Any, error: Any) -> Any:
        frame_token, flags_token = state
        flags_seen.reset(flags_token)
        current.reset(frame_token)
        return RERAISE
