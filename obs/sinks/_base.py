"""The sink protocol: where wire events go. Several sinks run at once; one failing never affects another."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal, Protocol, runtime_checkable

Route = Literal["batch", "ai"]


class Batch(list[dict[str, Any]]):
    """A list of PostHog wire events (`event`, `distinct_id`, `properties`, `timestamp`, `uuid`).

    ``route`` is ``"ai"`` for events captured with :func:`obs.capture_ai`, ``"batch"`` otherwise; only
    sinks that care (PostHog's) look at it. The same batch object is handed to every sink: treat it as
    read-only.
    """

    route: Route = "batch"
    # The events' JSON (a JSON array, one encode for the whole batch) when the worker made it: sinks that
    # write JSON reuse it instead of encoding again. None for batches built elsewhere.
    encoded: bytes | None = None
    # Bytes no event of the batch is larger than when encoded (an upper bound), when the worker knows it:
    # the PostHog sink then need not encode events one by one to check its per-event cap.
    largest_event: int | None = None

    def __init__(self, events: list[dict[str, Any]] | None = None, route: Route = "batch") -> None:
        super().__init__(events or ())
        self.route = route


class EncodedBatch:
    """A batch as the worker hands it to the PostHog sink: its events' JSON only, without the dicts they
    were encoded from.

    A request waiting on a slow endpoint then holds about a third of the memory, and the worker's wire
    dicts die young instead of piling up for the garbage collector's full passes. The worker makes these
    only when every sink of the client says it takes them (``takes_encoded = True``, a private agreement
    with the built-in PostHog sink); other sinks always get a :class:`Batch`. ``decode()`` gives the events
    back, for what needs them one by one (the spool, a 413, capture v1).
    """

    __slots__ = ("chunks", "count", "largest_event", "route")

    def __init__(self, chunks: list[bytes], count: int, route: Route, largest_event: int) -> None:
        self.chunks = chunks  # comma-joined JSON of consecutive events, in capture order
        self.count = count
        self.route: Route = route
        self.largest_event: int | None = largest_event  # no event is larger (an upper bound: a chunk)

    def __len__(self) -> int:
        return self.count

    @property
    def encoded(self) -> bytes:
        """The events as one JSON array."""
        return b"[" + b",".join(self.chunks) + b"]"

    def decode(self) -> Batch:
        """The events as wire dicts (a new Batch, with ``encoded`` set)."""
        blob = self.encoded
        batch = Batch(json.loads(blob), self.route)
        batch.encoded = blob
        batch.largest_event = self.largest_event
        return batch


@runtime_checkable
class Sink(Protocol):
    """Anything with these two coroutines can receive events (pass instances in ``obs.init(sinks=[...])``).

    ``send`` is awaited on the obs worker loop, one batch at a time per sink, in capture order. It returns
    None when every event was delivered (or stored), or a mapping of reason → number of the batch's events
    it did not deliver (``{"dropped_too_large": 1}``; reasons are `obs.stats()` counter names). An
    exception it raises counts the whole batch as ``dropped_sink_error``, and the next batch still comes.
    ``aclose`` is awaited once at shutdown after the last batch.

    Optional: ``async run()``, started beside the sink's sends and cancelled at shutdown, for background
    work of its own; ``stash(batch) -> bool``, called when a shutdown runs out of time with the batch
    undelivered, to keep it somewhere durable (the PostHog sink's spool).
    """

    async def send(self, batch: Batch) -> Mapping[str, int] | None: ...

    async def aclose(self) -> None: ...
