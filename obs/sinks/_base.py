"""The sink protocol: where wire events go. Several sinks run at once; one failing never affects another."""

from __future__ import annotations

from typing import Any, Literal, Protocol, runtime_checkable

Route = Literal["batch", "ai"]


class Batch(list[dict[str, Any]]):
    """A list of PostHog wire events (`event`, `distinct_id`, `properties`, `timestamp`, `uuid`).

    ``route`` is ``"ai"`` for events captured with :func:`obs.capture_ai`, ``"batch"`` otherwise; only
    sinks that care (PostHog's) look at it. The same batch object is handed to every sink: treat it as
    read-only.
    """

    route: Route = "batch"

    def __init__(self, events: list[dict[str, Any]] | None = None, route: Route = "batch") -> None:
        super().__init__(events or ())
        self.route = route


@runtime_checkable
class Sink(Protocol):
    """Anything with these two coroutines can receive events (pass instances in ``obs.init(sinks=[...])``).

    ``send`` is awaited on the obs worker loop, one batch at a time per sink, in capture order; an
    exception it raises is logged and counted, and the next batch still comes. ``aclose`` is awaited
    once at shutdown after the last batch.
    """

    async def send(self, batch: Batch) -> None: ...

    async def aclose(self) -> None: ...
