"""Counters for what happened to every event, so data loss is never silent.

The invariant (docs/reliability.md), true at every quiet moment and under every fault:

    captured = sent + spooled + dropped_* (all reasons) + in_flight

``captured`` is measured apart from the outcomes: events refused on the caller's thread plus events the
worker took from the queue plus those still queued. Losses are also noted per flush epoch, so that
``flush()`` can answer whether every event captured before it was delivered.
"""

from __future__ import annotations

import threading
from typing import Any

# Outcomes: each event captured ends in exactly one of these, or is still in flight.
OUTCOMES = (
    "sent",  # delivered by every sink (PostHog answered 2xx; a local sink stored it)
    "spooled",  # kept in the durable spool (OBS_SPOOL_DIR) for a later attempt, by this or the next process
    "dropped_queue_full",  # refused on the caller's thread: max_queue_size was reached
    "dropped_closed",  # captured after shutdown()
    "dropped_invalid",  # could never become an event (no name, unusable distinct_id, unencodable)
    "dropped_too_large",  # over the per-event size cap, or refused by PostHog with 413 on its own
    "dropped_rejected",  # refused by PostHog: a non-retryable 4xx, or (capture v1) a per-event `drop`
    "dropped_failed",  # given up on after the retry budget (count and time) ran out
    "dropped_sink_error",  # a sink's send() raised
    "dropped_sink_overflow",  # a slow sink's backlog was full
    "dropped_shutdown",  # still queued or in flight when shutdown()/exit ran out of time
)

FIELDS = (
    *OUTCOMES,
    "queued",  # built on the worker and handed to the sinks
    "properties_dropped",  # property values that could not be sent (cycles, NaN, …) and were left out
    "properties_coerced",  # values sent as str(), invalid UTF-8 replaced
    "sink_errors",  # exceptions raised by a sink's send() (batches)
    "retries",  # HTTP attempts repeated after a retryable failure
    "spool_writes",  # events written to the spool (a batch retried in place is written before its retry)
    "spool_sent",  # spooled events delivered later (by this process; maybe captured by another)
    "spool_rejected",  # spooled events PostHog refused when they were re-sent (removed from the spool)
    "spool_evicted",  # spooled events evicted, oldest first, to keep the spool under OBS_SPOOL_MAX_BYTES
    "spool_errors",  # spool failures (corrupt or unwritable): reported once, events then not kept
    "exceptions_rate_limited",  # identical exceptions held back by OBS_ERROR_RATE_LIMIT
    "flag_requests",  # flag evaluations asked of PostHog's /flags (not cached, not decided locally)
    "flag_errors",  # feature flag evaluations that failed and returned the caller's default
    "flag_local_failures",  # flag definitions not loaded in time or at all, or a local evaluation error
    "integration_errors",  # trouble inside a framework integration (logged; the request went on)
    # Internal, for `captured`: refused on the caller's thread, and taken from the queue by the worker.
    "refused",
    "drained",
)


class Stats:
    """Pipeline counters; read them with ``obs.get_client().stats()``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        for f in FIELDS:
            setattr(self, f, 0)
        self._lost: dict[int, int] = {}  # flush epoch → events of that epoch not delivered
        self._rejected: dict[str, int] = {}  # why PostHog refused events (`drop` details, `http_400`) → n

    def incr(self, field: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, field, getattr(self, field, 0) + n)

    def note_loss(self, epoch: int, n: int) -> None:
        """``n`` events captured in flush epoch ``epoch`` were not delivered."""
        with self._lock:
            self._lost[epoch] = self._lost.get(epoch, 0) + n

    def lost_between(self, after: int, upto: int) -> int:
        """Events not delivered among those of epochs ``after < epoch <= upto``."""
        with self._lock:
            return sum(n for e, n in self._lost.items() if after < e <= upto)

    def forget_losses(self, upto: int) -> None:
        """Losses of epochs ``<= upto`` were reported and no flush still waiting can ask about them."""
        with self._lock:
            for e in [e for e in self._lost if e <= upto]:
                del self._lost[e]

    def note_rejected(self, reason: str, n: int) -> None:
        """``n`` events PostHog refused (``dropped_rejected`` or ``spool_rejected``) for ``reason``."""
        with self._lock:
            self._rejected[reason] = self._rejected.get(reason, 0) + n

    def rejected_reasons(self) -> dict[str, int]:
        with self._lock:
            return dict(self._rejected)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {f: getattr(self, f) for f in FIELDS}
