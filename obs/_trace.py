"""The active trace and span: which request or LLM trace an event happened in.

obs's own traces and spans set :data:`current`; an active OpenTelemetry span is read as well, only when
the application already imported OpenTelemetry (obs never imports it).
"""

from __future__ import annotations

import sys
from contextvars import ContextVar
from typing import Any


class SpanIds:
    """The ids of one obs span; ``span_id == trace_id`` for the trace's root."""

    __slots__ = ("parent_id", "span_id", "trace_id")

    def __init__(self, trace_id: str, span_id: str, parent_id: str | None = None) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_id = parent_id


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
