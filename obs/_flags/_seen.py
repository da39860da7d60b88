"""The flags evaluated so far in the current context, and the event properties they make.

Kept per context in ``obs._context.flags_seen`` (per distinct_id, forgotten when the ``obs.context`` level
they were evaluated in ends); `$exception` and ``@track`` events captured there carry them as
`$feature/<key>` and `$active_feature_flags`, and the browser snippet bootstraps posthog-js with them.
"""

from __future__ import annotations

from typing import Any

from .. import _context
from ._result import FlagValue


class Seen:
    """The flags evaluated for one distinct_id in a context, and the event properties they make."""

    __slots__ = ("distinct_id", "properties", "values")

    def __init__(self, distinct_id: str, values: dict[str, FlagValue]) -> None:
        self.distinct_id = distinct_id
        self.values = values
        props: dict[str, Any] = {f"$feature/{k}": v for k, v in values.items()}
        props["$active_feature_flags"] = sorted(k for k, v in values.items() if v)
        self.properties = props


def remember(distinct_id: str, key: str, value: FlagValue) -> None:
    seen: Seen | None = _context.flags_seen.get()
    if seen is None or seen.distinct_id != distinct_id:  # another user: start over, never mix users
        _context.flags_seen.set(Seen(distinct_id, {key: value}))
        return
    if same(seen.values.get(key), value):
        return
    _context.flags_seen.set(Seen(distinct_id, {**seen.values, key: value}))


def same(old: Any, value: FlagValue) -> bool:
    return old is value or (type(old) is type(value) and old == value)


def properties_for(distinct_id: Any) -> dict[str, Any] | None:
    """`$feature/<key>` and `$active_feature_flags` for an event of ``distinct_id`` (None: the context's)
    captured now, or None when no flag was evaluated for that user in this context. Do not mutate it."""
    seen: Seen | None = _context.flags_seen.get()
    if seen is None:
        return None
    if distinct_id is None:
        frame = _context.current.get()
        distinct_id = None if frame is None else frame.distinct_id
    return seen.properties if distinct_id is not None and str(distinct_id) == seen.distinct_id else None
