"""Assert what your code emits: ``obs.testing.capture_events()`` collects events instead of sending them.

    with obs.testing.capture_events(flags={"new-checkout": True}) as captured:
        signup("ada@example.com")
    captured.assert_captured("signed_up", "ada@example.com", plan="pro")

Inside the block the module-level functions (``obs.capture`` and friends, and everything built on them)
go to an in-memory sink through the real pipeline — the same worker, typed events and wire form — and
nothing leaves the process. Feature flags are answered by :class:`FlagOverrides` (``captured.flags``):
a flag set there has that value and payload, reported with ``$feature_flag_called`` as in production;
any other flag returns the caller's default. The client that was active before is restored afterwards.

The pytest plugin (``obs.pytest_plugin``, loaded automatically) wraps this in the ``obs_events`` and
``obs_flags`` fixtures.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping, Sequence
from contextvars import Token
from types import TracebackType
from typing import TYPE_CHECKING, Any

from . import _context, _current
from ._flags import FlagOverrides, FlagValue

if TYPE_CHECKING:
    from .display import EventList, TraceTree

__all__ = ["KINDS", "CapturedEvents", "FlagOverrides", "capture_events", "kind_of"]

# Event name -> kind (as in obs.events); every other name is a "custom" event (obs.capture, @track).
_KIND_BY_NAME = {
    "$exception": "exception",
    "$identify": "identify",
    "$groupidentify": "group_identify",
    "$feature_flag_called": "feature_flag_called",
    "$ai_generation": "ai_generation",
    "$ai_embedding": "ai_embedding",
    "$ai_span": "ai_span",
    "$ai_trace": "ai_trace",
}
KINDS = ("custom", *_KIND_BY_NAME.values())
_SHOWN = 20  # events listed in a failure message
_WIDTH = 80  # characters of one value shown in a failure message


def kind_of(event: Mapping[str, Any]) -> str:
    """The kind of a wire event, told by its name: ``custom``, ``exception``, ``ai_generation``, …"""
    return _KIND_BY_NAME.get(event["event"], "custom")


class CapturedEvents:
    """The events captured inside :func:`capture_events` (or by the ``obs_events`` fixture), as PostHog
    wire dicts (``event``, ``distinct_id``, ``properties``, ``uuid``, ``timestamp``) in capture order.

    Reading them waits for obs's worker to hand over what was captured so far. ``flags`` sets the feature
    flag values that code sees."""

    def __init__(self, client: Any, sink: Any, flags: FlagOverrides | None = None) -> None:
        self.client = client
        self.flags = flags if flags is not None else FlagOverrides()
        self._sink = sink
        self._ended = False  # the block (or fixture) is over: its own exit closed the client

    # ---- reading

    @property
    def events(self) -> EventList:
        """Everything captured so far (waits for the worker to hand it over)."""
        from .display import EventList

        self.client.flush(10)
        return EventList(self._sink.events)

    @property
    def names(self) -> list[str]:
        """The names of the events captured so far, in order."""
        return [e["event"] for e in self.events]

    def named(self, name: str) -> EventList:
        """The events called ``name``."""
        return self.events.named(name)

    def trace(self, trace_id: str | None = None) -> TraceTree:
        """The LLM traces among the events (only ``trace_id``'s if given), as a tree (see obs.display)."""
        return self.events.trace(trace_id)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        """The events of one kind (see :data:`KINDS`): ``custom`` (``obs.capture``, ``@track``),
        ``exception``, ``identify``, ``group_identify``, ``feature_flag_called``, ``ai_generation``,
        ``ai_embedding``, ``ai_span``, ``ai_trace``. ValueError for another kind."""
        if kind not in KINDS:
            raise ValueError(f"unknown event kind {kind!r}; the kinds are {', '.join(KINDS)}")
        return [e for e in self.events if kind_of(e) == kind]

    def for_user(self, distinct_id: Any) -> list[dict[str, Any]]:
        """The events of one distinct_id."""
        did = str(distinct_id)
        return [e for e in self.events if e.get("distinct_id") == did]

    def where(
        self,
        name: str | None = None,
        /,
        distinct_id: Any = None,
        *,
        kind: str | None = None,
        properties: Mapping[str, Any] | None = None,
        **props: Any,
    ) -> list[dict[str, Any]]:
        """The events with that name, distinct_id and kind (each when given) whose properties include
        ``properties`` and ``props`` (each compared with ``==``, so ``unittest.mock.ANY`` and
        ``pytest.approx`` work; use ``properties=`` for names like ``$current_url``)."""
        want = _Want(name, distinct_id, kind, properties, props)
        return [e for e in (self.events if kind is None else self.of_kind(kind)) if want.matches(e)]

    def clear(self) -> None:
        """Forget what was captured so far (after waiting for it)."""
        self.client.flush(10)
        self._sink.clear()

    def __len__(self) -> int:
        return len(self.events)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.events)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.events[index]

    def __repr__(self) -> str:
        return f"CapturedEvents: {self.events.text()}"

    def _repr_html_(self) -> str:
        return f"<b>CapturedEvents</b>{self.events._repr_html_()}"

    # ---- asserting

    def assert_captured(
        self,
        name: str,
        /,
        distinct_id: Any = None,
        *,
        properties: Mapping[str, Any] | None = None,
        **props: Any,
    ) -> dict[str, Any]:
        """The first event called ``name`` (of ``distinct_id``, when given) whose properties include
        ``properties`` and ``props``; AssertionError saying what was captured instead when there is none."""
        __tracebackhide__ = True
        want = _Want(name, distinct_id, None, properties, props)
        events = self.events
        for event in events:
            if want.matches(event):
                return event
        raise AssertionError(self._missing(want, events))

    def one(
        self,
        name: str,
        /,
        distinct_id: Any = None,
        *,
        properties: Mapping[str, Any] | None = None,
        **props: Any,
    ) -> dict[str, Any]:
        """Like :meth:`assert_captured`, but exactly one event may match (AssertionError listing them when
        several do)."""
        __tracebackhide__ = True
        want = _Want(name, distinct_id, None, properties, props)
        events = self.events
        found = [e for e in events if want.matches(e)]
        if len(found) == 1:
            return found[0]
        if not found:
            raise AssertionError(self._missing(want, events))
        listing = self._listing(events, found)
        raise AssertionError(f"expected one {want}, {len(found)} were captured:\n{listing}")

    def assert_not_captured(
        self,
        name: str,
        /,
        distinct_id: Any = None,
        *,
        properties: Mapping[str, Any] | None = None,
        **props: Any,
    ) -> None:
        """AssertionError, listing them, when an event matching as in :meth:`assert_captured` was
        captured."""
        __tracebackhide__ = True
        want = _Want(name, distinct_id, None, properties, props)
        events = self.events
        found = [e for e in events if want.matches(e)]
        if found:
            raise AssertionError(
                f"expected no {want}, {len(found)} captured:\n{self._listing(events, found)}"
            )

    def _missing(self, want: _Want, events: Sequence[dict[str, Any]]) -> str:
        lines = [f"no {want} was captured."]
        same_name = [e for e in events if e["event"] == want.name]
        if same_name:
            closest = max(same_name, key=want.score)
            number = events.index(closest) + 1
            lines.append(f"The closest, #{number} {closest['event']!r}, differs in:")
            lines.extend(f"    {d}" for d in want.differences(closest))
        elif events and want.name is not None:
            names = list(dict.fromkeys(e["event"] for e in events))
            near = difflib.get_close_matches(want.name, names, n=3, cutoff=0.6)
            if near:
                lines.append(f"No event is named {want.name!r}; did you mean {' or '.join(map(repr, near))}?")
            else:
                lines.append(f"No event is named {want.name!r}.")
        if events:
            lines.append(f"Captured {len(events)} event(s):")
            lines.append(self._listing(events, events))
        else:
            lines.append("Nothing was captured.")
        hint = self._hint()
        if hint:
            lines.append(hint)
        return "\n".join(lines)

    def _listing(self, events: Sequence[dict[str, Any]], shown: Sequence[dict[str, Any]]) -> str:
        """One line per event: its number, name, distinct_id and what tells it apart."""
        number = {id(e): i for i, e in enumerate(events, 1)}
        common = getattr(self.client, "_super", {})  # environment, release: on every event
        lines = []
        for event in shown[:_SHOWN]:
            line = f"  #{number[id(event)]} {event['event']!r} distinct_id={event.get('distinct_id')!r}"
            summary = _summary(event, common)
            lines.append(f"{line}  {summary}" if summary else line)
        if len(shown) > _SHOWN:
            lines.append(f"  … and {len(shown) - _SHOWN} more")
        return "\n".join(lines)

    def _hint(self) -> str | None:
        """Why events may have gone elsewhere: the capturing client was replaced or shut down."""
        if self._ended:
            return None
        if _current.client is not self.client and not getattr(self.client, "_closed", False):
            return (
                "Note: obs's current client is not the capturing one (was it replaced during the test?); "
                "events captured since went there."
            )
        if getattr(self.client, "_closed", False):
            return "Note: the capturing client was shut down (obs.shutdown()?); later events were dropped."
        return None


class _Want:
    """What an assertion looks for, and how far an event is from it."""

    def __init__(
        self,
        name: str | None,
        distinct_id: Any,
        kind: str | None,
        properties: Mapping[str, Any] | None,
        props: Mapping[str, Any],
    ) -> None:
        self.name = name
        self.distinct_id = None if distinct_id is None else str(distinct_id)
        self.kind = kind
        self.properties = {**(properties or {}), **props}

    def matches(self, event: Mapping[str, Any]) -> bool:
        if self.name is not None and event["event"] != self.name:
            return False
        if self.kind is not None and kind_of(event) != self.kind:
            return False
        if self.distinct_id is not None and event.get("distinct_id") != self.distinct_id:
            return False
        got = event.get("properties") or {}
        return all(k in got and _equal(v, got[k]) for k, v in self.properties.items())

    def score(self, event: Mapping[str, Any]) -> int:
        got = event.get("properties") or {}
        same = sum(1 for k, v in self.properties.items() if k in got and _equal(v, got[k]))
        return same + (self.distinct_id is not None and event.get("distinct_id") == self.distinct_id)

    def differences(self, event: Mapping[str, Any]) -> list[str]:
        out = []
        if self.distinct_id is not None and event.get("distinct_id") != self.distinct_id:
            out.append(f"distinct_id: expected {self.distinct_id!r}, got {event.get('distinct_id')!r}")
        got = event.get("properties") or {}
        for k, v in self.properties.items():
            if k not in got:
                out.append(f"{k}: expected {_short(v)}, not set")
            elif not _equal(v, got[k]):
                out.append(f"{k}: expected {_short(v)}, got {_short(got[k])}")
        return out

    def __str__(self) -> str:
        what = "event" if self.name is None else f"{self.name!r} event"
        if self.kind is not None:
            what = f"{self.kind} {what}"
        parts = [] if self.distinct_id is None else [f"distinct_id={self.distinct_id!r}"]
        parts += [f"{k}={_short(v)}" for k, v in self.properties.items()]
        return what + (f" with {', '.join(parts)}" if parts else "")


def _equal(expected: Any, got: Any) -> bool:
    try:
        return bool(expected == got)  # expected first: unittest.mock.ANY and pytest.approx decide
    except Exception:
        return False


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _WIDTH else text[: _WIDTH - 1] + "…"


def _summary(event: Mapping[str, Any], common: Mapping[str, Any]) -> str:
    """The few properties that tell an event apart: the user's own for custom events (not those every event
    has, ``common``), the gist of the others."""
    p = event.get("properties") or {}
    kind = kind_of(event)
    if kind == "exception":
        first = (p.get("$exception_list") or [{}])[0]
        return _clip(f"{first.get('type')}: {first.get('value')}")
    if kind == "feature_flag_called":
        return _clip(f"{p.get('$feature_flag')}={p.get('$feature_flag_response')!r}")
    if kind == "identify":
        return _clip(f"$set={p.get('$set')!r}")
    if kind.startswith("ai_"):
        keys = ("$ai_trace_id", "$ai_span_name", "$ai_model", "$ai_is_error")
        return _clip(" ".join(f"{k}={p[k]!r}" for k in keys if k in p))
    own = (f"{k}={v!r}" for k, v in p.items() if not k.startswith("$") and common.get(k, p) != v)
    return _clip(" ".join(own))


def _clip(text: str, width: int = 2 * _WIDTH) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


class _Capture:
    """What :func:`capture_events` returns: a ``with`` and ``async with`` block."""

    def __init__(self, flags: Mapping[str, FlagValue] | None, overrides: dict[str, Any]) -> None:
        self._flags = FlagOverrides(flags)
        self._overrides = overrides
        self._previous: tuple[Any, Any, Any] = (None, None, None)
        self._seen: Token[Any] | None = None
        self._captured: CapturedEvents | None = None

    def __enter__(self) -> CapturedEvents:
        from ._client import Client
        from ._config import load_settings
        from .sinks import MemorySink

        sink = MemorySink()
        settings = load_settings(**{**self._overrides, "api_key": "phc_obs_testing", "sinks": [sink]})
        client = Client(settings)
        client.flags.close()  # no request ever: the overrides answer every check
        client.flags.overrides = self._flags
        with _current.lock:
            self._previous = (_current.client, _current.overrides, _current.capturing)
            _current.client, _current.overrides, _current.capturing = client, None, client
        # Flags remembered by an earlier client were not reported by this one: start with none.
        self._seen = _context.flags_seen.set(None)
        self._captured = CapturedEvents(client, sink, self._flags)
        return self._captured

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self._captured is not None:
                self._captured._ended = True
                self._captured.client.shutdown(10)
        finally:
            self._restore()

    async def __aenter__(self) -> CapturedEvents:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self._captured is not None:
                self._captured._ended = True
                await self._captured.client.ashutdown(10)
        finally:
            self._restore()

    def _restore(self) -> None:
        client = self._captured.client if self._captured is not None else None
        previous_client, previous_overrides, previous_capturing = self._previous
        with _current.lock:
            if _current.capturing is client:
                _current.capturing = previous_capturing
            if _current.client is client:
                _current.client, _current.overrides = previous_client, previous_overrides
        if self._seen is not None:
            try:
                _context.flags_seen.reset(self._seen)
            except ValueError:  # left in another context (a fixture's teardown): just forget them
                _context.flags_seen.set(None)


def capture_events(*, flags: Mapping[str, FlagValue] | None = None, **overrides: Any) -> _Capture:
    """Collect every event captured inside the block instead of sending it; ``with`` or ``async with``.

    ``flags`` sets feature flag values (``{"new-checkout": True, "pricing": "test"}``); set payloads and
    per-user values with ``captured.flags.set(...)``. Flags not set return the caller's default.
    ``overrides`` are settings as for :func:`obs.init` (say, ``identify_pii="full"``); the API key and
    sinks are chosen here. Works whether or not obs was initialised or enabled before; while the block
    runs, ``obs.init()`` returns the capturing client instead of replacing it.
    """
    return _Capture(flags, overrides)
