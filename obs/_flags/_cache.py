"""The short-lived cache of flag answers (``OBS_FLAGS_CACHE_TTL``): one entry per check, the newest 10,000."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from ._result import Result

_MAX_CACHE = 10_000  # cached answers kept; the oldest go first
_monotonic = time.monotonic


class Cache:
    """Answers by cache key — ``(distinct_id, flag)``, plus the call's groups, properties and geoip choice
    when it has any — each kept for ``ttl`` seconds (0: nothing is kept). Read without a lock: a hot
    ``@feature_gate`` costs about a microsecond."""

    __slots__ = ("_entries", "_ttl")

    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        self._entries: dict[Any, tuple[float, Result]] = {}

    def get(self, ck: Any) -> Result | None:
        hit = self._entries.get(ck)
        return hit[1] if hit is not None and hit[0] > _monotonic() else None

    def store(self, ck: Any, result: Result) -> None:
        if self._ttl <= 0:
            return
        entries = self._entries
        if len(entries) >= _MAX_CACHE:
            with contextlib.suppress(KeyError, RuntimeError, StopIteration):  # another thread was first
                del entries[next(iter(entries))]
        entries[ck] = (_monotonic() + self._ttl, result)
