"""The background half of the pipeline: a daemon thread that owns an anyio event loop.

Data path: the hot path appends raw records to the client's deque (no loop, no lock, no I/O) → the drain
task pops them, builds typed events and their wire form (all serialisation happens here) → it fans each
batch out to one bounded anyio memory stream per sink → one task per sink awaits ``sink.send``. A slow or
failing sink only fills its own stream, and then loses batches (counted) rather than holding up the rest.

Flush and stop markers travel through the queue behind earlier events. When the drain task reaches one it
notes, per sink, the number of the last batch that sink's stream took; the marker is acknowledged once
every sink has finished with that batch. Markers never wait in a sink's stream, so a hung sink cannot stall
the drain loop, only the flushes that wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from typing import TYPE_CHECKING, Any

import anyio

# Loaded here, not lazily on the worker thread: a fork in the middle of that import breaks the child.
import anyio._backends._asyncio

from ._log import log, warn_every
from .sinks import Batch, Route, Sink

if TYPE_CHECKING:
    from ._client import Client


class Marker:
    """A flush (or, with ``stop``, shutdown) request travelling through the queue behind earlier events."""

    __slots__ = ("done", "failed", "stop", "targets")

    def __init__(self, stop: bool = False) -> None:
        self.stop = stop
        self.failed = False
        self.targets: list[int] = []  # per sink: the last batch it accepted before this marker was reached
        self.done = threading.Event()

    def wait(self, timeout: float | None) -> bool:
        """True once every sink handled everything queued before the marker; False on timeout or failure."""
        return self.done.wait(timeout) and not self.failed


class _SinkLane:
    """One sink, its bounded stream of (batch number, batch), and how far it has got."""

    __slots__ = ("accepted", "done", "name", "recv", "send", "sink")

    def __init__(self, sink: Sink, buffer: int) -> None:
        self.sink = sink
        self.name = type(sink).__name__
        self.send, self.recv = anyio.create_memory_object_stream[tuple[int, Batch]](buffer)
        self.accepted = 0  # number of the last batch its stream took (an overflowed one is skipped)
        self.done = 0  # number of the last batch its sink finished with (sent or failed)


class Worker:
    """Runs ``anyio.run`` on a daemon thread; started by the client, stopped by a stop marker."""

    def __init__(self, client: Client, sinks: list[Sink]) -> None:
        self._client = client
        self._sinks = sinks
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake_event: anyio.Event | None = None
        self._lanes: list[_SinkLane] = []
        self._seq = 0  # number of the last batch handed to the sinks
        self._waiting: list[Marker] = []  # markers reached by the drain, not yet acknowledged
        self.thread = threading.Thread(target=self._run, name="obs-worker", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def wake(self) -> None:
        """Called from any thread: drain now instead of at the next interval."""
        loop = self._loop
        if loop is None:
            return  # not started yet: the first drain happens as soon as it is
        with contextlib.suppress(RuntimeError):  # loop already closed: the worker has finished
            loop.call_soon_threadsafe(self._set_wake)

    def _set_wake(self) -> None:
        if self._wake_event is not None:
            self._wake_event.set()

    def _run(self) -> None:
        try:
            anyio.run(self._main, backend="asyncio")
        except BaseException:  # a bug here must not kill the host process quietly
            log.exception("obs: worker stopped unexpectedly")
        finally:
            # Nobody will acknowledge markers any more: release whoever waits in flush()/shutdown(), and
            # count what a producer slipped in behind the stop marker.
            lost = 0
            for item in [*self._waiting, *self._client._queue]:
                if type(item) is not Marker:
                    lost += 1
                elif not item.done.is_set():
                    item.failed = True
                    item.done.set()
            if lost:
                self._client._stats.incr("dropped_closed", lost)

    async def _main(self) -> None:
        self._wake_event = anyio.Event()
        self._loop = asyncio.get_running_loop()
        buffer = max(4, self._client.settings.max_queue_size // self._client.settings.flush_at)
        self._lanes = [_SinkLane(sink, buffer) for sink in self._sinks]
        async with anyio.create_task_group() as tg:
            for lane in self._lanes:
                tg.start_soon(self._sink_task, lane)
            try:
                await self._drain_loop()
            finally:
                for lane in self._lanes:
                    lane.send.close()  # each sink task finishes its backlog, then closes its sink

    async def _drain_loop(self) -> None:
        client = self._client
        interval = client.settings.flush_interval
        while True:
            # A fresh event before draining: a wake that arrives mid-drain makes the next wait return at once.
            self._wake_event = anyio.Event()
            client._wake_pending = False
            try:
                if await self._drain(client._queue):
                    return
            except Exception:  # a bug must not stop delivery of later events
                log.exception("obs: error while draining the queue")
            with anyio.move_on_after(interval):
                await self._wake_event.wait()

    async def _drain(self, q: deque[Any]) -> bool:
        """Empty the queue into the sinks; True when a stop marker was reached."""
        client = self._client
        flush_at = client.settings.flush_at
        pending: dict[Route, list[dict[str, Any]]] = {"batch": [], "ai": []}
        while q:
            rec = q.popleft()
            if type(rec) is Marker:
                self._emit_pending(pending)
                pending = {"batch": [], "ai": []}
                rec.targets = [lane.accepted for lane in self._lanes]
                self._waiting.append(rec)
                self._check_markers()
                if rec.stop:
                    return True
                continue
            wire = client._build(rec)
            if wire is None:
                continue
            route = rec[8]
            events = pending[route]
            events.append(wire)
            if len(events) >= flush_at:
                self._emit(Batch(events, route))
                pending[route] = []
                await anyio.lowlevel.checkpoint()  # let the sinks send while we keep building
        self._emit_pending(pending)
        return False

    def _emit_pending(self, pending: dict[Route, list[dict[str, Any]]]) -> None:
        for route, events in pending.items():
            if events:
                self._emit(Batch(events, route))

    def _emit(self, batch: Batch) -> None:
        self._client._stats.incr("queued", len(batch))
        self._seq += 1
        for lane in self._lanes:
            try:
                lane.send.send_nowait((self._seq, batch))
                lane.accepted = self._seq
            except anyio.WouldBlock:
                self._client._stats.incr("sink_overflow", len(batch))
                warn_every(
                    f"overflow-{id(lane.sink)}",
                    10,
                    "obs: %s is falling behind; dropped %d event(s) for it",
                    lane.name,
                    len(batch),
                )

    def _check_markers(self) -> None:
        if self._waiting:
            lanes = self._lanes
            ready = [
                m for m in self._waiting if all(ln.done >= t for ln, t in zip(lanes, m.targets, strict=True))
            ]
            for m in ready:
                self._waiting.remove(m)
                m.done.set()

    async def _sink_task(self, lane: _SinkLane) -> None:
        async with lane.recv:
            async for seq, batch in lane.recv:
                try:
                    await lane.sink.send(batch)
                except Exception as e:
                    self._client._stats.incr("sink_errors")
                    warn_every(
                        f"sink-{id(lane.sink)}", 10, "obs: %s failed to send a batch: %r", lane.name, e
                    )
                finally:
                    lane.done = seq
                self._check_markers()
        try:
            await lane.sink.aclose()
        except Exception as e:
            log.warning("obs: %s failed to close: %r", lane.name, e)
