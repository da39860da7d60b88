"""The context frame: who and what an event belongs to, held in a contextvar (the base under `obs.context`).

The client reads it on the hot path (one ``ContextVar.get``); `obs.context` (obs/_context.py) pushes and
pops frames. A frame is immutable, so the snapshot stays valid while the event waits in the queue.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any


class Frame:
    """One level of ``obs.context``: already merged with every enclosing level."""

    __slots__ = ("distinct_id", "properties", "session_id")

    def __init__(self, distinct_id: str | None, session_id: str | None, properties: Mapping[str, Any]):
        self.distinct_id = distinct_id
        self.session_id = session_id
        self.properties = properties

    def __repr__(self) -> str:
        props = dict(self.properties)
        return (
            f"Frame(distinct_id={self.distinct_id!r}, session_id={self.session_id!r}, properties={props!r})"
        )


current: ContextVar[Frame | None] = ContextVar("obs_context", default=None)
# The feature flags evaluated so far (kept by obs._flags). Each level restores it when it ends, so flags
# evaluated inside a level are not carried by events captured after it.
flags_seen: ContextVar[Any] = ContextVar("obs_flags_seen", default=None)
