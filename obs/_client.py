"""The client: the hot path that queues records, and the lifecycle around the worker.

The hot path (`capture` and friends) does only what must happen on the caller's thread: read the clock,
make the event id, snapshot the obs context, and append one tuple to a deque. Building the typed event,
sanitising properties, serialising and I/O all happen on the worker (`_worker.py`).
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import gc
import itertools
import os
import sys
import threading
import time
import uuid as _uuidlib
import weakref
from collections import deque
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from . import _kinds, _options
from ._frame import current as _current_frame
from ._log import log, warn_every, warn_tally
from ._scrub import Scrubber
from ._serialize import Problems, is_plain, sanitize, sanitize_into
from ._stats import Stats
from ._uuid import uuid7
from ._version import LIB, __version__

if TYPE_CHECKING:
    from ._config import Settings
    from ._flags import Flags
    from ._options import CaptureOptions
    from ._worker import Marker, Worker
    from .sinks import Sink

# Record layout (a plain tuple: the cheapest thing to build on the hot path).
# (kind, name, properties, distinct_id, timestamp, uuid, groups, frame, route, extra); properties is None,
# or the key of the dict in the client's ``_props`` (`_put` says why), or a dict (records made elsewhere).
_PII_KEYS = frozenset(
    {
        "name",
        "first_name",
        "last_name",
        "full_name",
        "phone",
        "phone_number",
        "address",
        "ip",
        "$ip",
        "username",
        "birthday",
        "date_of_birth",
    }
)
_live: weakref.WeakSet[Client] = weakref.WeakSet()
_LIB = {"$lib": LIB, "$lib_version": __version__}
_KINDS = _kinds.KINDS
_iso_from_ns = _kinds.iso_from_ns
_MICROS = tuple(f"{i:03}+00:00" for i in range(1000))  # a timestamp's last three digits, and its offset
_frame = _current_frame.get
_time_ns = time.time_ns
_MISSING: Any = object()


class Client:
    """An enabled obs client. Get one from :func:`obs.init`; the module-level functions use it."""

    enabled = True
    flags: Flags  # feature flags: a part `_flags` registers (`_kinds.register_part`); no I/O until the first

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stats = Stats()
        # Built now so that an unknown sink spec fails at init, not in the background.
        self._sinks = self._build_sinks()
        self._set_super(settings.super_properties())
        self._scrub = Scrubber(settings.scrub_secrets, settings.scrub_patterns)
        # kind → the builder its feature registered, made on first use
        self._builders: dict[str, _kinds.Builder | None] = {}
        self._problems = Problems()  # reused by every event the worker builds (one thread): fewer allocations
        self._make_parts()
        self._queue: deque[Any] = deque()
        # Queued records' properties, by the key their record holds instead (see `_put`).
        self._props: dict[int, dict[str, Any]] = {}
        self._keys = itertools.count()
        self._max_queue = settings.max_queue_size  # 0 once closed: one comparison refuses both cases
        self._flush_at = settings.flush_at
        self._wake_pending = False
        self._closed = False
        self._epoch = 0  # flush markers enqueued so far; an event captured now belongs to this epoch
        self._reported = -1  # losses of epochs <= this were reported by a flush's answer
        self._marker_lock = threading.Lock()
        self._exit_deadline: float | None = None  # set when a dying thread's hook flushed already
        self._worker: Worker | None = None
        self._cold_in_flight = 0  # records a cold post has taken from the queue and not settled yet
        self._start()
        _live.add(self)
        _register_atexit()

    # ---------------------------------------------------------------- lifecycle

    def _start(self) -> None:
        """Start the worker later: after ``flush_interval``, or at once when `_put` or a flush asks.

        Loading it (anyio, asyncio, pydantic_core; httpx with its first request) costs more CPU than a short
        script's whole run; such a script's events are sent by its exit flush instead (`obs._cold`).
        """
        # The worker's executor module registers an exit hook when it loads, which Python refuses once exit
        # has begun: loaded now, so that an exit flush whose cold post failed can still start the worker.
        with contextlib.suppress(RuntimeError):  # enabled while exiting: then the cold post alone can send
            import concurrent.futures.thread  # noqa: F401
        self._worker = None
        self._start_lock = threading.Lock()  # held while the worker starts, and by a cold post
        self._start_now = threading.Event()
        if any(getattr(s, "spool_pending", lambda: 0)() for s in self._sinks):
            self._start_now.set()  # events an earlier run left in the spool: the worker re-sends them now
        threading.Thread(target=self._start_later, name="obs-starter", daemon=True).start()

    def _start_later(self) -> None:
        self._start_now.wait(self.settings.flush_interval)
        self._ensure_worker(unless_closed=True)  # after shutdown() only the closing thread may start it

    def _ensure_worker(self, unless_closed: bool = False) -> Worker | None:
        """The worker, started now if it was not; None (logged) if it cannot start: events stay queued."""
        with self._start_lock:
            if self._worker is not None or (unless_closed and self._closed):
                return self._worker
            try:
                return self._start_worker()
            except Exception:
                log.exception("obs: could not start the worker; events stay queued")
                return None

    def _start_worker(self) -> Worker:
        """Import and start the worker; the caller holds ``_start_lock``.

        A fork waits for both in progress (`_before_fork`): the child could not finish an import, and a
        worker started while the fork waited is held at its gate before the fork goes on.
        """
        with _importing:
            from ._worker import Worker

            _order_fork_hooks()
            worker = Worker(self, self._sinks)
            worker.start()
            if _fork_waiting:
                _late.append(worker)
        self._worker = worker
        return worker

    def _cold_flush(self, timeout: float | None) -> bool | None:
        """With no worker yet: deliver what is queued without it (`obs._cold`), True/False as `flush`
        answers; None when the worker has to do it (started meanwhile, not usable, or the post failed: the
        events are back at the front of the queue)."""
        with self._start_lock:
            if self._worker is not None:
                return None
            q = self._queue
            if not q:
                return self._report_losses()
            from . import _cold

            if not _cold.usable(self):
                return None
            records = [q.popleft() for _ in range(len(q))]
            self._cold_in_flight = len(records)  # for stats() while they are neither queued nor counted
            # A fraction of the time allowed, so that the worker still has time if the post fails.
            budget = self.settings.shutdown_timeout if timeout is None else timeout
            try:
                back = _cold.send(self, records, min(self.settings.timeout, max(0.1, budget * 0.4)))
            finally:
                self._cold_in_flight = 0
            if back:
                q.extendleft(reversed(back))
                return None
            return self._report_losses()

    def _set_super(self, props: dict[str, Any]) -> None:
        self._super = props
        # Every event's properties besides its own (super-properties, then $lib), for `_build`'s fast path.
        self._constants = {**props, **_LIB}
        self._constant_keys = frozenset(self._constants)

    def _make_parts(self) -> None:
        for name, make in _kinds.client_parts().items():
            setattr(self, name, make(self))

    def _build_sinks(self) -> list[Sink]:
        from . import sinks

        return [sinks.build(spec, self.settings, self._stats) for spec in self.settings.sinks]

    def _after_fork(self) -> None:
        """In a forked child: the parent's queue and worker are gone; start empty with fresh sinks."""
        self._queue = deque()
        self._props = {}
        self._wake_pending = False
        self._stats = Stats()
        self._epoch, self._reported = 0, -1
        self._marker_lock = threading.Lock()  # the parent's threads may have held these at the fork
        if self._closed:
            self._worker = None
            self._start_lock = threading.Lock()
            return
        self._make_parts()  # the parent's flag threads did not come along
        self._sinks = self._build_sinks()
        self._start()

    def flush(self, timeout: float | None = None) -> bool:
        """Block until every event captured before this call was handled by every sink.

        True only when all of them were delivered (or, for local sinks, stored); False when one was
        dropped or spooled, or on timeout. Losses already reported by an earlier flush's False are not
        reported again.
        """
        started = time.monotonic()
        worker = self._worker_for(timeout)
        if isinstance(worker, bool):
            return worker
        if timeout is not None:
            timeout = max(0.0, timeout - (time.monotonic() - started))
        if not worker.thread.is_alive():
            return not self._queue and self._report_losses()
        if threading.current_thread() is worker.thread:
            log.warning("obs: flush() called from a sink; ignored to avoid a deadlock")
            return False
        marker = self._enqueue_marker(stop=False)
        worker.wake()
        return marker.wait(timeout) and self._delivered(marker)

    def _worker_for(self, timeout: float | None) -> Worker | bool:
        """The worker a flush or shutdown goes through; or, when there is none to ask, their answer: the
        cold exit post's (it delivered, or found nothing to do), or False when the worker cannot start."""
        worker = self._worker
        if worker is not None:
            return worker
        done = self._cold_flush(timeout)
        if done is not None:
            return done
        return self._ensure_worker() or False

    def flush_before_exit(self) -> bool:
        """Flush from a dying main thread: uses most of OBS_SHUTDOWN_TIMEOUT, the exit flush the rest."""
        timeout = self.settings.shutdown_timeout
        self._exit_deadline = time.monotonic() + timeout
        return self.flush(timeout * 0.9)

    def _exit_timeout(self) -> float:
        """What is left of OBS_SHUTDOWN_TIMEOUT for the exit flush (all of it unless a hook used some)."""
        timeout = self.settings.shutdown_timeout
        if self._exit_deadline is None:
            return timeout
        return max(timeout * 0.1, self._exit_deadline - time.monotonic())

    async def aflush(self, timeout: float | None = None) -> bool:
        """`flush` for async code (asyncio or trio): waits in a thread, never blocks the event loop."""
        import anyio

        return await anyio.to_thread.run_sync(self.flush, timeout, abandon_on_cancel=True)

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush, close the sinks and stop the worker, within ``timeout`` seconds (None: no limit).

        Later captures are dropped (``dropped_closed``). When time runs out, what is still queued or in
        flight is kept in the spool if there is one, else counted ``dropped_shutdown``, and one line says
        so. True only when every event captured before the call was delivered.
        """
        if self._closed:
            return self._report_losses()
        self._closed = True
        self._max_queue = 0
        self._start_now.set()  # the starter ends: from now on only this thread may start the worker
        for name in _kinds.client_parts():
            close = getattr(getattr(self, name, None), "close", None)
            if callable(close):
                close()
        started = time.monotonic()
        worker = self._worker_for(timeout)
        if isinstance(worker, bool):
            return worker
        if not worker.thread.is_alive():
            return not self._queue and self._report_losses()
        if threading.current_thread() is worker.thread:
            return False
        marker = self._enqueue_marker(stop=True)
        worker.wake()
        # Most of the budget for a clean finish; the rest to abort and settle what is left.
        grace = 0.0 if timeout is None else min(0.5, timeout * 0.1)
        wait = None if timeout is None else max(0.0, timeout - grace - (time.monotonic() - started))
        if not marker.done.wait(wait):
            before = self._stats.snapshot()
            worker.abort(stash_time=grace * 0.8)
            worker.thread.join(grace)
            self._report_stranded(before, timeout, time.monotonic() - started)
            return False
        left = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
        worker.thread.join(left)
        return not marker.failed and self._delivered(marker)

    def _enqueue_marker(self, stop: bool) -> Marker:
        from ._worker import Marker

        with self._marker_lock:
            marker = Marker(self._epoch, self._reported, stop=stop)
            self._epoch += 1
            self._queue.append(marker)  # markers bypass max_queue_size
        return marker

    def _delivered(self, marker: Marker) -> bool:
        """After ``marker`` was acknowledged: were all events before it delivered? Reports them once."""
        lost = self._stats.lost_between(marker.since, marker.epoch)
        with self._marker_lock:
            if marker.epoch > self._reported:
                self._reported = marker.epoch
                self._stats.forget_losses(marker.epoch - 10_000)
        return not lost

    def _report_losses(self) -> bool:
        """With no worker to ask: True if nothing captured so far was lost since the last report."""
        with self._marker_lock:
            lost = self._stats.lost_between(self._reported, self._epoch)
            self._reported = self._epoch
            self._epoch += 1
        return not lost

    def _report_stranded(self, before: dict[str, Any], timeout: float | None, waited: float) -> None:
        after = self.stats()
        dropped = after["dropped_shutdown"] - before["dropped_shutdown"]
        spooled = after["spooled"] - before["spooled"]
        unsettled = after["in_flight"]
        why = self._why_undelivered()
        if spooled and not dropped and not unsettled:
            log.warning(
                "obs: shutdown timed out after %.1fs (OBS_SHUTDOWN_TIMEOUT=%s)%s; %d event(s) kept in the "
                "spool at %s and sent by the next process",
                waited,
                timeout,
                why,
                spooled,
                self.settings.spool_dir,
            )
            return
        advice = (
            "Raise OBS_SHUTDOWN_TIMEOUT (the spool could not keep them all in time)."
            if self.settings.spool_dir
            else "Raise OBS_SHUTDOWN_TIMEOUT, or set OBS_SPOOL_DIR to keep undelivered events on disk "
            "for the next run."
        )
        log.error(
            "obs: shutdown timed out after %.1fs (OBS_SHUTDOWN_TIMEOUT=%s) with events still unsent%s: "
            "%d event(s) not delivered%s. %s",
            waited,
            timeout,
            why,
            dropped + unsettled,
            f" ({spooled} kept in the spool)" if spooled else "",
            advice,
        )

    def _why_undelivered(self) -> str:
        for sink in self._sinks:
            last = getattr(sink, "last_error", None)
            if last:
                return f"; last error from {type(sink).__name__}: {last}"
        return ""

    async def ashutdown(self, timeout: float | None = None) -> bool:
        import anyio

        return await anyio.to_thread.run_sync(self.shutdown, timeout, abandon_on_cancel=True)

    def stats(self) -> dict[str, Any]:
        """Every counter (docs/reliability.md), with ``captured``, ``in_queue`` and ``in_flight``.

        ``captured == sent + spooled + sum(dropped_*) + in_flight`` whenever the pipeline is quiet.
        """
        snap = self._stats.snapshot()
        in_queue = sum(1 for r in list(self._queue) if type(r) is tuple)
        worker = self._worker
        cold = self._cold_in_flight
        snap["in_queue"] = in_queue
        snap["in_flight"] = in_queue + cold + (worker.in_flight() if worker is not None else 0)
        snap["captured"] = snap.pop("refused") + snap.pop("drained") + in_queue + cold
        snap["spool_pending"] = sum(s.spool_pending() for s in self._sinks if hasattr(s, "spool_pending"))
        snap["rejected_reasons"] = self._stats.rejected_reasons()
        return snap

    # ---------------------------------------------------------------- hot path

    def capture(
        self,
        event: str,
        properties: Mapping[str, Any] | None = None,
        *,
        distinct_id: Any = None,
        timestamp: dt.datetime | None = None,
        uuid: str | _uuidlib.UUID | None = None,
        groups: Mapping[str, Any] | None = None,
        options: CaptureOptions | None = None,
    ) -> str | None:
        if options is not None:
            properties = self._with_options(properties, options)
            if properties is None:
                return None
        return self._put("custom", event, properties, distinct_id, timestamp, uuid, groups, "batch", None)

    def _with_options(self, properties: Mapping[str, Any] | None, options: Any) -> dict[str, Any] | None:
        """``properties`` plus the properties ``options`` stand for; None (refused, counted) if invalid."""
        try:
            extra = _options.to_properties(options)
        except Exception as e:
            self._refuse("dropped_invalid", f"options: {e}")
            return None
        if not properties:
            return extra
        try:
            return {**properties, **extra}
        except Exception as e:  # a Mapping whose iteration fails: sent without its properties, as in _put
            self._unreadable(e)
            return extra

    def capture_ai(
        self,
        event: str,
        properties: Mapping[str, Any] | None = None,
        *,
        distinct_id: Any = None,
        timestamp: dt.datetime | None = None,
        uuid: str | _uuidlib.UUID | None = None,
        groups: Mapping[str, Any] | None = None,
    ) -> str | None:
        return self._put("custom", event, properties, distinct_id, timestamp, uuid, groups, "ai", None)

    def identify(self, distinct_id: Any, properties: Mapping[str, Any] | None = None) -> str | None:
        mode = self.settings.identify_pii
        if mode == "none":
            return None
        props = dict(properties or {})
        if mode != "full":
            props = {
                k: v for k, v in props.items() if k not in _PII_KEYS and (mode == "email" or k != "email")
            }
        return self._put(
            "identify", "$identify", None, distinct_id, None, None, None, "batch", {"set": props}
        )

    def group_identify(
        self,
        group_type: str,
        group_key: str,
        properties: Mapping[str, Any] | None = None,
        *,
        distinct_id: Any = None,
    ) -> str | None:
        extra = {"group_type": group_type, "group_key": group_key, "group_set": dict(properties or {})}
        did = distinct_id if distinct_id is not None else f"${group_type}_{group_key}"
        return self._put("group_identify", "$groupidentify", None, did, None, None, None, "batch", extra)

    def _put(
        self,
        kind: str,
        name: str,
        properties: Mapping[str, Any] | None,
        distinct_id: Any,
        timestamp: Any,
        uuid: Any,
        groups: Any,
        route: str,
        extra: dict[str, Any] | None,
    ) -> str | None:
        # What can never become an event is refused here, before it costs a queue slot.
        if type(name) is not str or not name:
            why = f"event name must be a non-empty str ({type(name).__name__})"
            return self._refuse("dropped_invalid", why)
        if distinct_id is not None and type(distinct_id) is not str:
            try:
                distinct_id = str(distinct_id)
            except Exception as e:
                return self._refuse("dropped_invalid", f"str(distinct_id) raised {type(e).__name__}")
        try:
            q = self._queue
            if len(q) >= self._max_queue:
                return self._drop()
            props = None
            if properties:
                try:
                    props = dict(properties)  # copied now: the caller may change them after we return
                except Exception as e:  # a Mapping whose iteration fails: sent without its properties
                    self._unreadable(e)
            ns = _time_ns()
            u = uuid7(ns) if uuid is None else _as_uuid(uuid)
            ts = ns if timestamp is None else self._timestamp(timestamp, ns)
            if props is None:
                q.append((kind, name, None, distinct_id, ts, u, groups, _frame(), route, extra))
            else:
                # Kept beside the queue, under a key the record holds: a tuple holding a dict stays tracked by
                # the cyclic GC, and a backlog of such records is what set off its full collections (each
                # walking every queued event, ~1 µs per event in a burst); a record of str, int and None
                # is untracked by the first young collection.
                key = next(self._keys)
                self._props[key] = props
                q.append((kind, name, key, distinct_id, ts, u, groups, _frame(), route, extra))
            if len(q) >= self._flush_at and not self._wake_pending:
                self._wake_pending = True
                w = self._worker
                if w is not None:
                    w.wake()
                else:
                    self._start_now.set()
            return u
        except Exception as e:  # instrumentation never raises into the caller
            return self._refuse("dropped_invalid", f"could not queue event {name!r}: {type(e).__name__}")

    def _timestamp(self, value: Any, ns: int) -> dt.datetime | int:
        try:
            return _timestamp(value)
        except Exception as e:  # costs only itself: the event keeps the capture time
            self._stats.incr("properties_coerced")
            warn_every("bad-timestamp", 60, "obs: timestamp %s; the event is sent with the capture time", e)
            return ns

    def _unreadable(self, e: Exception) -> None:
        self._stats.incr("properties_dropped")
        warn_every("props-iter", 10, "obs: properties could not be read (%r); sent without them", e)

    def _refuse(self, reason: str, why: str) -> str | None:
        self._stats.incr(reason)
        self._stats.incr("refused")
        self._stats.note_loss(self._epoch, 1)
        warn_tally(f"refused-{reason}", 10, 1, "obs: event not captured: %s (%d since the last warning)", why)
        return None

    def _drop(self) -> str | None:
        if self._closed:
            self._stats.incr("dropped_closed")
            self._stats.incr("refused")
            self._stats.note_loss(self._epoch, 1)
            warn_tally("closed", 60, 1, "obs: %d event(s) captured after shutdown(); dropped")
        else:
            self._stats.incr("dropped_queue_full")
            self._stats.incr("refused")
            self._stats.note_loss(self._epoch, 1)
            warn_tally(
                "queue-full",
                10,
                1,
                "obs: queue is full (max_queue_size=%d); dropped %d new event(s) since the last warning",
                self._max_queue,
            )
        return None

    # ---------------------------------------------------------------- worker side

    def _build(self, rec: tuple[Any, ...]) -> dict[str, Any] | None:
        """A queued record → its wire event, on the worker; None (counted, logged) if it can't be built."""
        built, _ = self._build_many((rec,))
        return built[0] if built else None

    def _build_many(self, recs: Sequence[tuple[Any, ...]]) -> tuple[list[dict[str, Any]], int]:
        """Queued records → (their wire events in order, how many could not be built: counted, logged).

        Built directly, not through the kind's pydantic model and `obs.events.to_wire`: the same dict at
        a fraction of the cost (tests/test_wire_fastpath.py proves them equal for every kind). The common
        event — plain properties of its own, a person, no context — is built right here: its properties
        dict (the copy made on the caller's thread) takes the constant ones and is sent as it is, the same
        event as `_build_one` makes when none of its keys is one of those constants.
        """
        out: list[dict[str, Any]] = []
        add = out.append
        dropped = 0
        waiting, constants, constant_keys, plain = self._props, self._constants, self._constant_keys, is_plain
        # The millisecond (its start in ns; never a second's first) whose text was made last, and that text:
        # a burst has many events per millisecond, which then only add their microseconds from a table.
        milli, milli_prefix = -(2**63), ""
        for rec in recs:
            kind, name, props, distinct_id, ts, u, groups, frame, _route, extra = rec
            if type(props) is int:
                props = waiting.pop(props, _MISSING)
            if (
                kind == "custom"
                and frame is None
                and not groups
                and type(distinct_id) is str
                and distinct_id
                and type(ts) is int
                and (
                    props is None
                    or (type(props) is dict and constant_keys.isdisjoint(props) and plain(props))
                )
            ):
                if props is None:
                    props = constants.copy()
                else:
                    props.update(constants)
                into = ts - milli
                if 0 <= into < 1_000_000:
                    stamp = milli_prefix + _MICROS[into // 1000]
                else:
                    stamp = _iso_from_ns(ts)
                    second, prefix = _kinds.current_second()  # what it formatted: ts's second
                    ms = (ts - second) // 1_000_000
                    if ms:
                        milli, milli_prefix = second + ms * 1_000_000, f"{prefix}.{ms:03}"
                add(
                    {
                        "event": name,
                        "distinct_id": distinct_id,
                        "properties": props,
                        "timestamp": stamp,
                        "uuid": u,
                    }
                )
            else:
                wire = self._build_one(kind, name, props, distinct_id, ts, u, groups, frame, extra)
                if wire is None:
                    dropped += 1
                else:
                    add(wire)
        return out, dropped

    def _build_one(
        self,
        kind: str,
        name: str,
        props: Any,
        distinct_id: Any,
        ts: Any,
        u: str,
        groups: Any,
        frame: Any,
        extra: dict[str, Any] | None,
    ) -> dict[str, Any] | None:
        """Any record (its properties taken from ``_props`` already) → its wire event, or None."""
        try:
            if props is _MISSING:
                raise LookupError("its properties were lost (a bug: please report it)")
            spec = _KINDS[kind]
            names = spec.names
            if names is not None and name not in names:
                raise ValueError(f"a {kind} event cannot be named {name!r}")
            merged = props
            if frame is not None:
                merged = dict(frame.properties)
                if frame.session_id is not None:
                    merged["$session_id"] = frame.session_id
                if distinct_id is None:
                    distinct_id = frame.distinct_id
                if props:
                    merged.update(props)
            problems = self._problems
            # Precedence, lowest first: super-properties, the event's own, the kind's typed fields, then
            # $groups, $process_person_profile and $lib (as `obs.events.to_wire`).
            out = self._super.copy()
            if merged:
                sanitize_into(out, merged, problems)
            if distinct_id is None or distinct_id == "":
                # No person: the event's own id, except that every event of one LLM trace shares its
                # trace id, as posthog-python does.
                ai_trace = extra.get("trace_id") if extra and "trace_id" in spec.fields else None
                distinct_id = ai_trace or u
                personless = True
            else:
                personless = False
            if extra or spec.fields:
                out.update(_kinds.typed_properties(spec, self._fields(kind, extra or {}, problems)))
            if groups:
                g = _groups(groups, problems)
                if g:
                    out["$groups"] = g
            if personless:
                out["$process_person_profile"] = False
            out.update(_LIB)
            wire = {
                "event": name,
                "distinct_id": distinct_id if type(distinct_id) is str else str(distinct_id),
                "properties": out,
                "timestamp": _iso_from_ns(ts) if type(ts) is int else _kinds.iso(_checked_time(ts, problems)),
                "uuid": u,
            }
            if problems.dropped or problems.coerced:
                self._report(name, problems.dropped, problems.coerced)
                problems.clear()
            return wire
        except Exception as e:
            self._problems.clear()
            self._stats.incr("dropped_invalid")
            warn_every(
                f"build-{type(e).__name__}", 10, "obs: dropped event %r that could not be built: %s", name, e
            )
            return None

    def _discard(self, records: list[tuple[Any, ...]]) -> None:
        """Records that will not be built (counted by the caller): let their properties go."""
        for rec in records:
            if type(rec[2]) is int:
                self._props.pop(rec[2], None)

    def _fields(self, kind: str, extra: dict[str, Any], problems: Problems) -> dict[str, Any]:
        """The kind's typed fields from a record's ``extra``: by the builder its feature registered, else
        each value made JSON-safe."""
        if kind in self._builders:
            build = self._builders[kind]
        else:
            build = self._builders[kind] = _kinds.builder(kind, self.settings, self._scrub)
        if build is not None:
            return build(extra, problems)
        return {k: sanitize(v, problems, k) for k, v in extra.items()}

    def _report(self, name: str, dropped: list[str], coerced: list[str]) -> None:
        if dropped:
            self._stats.incr("properties_dropped", len(dropped))
            warn_every("props-dropped", 10, "obs: event %r: sent without %s", name, "; ".join(dropped[:5]))
        if coerced:
            self._stats.incr("properties_coerced", len(coerced))
            warn_every("props-coerced", 60, "obs: event %r: %s", name, "; ".join(coerced[:5]), level=10)


class DisabledClient:
    """What :func:`obs.init` returns without ``POSTHOG_API_KEY``: every call is a cheap no-op."""

    enabled = False
    settings = None
    flags = None  # feature flag functions return the caller's default, with no request

    def capture(self, *args: Any, **kwargs: Any) -> None:
        return None

    capture_ai = identify = group_identify = _put = capture

    def flush(self, timeout: float | None = None) -> bool:
        return True

    def flush_before_exit(self) -> bool:
        return True

    async def aflush(self, timeout: float | None = None) -> bool:
        return True

    def shutdown(self, timeout: float | None = None) -> bool:
        return True

    async def ashutdown(self, timeout: float | None = None) -> bool:
        return True

    def stats(self) -> dict[str, Any]:
        return {}


def _as_uuid(value: Any) -> str:
    """A caller-supplied id, kept as given when it is a valid UUID; otherwise a fresh one (logged)."""
    if isinstance(value, _uuidlib.UUID):
        return str(value)
    try:
        return str(_uuidlib.UUID(str(value)))
    except ValueError:
        warn_every("bad-uuid", 60, "obs: %r is not a UUID; the event gets a generated one", value)
        return uuid7()


def _checked_time(ts: dt.datetime, problems: Problems) -> dt.datetime:
    """The caller's timestamp, or now when its tzinfo fails (the event is still sent)."""
    try:
        ts.utcoffset()
        ts.isoformat()
        return ts
    except Exception as e:
        problems.dropped.append(f"timestamp: {type(e).__name__} from its tzinfo; sent with the current time")
        return dt.datetime.now(dt.timezone.utc)


def _groups(groups: Any, problems: Problems) -> dict[str, str] | None:
    out: dict[str, str] = {}
    try:
        items = list(groups.items())
    except Exception as e:
        problems.dropped.append(f"groups: could not be read ({type(e).__name__})")
        return None
    for k, v in items:
        try:
            out[str(k)] = str(v)
        except Exception as e:
            problems.dropped.append(f"groups: a group could not be converted ({type(e).__name__})")
    return out or None


def _timestamp(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, (int, float)):
        return dt.datetime.fromtimestamp(value, dt.timezone.utc)
    if isinstance(value, str):
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    raise TypeError(f"timestamp must be a datetime, epoch seconds or ISO string, not {type(value).__name__}")


_atexit_registered = False
_importing = threading.Lock()  # held while a thread imports and starts the worker
_held_for_fork: list[threading.Lock] = []
_fork_waiting = False  # a fork waits in _before_fork for _importing
_late: list[Worker] = []  # workers started while it waited
# Seconds os.fork() waits for an import of the worker in progress: ~0.1 s of CPU, but far longer on a busy
# machine, and a child forked before it finished could never send. Only a stuck import waits it all out.
FORK_WAIT = 10.0


def _register_atexit() -> None:
    global _atexit_registered
    if not _atexit_registered:
        _atexit_registered = True
        atexit.register(_shutdown_all)


def _shutdown_all() -> None:
    """At interpreter exit (and at the end of a multiprocessing child): flush every live client."""
    if any(not c._closed for c in _live):
        # Objects only the cyclic GC would free may still owe events: an LLM stream the caller stopped
        # reading without closing is closed (and reported) when collected, which must happen before
        # the clients shut down.
        gc.collect()
    for c in list(_live):
        if not c._closed:
            c.shutdown(c._exit_timeout())


def _reset_after_fork() -> None:
    clients = list(_live)
    for client in clients:
        client._after_fork()
    # multiprocessing's fork children end with os._exit, which skips atexit; its own exit hook runs
    # finalizers, but only those registered after it cleared the parent's, hence the after-forker.
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is not None and clients:
        mp_util.register_after_fork(clients[0], _register_mp_finalizer)


def _register_mp_finalizer(client: Client) -> None:
    import multiprocessing.util

    multiprocessing.util.Finalize(None, _shutdown_all, exitpriority=100)


def _before_fork(gate_late: bool = True) -> None:
    """Wait for an import or start of the worker in progress, then hold a worker started meanwhile at its
    gate, as the worker's own fork hook holds the others.

    A fork in the middle of an import leaves the child a half-loaded module whose import lock no thread
    there releases (its worker then hangs importing it); one while a worker runs outside its gate, a lock
    that worker held. Registered twice (see `_order_fork_hooks`); the first call in a fork does the work.
    """
    global _fork_waiting
    if _held_for_fork:
        return
    _late.clear()
    _fork_waiting = gate_late
    try:
        if not _importing.acquire(timeout=FORK_WAIT):
            return
    finally:
        _fork_waiting = False
    _held_for_fork.append(_importing)
    deadline = time.monotonic() + FORK_WAIT
    for w in _late:  # started after the worker's own hook ran (or it was not registered yet)
        for lock in (w._gate, w._lookups):
            if lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
                _held_for_fork.append(lock)
    _late.clear()


def _before_fork_first() -> None:
    _before_fork(gate_late=False)  # the worker's own hook, which runs next, holds every worker


_hooks_ordered = False


def _order_fork_hooks() -> None:
    """Once `obs._worker` is loaded: wait for a start in progress before its fork hook too (the hook
    registered last runs first), so that hook holds the new worker at its gate."""
    global _hooks_ordered
    if not _hooks_ordered and hasattr(os, "register_at_fork"):
        _hooks_ordered = True
        os.register_at_fork(before=_before_fork_first)


def _after_fork_in_parent() -> None:
    while _held_for_fork:
        _held_for_fork.pop().release()


def _after_fork_in_child() -> None:
    global _importing
    _held_for_fork.clear()
    _late.clear()
    _importing = threading.Lock()  # the parent's, held by us or by a thread that did not come along
    _reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
    )
