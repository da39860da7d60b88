"""The background half of the pipeline: a daemon thread that owns an anyio event loop.

Data path: the hot path appends raw records to the client's deque (no loop, no lock, no I/O) → the drain
task pops them, builds typed events and their wire form (all serialisation happens here) → it fans each
batch out to one anyio memory stream per sink → one task per sink awaits ``sink.send``. A slow or failing
sink only fills its own stream. Flush/stop markers travel the same path, so acknowledging one means every
event queued before it has been handled by every sink.
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
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._log import log, warn_every
from .sinks import Batch, Sink

if TYPE_CHECKING:
    from ._client import Client


class Marker:
    """A flush (or, with ``stop``, shutdown) request travelling through the queue behind earlier events."""

    __slots__ = ("_lock", "_pending", "done", "failed", "stop")

    def __init__(self, stop: bool = False) -> None:
        self.stop = stop
        self.failed = False
        self.done = threading.Event()
        self._pending = 0
        self._lock = threading.Lock()

    def expect(self, n: int) -> None:
        self._pending = n
        if n == 0:
            self.done.set()

    def wait(self, timeout: float | None) -> bool:
        """True once every sink handled everything queued before the marker; False on timeout or failure."""
        return self.done.wait(timeout) and not self.failed

    def ack(self) -> None:
        with self._lock:
            self._pending -= 1
            if self._pending <= 0:
                self.done.set()


Item = Batch | Marker


class Worker:
    """Runs ``anyio.run`` on a daemon thread; started by the client, stopped by a stop marker."""

    def __init__(self, client: Client, sinks: list[Sink]) -> None:
        self._client = client
        self._sinks = sinks
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake_event: anyio.Event | None = None
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
            # Nobody will acknowledge markers any more: release whoever waits in flush()/shutdown().
            for item in list(self._client._queue):
                if type(item) is Marker:
                    item.failed = True
                    item.done.set()

    async def _main(self) -> None:
        self._wake_event = anyio.Event()
        self._loop = asyncio.get_running_loop()
        buffer = max(4, self._client.settings.max_queue_size // self._client.settings.flush_at)
        streams: list[tuple[Sink, MemoryObjectSendStream[Item]]] = []
        async with anyio.create_task_group() as tg:
            for sink in self._sinks:
                send, recv = anyio.create_memory_object_stream[Item](buffer)
                tg.start_soon(self._sink_task, sink, recv)
                streams.append((sink, send))
            try:
                await self._drain_loop(streams)
            finally:
                for _, send in streams:
                    send.close()

    async def _drain_loop(self, streams: list[tuple[Sink, MemoryObjectSendStream[Item]]]) -> None:
        client = self._client
        interval = client.settings.flush_interval
        while True:
            # A fresh event before draining: a wake that arrives mid-drain makes the next wait return at once.
            self._wake_event = anyio.Event()
            client._wake_pending = False
            try:
                if await self._drain(client._queue, streams):
                    return
            except Exception:  # a bug must not stop delivery of later events
                log.exception("obs: error while draining the queue")
            with anyio.move_on_after(interval):
                await self._wake_event.wait()

    async def _drain(self, q: deque[Any], streams: list[tuple[Sink, MemoryObjectSendStream[Item]]]) -> bool:
        """Empty the queue into the sinks; True when a stop marker was reached."""
        client = self._client
        flush_at = client.settings.flush_at
        pending: dict[str, list[dict[str, Any]]] = {"batch": [], "ai": []}
        while q:
            rec = q.popleft()
            if type(rec) is Marker:
                for route, events in pending.items():
                    if events:
                        self._emit(streams, Batch(events, route))  # type: ignore[arg-type]
                pending = {"batch": [], "ai": []}
                rec.expect(len(streams))
                for _, send in streams:
                    await send.send(rec)
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
                self._emit(streams, Batch(events, route))
                pending[route] = []
                await anyio.lowlevel.checkpoint()  # let the sinks send while we keep building
        for route, events in pending.items():
            if events:
                self._emit(streams, Batch(events, route))  # type: ignore[arg-type]
        return False

    def _emit(self, streams: list[tuple[Sink, MemoryObjectSendStream[Item]]], batch: Batch) -> None:
        self._client._stats.incr("queued", len(batch))
        for sink, send in streams:
            try:
                send.send_nowait(batch)
            except anyio.WouldBlock:
                self._client._stats.incr("sink_overflow", len(batch))
                warn_every(
                    f"overflow-{id(sink)}",
                    10,
                    "obs: %s is falling behind; dropped %d event(s) for it",
                    type(sink).__name__,
                    len(batch),
                )

    async def _sink_task(self, sink: Sink, recv: MemoryObjectReceiveStream[Item]) -> None:
        name = type(sink).__name__
        async with recv:
            async for item in recv:
                if type(item) is Marker:
                    item.ack()
                    continue
                try:
                    await sink.send(item)  # type: ignore[arg-type]
                except Exception as e:
                    self._client._stats.incr("sink_errors")
                    warn_every(f"sink-{id(sink)}", 10, "obs: %s failed to send a batch: %r", name, e)
        try:
            await sink.aclose()
        except Exception as e:
            log.warning("obs: %s failed to close: %r", name, e)
