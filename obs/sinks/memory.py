"""MemorySink: keeps wire events in a list, for tests and notebooks."""

from __future__ import annotations

from typing import Any

from ._base import Batch


class MemorySink:
    """Collects every wire event it receives in :attr:`events` (in delivery order)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.batches: list[Batch] = []
        self.closed = False

    async def send(self, batch: Batch) -> None:
        self.batches.append(batch)
        self.events.extend(batch)

    async def aclose(self) -> None:
        self.closed = True

    def named(self, name: str) -> list[dict[str, Any]]:
        """The events called ``name``."""
        return [e for e in self.events if e["event"] == name]

    def clear(self) -> None:
        self.events.clear()
        self.batches.clear()
