"""MemorySink: keeps wire events in a list, for tests and notebooks."""

from __future__ import annotations

from ..display import Event, EventList, TraceTree
from ._base import Batch


class MemorySink:
    """Collects every wire event it receives in :attr:`events` (in delivery order).

    ``events`` is an :class:`obs.display.EventList` (a ``list`` of wire dicts that shows as a table in
    Jupyter); the sink itself shows the same table, and :meth:`trace` the LLM traces among its events.
    """

    def __init__(self) -> None:
        self.events: EventList = EventList()
        self.batches: list[Batch] = []
        self.closed = False

    async def send(self, batch: Batch) -> None:
        self.batches.append(batch)
        self.events.extend(Event(e) for e in batch)

    async def aclose(self) -> None:
        self.closed = True

    def named(self, name: str) -> EventList:
        """The events called ``name``."""
        return self.events.named(name)

    def trace(self, trace_id: str | None = None) -> TraceTree:
        """The LLM traces among the events (only ``trace_id``'s if given), as a tree."""
        return TraceTree(self.events, trace_id)

    def clear(self) -> None:
        self.events.clear()
        self.batches.clear()

    def __repr__(self) -> str:
        return f"MemorySink: {self.events.text()}"

    def _repr_html_(self) -> str:
        return f"<b>MemorySink</b>{self.events._repr_html_()}"
