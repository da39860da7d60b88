"""Traces and spans: ``obs.trace`` / ``obs.span``, and which trace an event happened in.

``obs.trace(name)`` and ``obs.span(name)`` work as decorators (sync, async, generators: a streaming
generator's span lasts until the stream ends) and as (async) context managers. They set :data:`current`,
so they nest through contextvars, and every generation, span or exception captured inside carries the
trace and parent ids. A span queues `$ai_span` when it ends; the trace queues `$ai_trace` with a
:class:`Summary` of what happened inside (calls, tokens, cost, tool calls, errors, latency). A trace
opened inside another trace is a span of it.

An active OpenTelemetry span is read as well, only when the application already imported OpenTelemetry
(obs never imports it).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any, TypeVar

from . import _ai_errors, _context, _current
from ._cancel import is_cancellation
from ._uuid import uuid7
from ._wrap import RERAISE, Probe, wrap

F = TypeVar("F", bound=Callable[..., Any])
_perf = time.perf_counter


class Summary:
    """What happened inside one trace, added to on the caller's side and priced on the worker."""

    __slots__ = ("errors", "generations", "input_tokens", "output_tokens", "priced", "tool_calls")

    def __init__(self) -> None:
        self.generations = self.tool_calls = self.errors = 0
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.priced: list[tuple[str, str, dict[str, Any]]] = []

    def add(self, gen: Any, usage: dict[str, Any], tool_calls: int, is_error: bool) -> None:
        self.generations += 1
        self.tool_calls += tool_calls
        self.errors += is_error
        if "input" in usage:
            self.input_tokens = (self.input_tokens or 0) + usage["input"]
        if "output" in usage:
            self.output_tokens = (self.output_tokens or 0) + usage["output"]
        if gen.provider and gen.model and usage:
            counts = {
                "input_tokens": usage.get("input"),
                "output_tokens": usage.get("output"),
                "cache_read_input_tokens": usage.get("cache_read"),
                "cache_creation_input_tokens": usage.get("cache_write"),
                "cache_reporting_exclusive": usage.get("exclusive"),
            }
            self.priced.append((gen.provider, gen.model, counts))

    def fields(self) -> dict[str, Any]:
        return {
            "generations": self.generations,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "tool_calls": self.tool_calls,
            "errors": self.errors,
            "priced": list(self.priced),  # a copy: a generation ending after the trace must not change it
        }


class SpanIds:
    """The ids of one obs span; ``span_id == trace_id`` for the trace's root."""

    __slots__ = ("distinct_id", "parent_id", "span_id", "summary", "trace_id")

    def __init__(
        self,
        trace_id: str,
        span_id: str,
        parent_id: str | None = None,
        summary: Summary | None = None,
        distinct_id: Any = None,
    ) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_id = parent_id
        self.summary = summary
        self.distinct_id = distinct_id


current: ContextVar[SpanIds | None] = ContextVar("obs_span", default=None)


def active_ids() -> dict[str, Any] | None:
    """Trace/span properties for an event captured now, or None outside any span.

    An obs span gives `$ai_trace_id`/`$ai_span_id` (linking an error to an LLM trace) and `$trace_id`/
    `$span_id`; otherwise an OpenTelemetry span gives `$trace_id`/`$span_id` as posthog-python sends them.
    """
    span = current.get()
    if span is not None:
        return {
            "$ai_trace_id": span.trace_id,
            "$ai_span_id": span.span_id,
            "$trace_id": span.trace_id,
            "$span_id": span.span_id,
        }
    otel = sys.modules.get("opentelemetry.trace")
    if otel is None:
        return None
    try:
        ctx = otel.get_current_span().get_span_context()
        if not ctx.is_valid:
            return None
        return {"$trace_id": f"{ctx.trace_id:032x}", "$span_id": f"{ctx.span_id:016x}"}
    except Exception:
        return None


class Span:
    """An open trace or span (what ``with obs.trace(...) as t`` gives): its ids, and :meth:`set`."""

    __slots__ = ("groups", "ids", "input", "is_trace", "name", "output", "properties", "t0", "token")

    def __init__(self, ids: SpanIds, name: str, is_trace: bool, input: Any, properties: Any) -> None:
        self.groups: Mapping[str, Any] | None = None
        self.ids = ids
        self.name = name
        self.is_trace = is_trace
        self.input = input
        self.output: Any = None
        self.properties: dict[str, Any] = dict(properties) if properties else {}
        self.t0 = _perf()
        self.token: Token[SpanIds | None] | None = None

    @property
    def trace_id(self) -> str:
        return self.ids.trace_id

    @property
    def span_id(self) -> str:
        return self.ids.span_id

    def set(self, *, output: Any = None, **properties: Any) -> None:
        """Record the output (sent only with ``POSTHOG_LLM_PAYLOADS=1``) and extra event properties."""
        if output is not None:
            self.output = output
        self.properties.update(properties)

    def end(self, error: BaseException | None) -> None:
        if self.token is not None:
            with contextlib.suppress(ValueError):  # ended in another context: nothing to restore there
                current.reset(self.token)
            self.token = None
        client = _current.get()
        if not client.enabled:
            return
        ids = self.ids
        extra: dict[str, Any] = {
            "trace_id": ids.trace_id,
            "span_id": ids.span_id,
            "parent_id": ids.parent_id,
            "span_name": self.name,
            "latency": _perf() - self.t0,
            "input_state": self.input,
            "output_state": self.output,
        }
        if is_cancellation(error):
            # Not an error (the caller went away), but said: the span ended before its work did.
            self.properties["cancelled"] = True
        elif error is not None and not isinstance(error, GeneratorExit):
            extra["is_error"] = True
            extra["error"] = _ai_errors.describe(error, payloads=client.settings.llm_payloads)  # type: ignore[union-attr]
            if ids.summary is not None:
                ids.summary.errors += 1
        if self.is_trace and ids.summary is not None:
            extra.update(ids.summary.fields())
        kind, event = ("ai_trace", "$ai_trace") if self.is_trace else ("ai_span", "$ai_span")
        route = "ai" if client.settings.ai_route else "batch"  # type: ignore[union-attr]
        props = self.properties or None
        client._put(kind, event, props, ids.distinct_id, None, None, self.groups, route, extra)


_CURRENT: Any = object()


def open_span(
    name: str,
    as_trace: bool,
    distinct_id: Any = None,
    input: Any = None,
    properties: Any = None,
    *,
    parent: SpanIds | None = _CURRENT,
    activate: bool = True,
    groups: Mapping[str, Any] | None = None,
) -> Span:
    """Open a span (or a trace, at the root); ``parent`` defaults to the current span. ``activate=False``
    (callback-driven integrations that end spans elsewhere) leaves :data:`current` untouched."""
    if parent is _CURRENT:
        parent = current.get()
    if parent is None:
        trace_id = uuid7()
        is_trace = as_trace
        ids = SpanIds(trace_id, trace_id, None, Summary() if as_trace else None, distinct_id)
    else:  # nested: a span of the enclosing trace, whether opened as a trace or a span
        is_trace = False
        did = distinct_id if distinct_id is not None else parent.distinct_id
        ids = SpanIds(parent.trace_id, uuid7(), parent.span_id, parent.summary, did)
    span = Span(ids, name, is_trace, input, properties)
    span.groups = groups
    if activate:
        span.token = current.set(ids)
    return span


class span:
    """A step inside a trace: ``with obs.span("retrieve") as s:`` or ``@obs.span("retrieve")``.

    Queues `$ai_span` (name, ids, latency, error) when it ends; one ended by cancellation is no error
    and has ``cancelled: true``. Opened outside any trace it starts a new
    trace id of its own but no `$ai_trace`. ``input`` and ``s.set(output=...)`` are sent as
    `$ai_input_state` / `$ai_output_state` only with ``POSTHOG_LLM_PAYLOADS=1``.
    """

    _as_trace = False

    def __init__(
        self,
        name: str,
        *,
        input: Any = None,
        distinct_id: Any = None,
        properties: Mapping[str, Any] | None = None,
    ) -> None:
        if not name or not isinstance(name, str):
            what = type(self).__name__
            raise ValueError(f"obs.{what}() needs a name, e.g. obs.{what}('chat')")
        self.name = name
        self._input = input
        self._distinct_id = distinct_id
        self._properties = properties
        self._open: list[Span] = []

    def __enter__(self) -> Span:
        s = open_span(self.name, self._as_trace, self._distinct_id, self._input, self._properties)
        self._open.append(s)
        return s

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        _context.pop_own(self._open, current.get(), lambda s: s.ids).end(e)

    async def __aenter__(self) -> Span:
        return self.__enter__()

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(et, e, tb)

    def __call__(self, fn: F) -> F:
        """As a decorator: each call (a generator: its whole iteration) is one span."""
        return wrap(fn, _SpanProbe(self))


class trace(span):
    """A whole traced operation: ``with obs.trace("chat") as t:`` or ``@obs.trace("chat")``.

    Generations, spans and exceptions inside carry its `$ai_trace_id`. When it ends it queues `$ai_trace`
    with a summary: `$ai_trace_generations`, `$ai_trace_input_tokens`, `$ai_trace_output_tokens`,
    `$ai_trace_cost_usd`, `$ai_trace_tool_calls`, `$ai_trace_errors` and `$ai_latency`. ``distinct_id``
    is used by every event inside that names none. Inside another trace it is a span of that trace.
    """

    _as_trace = True


class _SpanProbe(Probe):
    idle_when_disabled = True

    def __init__(self, spec: span) -> None:
        self.spec = spec

    def start(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        s = self.spec
        return open_span(s.name, s._as_trace, s._distinct_id, s._input, s._properties)

    def finish(self, state: Any, args: Any, kwargs: Any, result: Any, error: Any) -> Any:
        if state is not None:
            if error is None and result is not None and state.output is None:
                state.output = result
            state.end(error)
        return RERAISE
