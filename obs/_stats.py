"""Counters for everything the pipeline did not deliver, so data loss is never silent."""

from __future__ import annotations

import threading
from typing import Any


class Stats:
    """Pipeline counters; read them with :meth:`snapshot` (``obs.get_client().stats()``).

    ``queued`` counts events accepted by the hot path; the rest are bumped on the worker or, for drops at
    a full queue, under a lock by the producer.
    """

    FIELDS = (
        "queued",  # built on the worker and handed to the sinks
        "dropped_queue_full",  # refused by the hot path because max_queue_size was reached
        "dropped_closed",  # captured after shutdown()
        "dropped_invalid",  # could not be turned into an event (bad name, bad uuid/timestamp, …)
        "properties_dropped",  # property values that could not be sent (cycles, NaN, …) and were nulled
        "properties_coerced",  # property values sent as str()
        "sink_overflow",  # batches a slow sink could not take in time
        "sink_errors",  # exceptions raised by a sink's send()
        "sent",  # events a sink acknowledged (PostHog: 2xx)
        "retries",  # HTTP attempts repeated after a retryable failure
        "dropped_too_large",  # single events over the per-event size cap
        "dropped_rejected",  # events refused by PostHog with a non-retryable 4xx
        "dropped_failed",  # events given up on after max_retries
        "exceptions_rate_limited",  # identical exceptions held back by OBS_ERROR_RATE_LIMIT
        "flag_requests",  # flag evaluations asked of PostHog's /flags (not cached, not decided locally)
        "flag_errors",  # feature flag evaluations that failed and returned the caller's default
        "flag_local_failures",  # flag definitions not loaded in time or at all, or a local evaluation error
        "integration_errors",  # trouble inside a framework integration (logged; the request went on)
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        for f in self.FIELDS:
            setattr(self, f, 0)

    def incr(self, field: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, field, getattr(self, field) + n)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {f: getattr(self, f) for f in self.FIELDS}
