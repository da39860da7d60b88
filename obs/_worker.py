"""The background half of the pipeline: a daemon thread that owns an anyio event loop.

Data path: the hot path appends raw records to the client's deque (no loop, no lock, no I/O) → the drain
task pops them, builds typed events and their wire form, and encodes each batch once (all serialisation
happens here) → it fans each batch out to one bounded anyio memory stream per sink → one task per sink
awaits ``sink.send``. A slow or failing sink only fills its own stream, and then loses batches (counted)
rather than holding up the rest.

Accounting: every event popped from the queue ends in exactly one counter. It is dropped while building
(``dropped_invalid``), or it travels in a batch; a batch is settled once every sink is done with it, and
its events are then counted ``sent``, or by the reason given by the sink that delivered fewest of them
(``dropped_*``, ``spooled``). Each loss is also noted against the flush epoch it belongs to, which is how
``flush()`` knows whether everything captured before it was delivered.

Flush and stop markers travel through the queue behind earlier events. When the drain task reaches one it
notes, per sink, the number of the last batch that sink's stream took; the marker is acknowledged once
every sink has finished with that batch. Markers never wait in a sink's stream, so a hung sink cannot stall
the drain loop, only the flushes that wait for it. A shutdown that runs out of time aborts the loop; what
was still queued or in flight is then handed to a sink that can keep it (the spool) or counted
``dropped_shutdown``.

Fork safety: the worker holds its gate whenever it runs Python code and lets go of it only while its loop
waits in ``select()``; a DNS lookup in its executor holds a second lock. A before-fork hook takes both, so
``os.fork()`` never copies the process while the worker is halfway through an import, a log call, HTTP
bookkeeping or the C library's ``getaddrinfo``, whose locks the child would inherit held (its fresh worker
then hung on them).

Exit: the loop's default executor (DNS lookups) runs its work on the calling thread once the interpreter
refuses new threads, so the flush at interpreter exit can still resolve a hostname.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import operator
import os
import selectors
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures.thread import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, cast

import anyio

# Loaded here, not lazily on the worker thread: a fork in the middle of that import breaks the child.
import anyio._backends._asyncio
from pydantic_core import to_json

from ._log import log, warn_every, warn_tally
from ._serialize import valid_utf8
from .sinks import Batch, Route, Sink
from .sinks._base import EncodedBatch

if TYPE_CHECKING:
    from ._client import Client

Outcome = dict[str, int]  # reason → number of a batch's events a sink did not deliver
_ROUTE = operator.itemgetter(8)  # a record's route


class Marker:
    """A flush (or, with ``stop``, shutdown) request travelling through the queue behind earlier events."""

    __slots__ = ("done", "epoch", "failed", "since", "stop", "targets")

    def __init__(self, epoch: int = 0, since: int = -1, stop: bool = False) -> None:
        self.stop = stop
        self.epoch = epoch  # events captured before this marker belong to epochs <= epoch
        self.since = since  # losses in epochs <= since were already reported by an earlier flush
        self.failed = False
        self.targets: list[int] = []  # per sink: the last batch it accepted before this marker was reached
        self.done = threading.Event()

    def wait(self, timeout: float | None) -> bool:
        """True once every sink handled everything queued before the marker; False on timeout or failure."""
        return self.done.wait(timeout) and not self.failed


class _SinkLane:
    """One sink, its bounded stream of (batch number, batch), and how far it has got."""

    __slots__ = ("accepted", "buffer", "done", "name", "recv", "send", "sink")

    def __init__(self, sink: Sink, buffer: int) -> None:
        self.sink = sink
        self.name = type(sink).__name__
        self.buffer = buffer
        self.send, self.recv = anyio.create_memory_object_stream[tuple[int, Batch | EncodedBatch]](buffer)
        self.accepted = 0  # number of the last batch its stream took (an overflowed one is skipped)
        self.done = 0  # number of the last batch its sink finished with (sent or failed)


class _Building:
    """One route's batch being built: its events, and the JSON of the first ``count`` of them, in chunks."""

    __slots__ = ("count", "events", "largest", "parts", "size", "start")

    def __init__(self) -> None:
        # records; from `count` back, their wire dicts (None when only their JSON travels on)
        self.events: list[Any] = []
        self.parts: list[bytes] = []  # one per chunk: its events' JSON, comma-joined, without brackets
        self.count = 0  # events encoded so far
        self.size = 0  # bytes of the encoded events, with the commas between them
        self.largest = 0  # bytes of the largest chunk: no event in the batch is larger
        self.start = 0  # the first event of the last chunk

    def split_last(self) -> tuple[_Building, _Building]:
        """(everything but the last chunk, a new batch that starts with it)."""
        head, rest = _Building(), _Building()
        cut = self.start
        head.events, rest.events = self.events[:cut], self.events[cut:]
        head.parts, rest.parts = self.parts[:-1], self.parts[-1:]
        head.count, rest.count = cut, len(rest.events)
        rest.size = rest.largest = len(rest.parts[0])
        head.size = self.size - rest.size - 1
        head.largest = max(map(len, head.parts), default=0)
        return head, rest


class _InFlight:
    """A batch handed to the sinks and not yet settled by all of them."""

    __slots__ = ("batch", "epoch", "remaining", "worst")

    def __init__(self, batch: Batch | EncodedBatch, epoch: int, remaining: int) -> None:
        self.batch = batch
        self.epoch = epoch
        self.remaining = remaining  # sinks still working on it
        self.worst: Outcome = {}  # the outcome of the sink that delivered fewest of its events


# ------------------------------------------------------------------------------------------- fork gate

_gated: weakref.WeakSet[Worker] = weakref.WeakSet()
_held_for_fork: list[threading.Lock] = []
LANE_BATCHES = 16  # batches a sink's backlog holds
ENCODED_LANE_BATCHES = 4  # the same when every sink takes batches as JSON only (PostHog's alone)
ENVELOPE_ROOM = 4096  # bytes of a request body besides its events (api_key, sent_at, …)
FORK_WAIT = 2.0  # seconds os.fork() waits for a busy worker to reach its next select() before going ahead


def _before_fork() -> None:
    deadline = time.monotonic() + FORK_WAIT
    for w in list(_gated):
        if not w.thread.is_alive():
            continue
        for lock in (w._gate, w._lookups):
            if lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
                _held_for_fork.append(lock)


def _after_fork_in_parent() -> None:
    while _held_for_fork:
        _held_for_fork.pop().release()


def _after_fork_in_child() -> None:
    # The gates held belong to worker threads that did not come along (the client starts fresh ones).
    _held_for_fork.clear()
    for w in list(_gated):
        if not w.thread.is_alive():
            _gated.discard(w)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
    )


def _gated_selector(gate: threading.Lock) -> selectors.BaseSelector:
    class GatedSelector(selectors.DefaultSelector):
        def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
            gate.release()
            try:
                return super().select(timeout)
            finally:
                gate.acquire()

    return GatedSelector()


class _ExitSafeExecutor(ThreadPoolExecutor):
    """The worker loop's default executor (asyncio runs DNS lookups in it).

    Each job runs holding ``lookups``, which a fork takes too: a child forked while the C library's
    ``getaddrinfo`` held its own locks would hang in its first lookup. Once the interpreter is exiting the
    pool refuses new work ("cannot schedule new futures after interpreter shutdown"); the lookup then runs
    on the calling thread, which at that point only has the exit flush to do.
    """

    def __init__(self, lookups: threading.Lock) -> None:
        super().__init__(max_workers=2, thread_name_prefix="obs-dns")
        self._lookups = lookups

    def _locked(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        with self._lookups:
            return fn(*args, **kwargs)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        try:
            return super().submit(self._locked, fn, *args, **kwargs)
        except RuntimeError:
            future: concurrent.futures.Future[Any] = concurrent.futures.Future()
            try:
                future.set_result(self._locked(fn, *args, **kwargs))
            except BaseException as e:
                future.set_exception(e)
            return future


# ------------------------------------------------------------------------------------------- worker


class Worker:
    """Runs ``anyio.run`` on a daemon thread; started by the client, stopped by a stop marker or `abort`."""

    def __init__(self, client: Client, sinks: list[Sink]) -> None:
        self._client = client
        self._sinks = sinks
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake_event: anyio.Event | None = None
        self._cancel: Callable[[], None] | None = None
        self._aborted = False
        self._finished = False  # _main returned: errors from the loop's own teardown are not ours
        self._lanes: list[_SinkLane] = []
        self._seq = 0  # number of the last batch handed to the sinks
        self._epoch = 0  # flush epoch of the records being drained (one more per marker reached)
        self._inflight: dict[int, _InFlight] = {}
        self._building: dict[Route, _Building] = {"batch": _Building(), "ai": _Building()}
        # Every sink takes batches as JSON only (the default: PostHog's sink alone): the wire dicts are let
        # go as soon as each chunk is encoded, so batches waiting on the network hold only bytes.
        self._encoded_only = bool(sinks) and all(getattr(s, "takes_encoded", False) is True for s in sinks)
        self._held: list[tuple[Route, _Building]] = []  # full batches waiting for room in the sinks' backlogs
        self._target = 0  # bytes of encoded events at which a batch is handed on (set in _main)
        self._max_events = 0  # events at which a batch is handed on whatever its size (memory bound)
        self._waiting: list[Marker] = []  # markers reached by the drain, not yet acknowledged
        self._room: anyio.Event | None = None  # set by a sink task when it takes a batch off its backlog
        self.stash_time = 0.0  # after an abort: seconds to spend keeping stranded events in the spool
        self._gate = threading.Lock()
        self._lookups = threading.Lock()  # held by a DNS lookup in progress (see _ExitSafeExecutor)
        self.thread = threading.Thread(target=self._run, name="obs-worker", daemon=True)

    def start(self) -> None:
        _gated.add(self)
        self.thread.start()

    def wake(self) -> None:
        """Called from any thread: drain now instead of at the next interval."""
        loop = self._loop
        if loop is None:
            return  # not started yet: the first drain happens as soon as it is
        with contextlib.suppress(RuntimeError):  # loop already closed: the worker has finished
            loop.call_soon_threadsafe(self._set_wake)

    def abort(self, stash_time: float = 0.0) -> None:
        """Called from any thread when a shutdown ran out of time: stop sending, settle what is left."""
        self.stash_time = stash_time
        self._aborted = True
        loop, cancel = self._loop, self._cancel
        if loop is not None and cancel is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(cancel)

    def in_flight(self) -> int:
        """Events popped from the queue and not yet settled (being built, or in a batch at a sink)."""
        building = sum(len(b.events) for b in [*self._building.values(), *(b for _, b in self._held)])
        return building + sum(len(f.batch) for f in list(self._inflight.values()))

    def _set_wake(self) -> None:
        if self._wake_event is not None:
            self._wake_event.set()

    def _new_loop(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.SelectorEventLoop(_gated_selector(self._gate))
        loop.set_default_executor(_ExitSafeExecutor(self._lookups))
        return loop

    def _run(self) -> None:
        self._gate.acquire()
        try:
            anyio.run(self._main, backend="asyncio", backend_options={"loop_factory": self._new_loop})
        except BaseException:  # a bug here must not kill the host process quietly
            if not self._finished:
                log.exception("obs: worker stopped unexpectedly")
        finally:
            try:
                self._settle_leftovers()
            finally:
                self._gate.release()
                _gated.discard(self)

    async def _main(self) -> None:
        self._wake_event = anyio.Event()
        self._loop = asyncio.get_running_loop()
        settings = self._client.settings
        # A short backlog per sink: when every sink is behind, the drain waits and the queue (bounded by
        # max_queue_size) takes the strain, so memory stays bounded by it; a sink behind the others loses
        # batches (counted) instead of holding them up. The PostHog sink alone (batches of JSON only)
        # needs no more than a few ready while one is sent.
        lane_batches = ENCODED_LANE_BATCHES if self._encoded_only else LANE_BATCHES
        buffer = max(4, min(lane_batches, settings.max_queue_size // settings.flush_at))
        self._lanes = [_SinkLane(sink, buffer) for sink in self._sinks]
        # With a backlog, a batch grows up to max_batch_bytes (one request: HTTP costs CPU per request, not
        # per event: ~1 ms of httpx's) less room for the request's envelope; flush_at only wakes the worker
        # early. Its events are capped too, so that what the sinks' backlogs hold when PostHog stalls
        # (buffer + 2 batches: the backlog, the one being sent, the one waiting for room) stays within
        # max_queue_size / 4 events as dicts, or / 2 as JSON only (~260 B each, below a queued record's).
        limit = settings.max_batch_bytes
        self._target = max(limit // 2, limit - ENVELOPE_ROOM)
        # A whole number of chunks (the cap is checked as each chunk of flush_at is encoded).
        flush_at = settings.flush_at
        share = 2 if self._encoded_only else 4
        self._max_events = max(
            flush_at, settings.max_queue_size // (share * (buffer + 2)) // flush_at * flush_at
        )
        async with anyio.create_task_group() as tg:  # an abort cancels everything under it
            self._cancel = tg.cancel_scope.cancel
            if self._aborted:
                tg.cancel_scope.cancel()
            for sink in self._sinks:
                run = getattr(sink, "run", None)  # a sink's own background work (the spool's re-sender)
                if callable(run):
                    tg.start_soon(self._background, sink, run)
            async with anyio.create_task_group() as lanes:  # ends when every sink finished its backlog
                for lane in self._lanes:
                    lanes.start_soon(self._sink_task, lane)
                try:
                    await self._drain_loop()
                finally:
                    for lane in self._lanes:
                        lane.send.close()
            tg.cancel_scope.cancel()  # background tasks end with the sinks
        self._settle_leftovers()  # after an abort: while the sinks can still keep what is left
        for lane in self._lanes:
            try:
                await lane.sink.aclose()
            except Exception as e:
                log.warning("obs: %s failed to close: %r", lane.name, e)
        self._finished = True

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
            except anyio.get_cancelled_exc_class():
                raise
            except Exception:  # a bug must not stop delivery of later events
                log.exception("obs: error while draining the queue")
            with anyio.move_on_after(interval):
                await self._wake_event.wait()

    async def _drain(self, q: deque[Any]) -> bool:
        """Empty the queue into the sinks; True when a stop marker was reached.

        Records are taken a chunk at a time (up to the next multiple of flush_at in the batch being built):
        a chunk of plain ``capture`` records, the common case, goes into the batch in one step; one with a
        marker or an ``capture_ai`` record in it is taken record by record.
        """
        client = self._client
        flush_at = client.settings.flush_at
        stats = client._stats
        building = self._building
        pop = q.popleft
        drained = 0
        while q:
            b = building["batch"]
            recs = [pop() for _ in range(min(len(q), max(1, flush_at - (len(b.events) - b.count))))]
            if Marker not in map(type, recs) and "ai" not in map(_ROUTE, recs):
                drained = await self._take("batch", recs, drained)
                continue
            for i, rec in enumerate(recs):
                if type(rec) is not Marker:
                    drained = await self._take(rec[8], [rec], drained)
                    continue
                stats.incr("drained", drained)
                drained = 0
                await self._emit_pending()
                rec.targets = [lane.accepted for lane in self._lanes]
                self._waiting.append(rec)
                self._epoch = rec.epoch + 1
                self._check_markers()
                if rec.stop:
                    q.extendleft(reversed(recs[i + 1 :]))  # behind the stop: left for `_settle_leftovers`
                    return True
        stats.incr("drained", drained)
        await self._emit_pending()
        return False

    async def _take(self, route: Route, recs: list[tuple[Any, ...]], drained: int) -> int:
        """Add records to the batch being built for ``route``; ``drained`` counts those not yet in the
        ``drained`` counter (returned: the same, or 0 once a full batch was handed on and counted)."""
        drained += len(recs)
        b = self._building[route]
        events = b.events
        events += recs
        if len(events) - b.count >= self._client.settings.flush_at:
            # Built and encoded a chunk at a time (one encode per flush_at events), so the batch knows
            # its size as it grows; a chunk that takes it past the target starts the next batch.
            before = b.size
            self._encode_tail(b)
            target = self._target
            if b.size >= target or len(b.events) >= self._max_events:
                if before and b.size > target:
                    b, self._building[route] = b.split_last()
                else:
                    self._building[route] = _Building()
                self._client._stats.incr("drained", drained)
                drained = 0
                await self._emit_when_room(b, route)
                await anyio.lowlevel.checkpoint()  # let the sinks send while we keep building
        return drained

    async def _emit_pending(self) -> None:
        for route in ("batch", "ai"):
            b = self._building[route]
            if b.events:
                self._building[route] = _Building()
                await self._emit_when_room(b, route)

    async def _emit_when_room(self, b: _Building, route: Route) -> None:
        """Hand a batch to the sinks, first waiting while every one of them has a full backlog."""
        while self._lanes and all(
            ln.send.statistics().current_buffer_used >= ln.buffer for ln in self._lanes
        ):
            self._room = anyio.Event()
            self._held.append((route, b))  # in flight while we wait (an abort settles it from there)
            await self._room.wait()
            self._held.remove((route, b))
        self._emit(b, route)

    def _emit(self, b: _Building, route: Route) -> None:
        batch = self._finished_batch(b, route)
        if not batch:
            return
        stats = self._client._stats
        stats.incr("queued", len(batch))
        self._seq += 1
        entry = _InFlight(batch, self._epoch, len(self._lanes))
        self._inflight[self._seq] = entry
        for lane in self._lanes:
            try:
                lane.send.send_nowait((self._seq, batch))
                lane.accepted = self._seq
            except anyio.WouldBlock:
                warn_tally(
                    f"overflow-{id(lane.sink)}",
                    10,
                    len(batch),
                    "obs: %s is falling behind; dropped %d event(s) for it since the last warning",
                    lane.name,
                )
                self._settle(self._seq, {"dropped_sink_overflow": len(batch)})
        if not self._lanes:
            self._settle(self._seq, {})

    def _finished_batch(self, b: _Building, route: Route) -> Batch | EncodedBatch:
        """The batch with its JSON encoding (one encode per chunk; see `_encode_tail`): its JSON alone when
        every sink takes that."""
        if b.count < len(b.events):
            self._encode_tail(b)
        if self._encoded_only:
            return EncodedBatch(b.parts, b.count, route, b.largest)
        batch = Batch(b.events, route)
        batch.encoded = b"[" + b",".join(b.parts) + b"]"
        batch.largest_event = b.largest
        return batch

    def _encode_tail(self, b: _Building) -> None:
        """Build the records not built yet and encode them as one chunk; an event that cannot be built is
        dropped (counted by the client), one that cannot be encoded is repaired or dropped alone."""
        events, dropped = self._client._build_many(b.events[b.count :])
        if dropped:
            self._client._stats.note_loss(self._epoch, dropped)
        try:
            raw = to_json(events, inf_nan_mode="null")[1:-1]
        except Exception:
            events, parts = self._encoded_one_by_one(events)
            raw = b",".join(parts)
        # Only their JSON travels on when every sink takes that: the dicts are let go at once.
        b.events[b.count :] = [None] * len(events) if self._encoded_only else events
        b.start = b.count
        b.count = len(b.events)
        if raw:
            b.parts.append(raw)
            b.size += len(raw) + 1
            b.largest = max(b.largest, len(raw))

    def _encoded_one_by_one(self, events: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[bytes]]:
        kept: list[dict[str, Any]] = []
        parts: list[bytes] = []
        for e in events:
            try:
                raw = to_json(e, inf_nan_mode="null")
            except Exception:
                e = valid_utf8(e)  # lone surrogates (os.fsdecode of undecodable names) become U+FFFD
                try:
                    raw = to_json(e, inf_nan_mode="null")
                except Exception as err:
                    self._client._stats.incr("dropped_invalid")
                    self._client._stats.note_loss(self._epoch, 1)
                    warn_every(
                        f"encode-{type(err).__name__}",
                        10,
                        "obs: dropped event %r that could not be encoded: %s",
                        e.get("event"),
                        err,
                    )
                    continue
                self._client._stats.incr("properties_coerced")
                warn_every("encode-utf8", 60, "obs: event %r: invalid UTF-8 sent as U+FFFD", e.get("event"))
            kept.append(e)
            parts.append(raw)
        return kept, parts

    def _settle(self, seq: int, outcome: Outcome) -> None:
        """One sink is done with batch ``seq``; once all are, count its events."""
        entry = self._inflight.get(seq)
        if entry is None:
            return
        if sum(outcome.values()) > sum(entry.worst.values()):
            entry.worst = outcome
        entry.remaining -= 1
        if entry.remaining <= 0:
            del self._inflight[seq]
            self._account(entry.worst, len(entry.batch), entry.epoch)

    def _account(self, outcome: Outcome, size: int, epoch: int) -> None:
        stats = self._client._stats
        lost = 0
        for reason, n in outcome.items():
            if n > 0:
                stats.incr(reason, n)
                lost += n
        if size > lost:
            stats.incr("sent", size - lost)
        if lost:
            stats.note_loss(epoch, lost)

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
                if self._room is not None:
                    self._room.set()
                try:
                    # An EncodedBatch goes only to sinks that take one (`_encoded_only`).
                    outcome = _outcome(await lane.sink.send(cast(Batch, batch)), len(batch))
                except anyio.get_cancelled_exc_class():
                    raise  # an aborted shutdown: the batch stays in flight and is settled as stranded
                except Exception as e:
                    self._client._stats.incr("sink_errors")
                    warn_every(
                        f"sink-{id(lane.sink)}", 10, "obs: %s failed to send a batch: %r", lane.name, e
                    )
                    outcome = {"dropped_sink_error": len(batch)}
                lane.done = seq
                self._settle(seq, outcome)
                self._check_markers()

    async def _background(self, sink: Sink, run: Callable[[], Any]) -> None:
        try:
            await run()
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as e:
            log.warning("obs: %s background task failed: %r", type(sink).__name__, e)

    def _settle_leftovers(self) -> None:
        """After the loop ended: settle events that were never delivered, and release flush waiters.

        After an abort, what was in flight or still queued goes to a sink that can keep it (the spool)
        while the shutdown's grace lasts, else it is counted ``dropped_shutdown``. Records that slipped in
        behind a stop marker are ``dropped_closed``.
        """
        client, stats = self._client, self._client._stats
        stranded = [(f.batch, f.epoch) for f in self._inflight.values()]
        self._inflight.clear()
        for route, b in [*self._held, *self._building.items()]:
            if b.events:
                stranded.append((self._finished_batch(b, route), self._epoch))
        self._building = {"batch": _Building(), "ai": _Building()}
        self._held = []
        records: list[tuple[Any, ...]] = []
        while client._queue:
            item = client._queue.popleft()
            if type(item) is Marker:
                self._waiting.append(item)
            else:
                records.append(item)
        stats.incr("drained", len(records))
        if records and not self._aborted:
            client._discard(records)
            stats.incr("dropped_closed", len(records))
            stats.note_loss(self._epoch, len(records))
            records = []
        stashers = [k for k in (getattr(s, "stash", None) for s in self._sinks) if callable(k)]
        deadline = time.monotonic() + self.stash_time
        for batch, epoch in stranded:
            kept = bool(stashers) and time.monotonic() < deadline and all(k(batch) for k in stashers)
            self._account({"spooled" if kept else "dropped_shutdown": len(batch)}, len(batch), epoch)
        if records:
            kept_n = 0  # records dealt with: stashed, or dropped as invalid while building them
            spooled = 0
            if stashers:
                for start in range(0, len(records), 100):
                    if time.monotonic() >= deadline:
                        break
                    chunk = records[start : start + 100]
                    built, invalid = client._build_many(chunk)  # the invalid ones are counted by the client
                    if invalid:
                        stats.note_loss(self._epoch, invalid)
                    kept_n += invalid
                    if built and not all(k(Batch(built, chunk[0][8])) for k in stashers):
                        break
                    kept_n += len(built)
                    spooled += len(built)
            client._discard(records)  # the properties of those not built
            left = len(records) - kept_n
            self._account({"spooled": spooled, "dropped_shutdown": left}, spooled + left, self._epoch)
        for m in self._waiting:
            if not m.done.is_set():
                m.failed = True
                m.done.set()
        self._waiting.clear()


def _outcome(value: Any, size: int) -> Outcome:
    """What a sink's ``send`` returned: None (all delivered) or reason → events not delivered."""
    if value is None or not isinstance(value, Mapping):
        return {}
    out: Outcome = {}
    for k, n in value.items():
        if isinstance(k, str) and isinstance(n, int) and n > 0:
            out[k] = min(n, size - sum(out.values()))
    return out
