"""Assert what your code emits: ``obs.testing.capture_events()`` collects events instead of sending them.

    with obs.testing.capture_events() as captured:
        signup("ada@example.com")
    assert captured.named("signed_up")[0]["properties"]["plan"] == "pro"

Inside the block the module-level functions (``obs.capture`` and friends, and everything built on them)
go to an in-memory sink through the real pipeline — the same worker, typed events and wire form — and
nothing leaves the process: feature flag checks return the caller's default. The client that was active
before is restored afterwards. In Jupyter the captured events show as a table, ``captured.trace()`` as
a tree of the LLM traces (see :mod:`obs.display`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from . import _api

if TYPE_CHECKING:
    from .display import EventList, TraceTree


class CapturedEvents:
    """The events captured inside :func:`capture_events`, as PostHog wire dicts, in capture order."""

    def __init__(self, client: Any, sink: Any) -> None:
        self.client = client
        self._sink = sink

    @property
    def events(self) -> EventList:
        """Everything captured so far (waits for the worker to hand it over)."""
        from .display import EventList

        self.client.flush(10)
        return EventList(self._sink.events)

    def named(self, name: str) -> EventList:
        """The events called ``name``."""
        return self.events.named(name)

    def trace(self, trace_id: str | None = None) -> TraceTree:
        """The LLM traces among the events (only ``trace_id``'s if given), as a tree."""
        return self.events.trace(trace_id)

    def __len__(self) -> int:
        return len(self.events)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.events)

    def __repr__(self) -> str:
        return f"CapturedEvents: {self.events.text()}"

    def _repr_html_(self) -> str:
        return f"<b>CapturedEvents</b>{self.events._repr_html_()}"


@contextmanager
def capture_events(**overrides: Any) -> Iterator[CapturedEvents]:
    """Collect every event captured inside the block instead of sending it.

    ``overrides`` are settings as for :func:`obs.init` (say, ``identify_pii="full"``); the API key and
    sinks are chosen here. Works whether or not obs was initialised or enabled before.
    """
    from ._client import Client
    from ._config import load_settings
    from .sinks import MemorySink

    sink = MemorySink()
    settings = load_settings(**{**overrides, "api_key": "phc_obs_testing", "sinks": [sink]})
    client = Client(settings)
    client.flags.close()  # nothing leaves the process: feature flags return the caller's default
    with _api._lock:
        previous = (_api._client, _api._overrides)
        _api._client, _api._overrides = client, None
    try:
        yield CapturedEvents(client, sink)
    finally:
        client.shutdown(10)
        with _api._lock:
            if _api._client is client:
                _api._client, _api._overrides = previous
