"""The client: the hot path that queues records, and the lifecycle around the worker.

The hot path (`capture` and friends) does only what must happen on the caller's thread: read the clock,
make the event id, snapshot the obs context, and append one tuple to a deque. Building the typed event,
sanitising properties, serialising and I/O all happen on the worker (`_worker.py`).
"""

from __future__ import annotations

import atexit
import datetime as dt
import gc
import os
import sys
import threading
import time
import uuid as _uuidlib
import weakref
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from . import _context, _exceptions, _flags, _llm
from ._log import log, warn_every
from ._scrub import Scrubber
from ._serialize import Problems, sanitize, sanitize_properties
from ._stats import Stats
from ._uuid import uuid7

if TYPE_CHECKING:
    from ._config import Settings
    from ._worker import Worker
    from .sinks import Sink

# Record layout (a plain tuple: the cheapest thing to build on the hot path).
# (kind, name, properties, distinct_id, timestamp, uuid, groups, frame, route, extra)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
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
_AI_KINDS = frozenset({"ai_generation", "ai_embedding", "ai_span", "ai_trace"})
_live: weakref.WeakSet[Client] = weakref.WeakSet()
_frame = _context.current.get
_time_ns = time.time_ns


class Client:
    """An enabled obs client. Get one from :func:`obs.init`; the module-level functions use it."""

    enabled = True

    def __init__(self, settings: Settings) -> None:
        from . import events

        self._kinds = events.EVENT_KINDS
        self._to_wire = events.to_wire
        self.settings = settings
        self._stats = Stats()
        # Built now so that an unknown sink spec fails at init, not in the background.
        self._sinks = self._build_sinks()
        self._super = settings.super_properties()
        self._error_limiter = (
            _exceptions.RateLimiter(settings.error_rate_limit, settings.error_rate_window)
            if settings.error_rate_limit
            else None
        )
        self._in_app = _exceptions.InApp(settings.in_app_modules)
        scrub = Scrubber(settings.scrub_secrets, settings.scrub_patterns)
        self._exception_fields = _exceptions.Formatter(scrub, self._in_app).fields
        self._ai_fields = _llm.Fields(settings, scrub)
        self.flags = _flags.Flags(self)  # feature flags; no I/O until the first one
        self._queue: deque[Any] = deque()
        self._max_queue = settings.max_queue_size  # 0 once closed: one comparison refuses both cases
        self._flush_at = settings.flush_at
        self._wake_pending = False
        self._closed = False
        self._worker: Worker | None = None
        self._start()
        _live.add(self)
        _register_atexit()

    # ---------------------------------------------------------------- lifecycle

    def _start(self) -> None:
        from ._worker import Worker

        self._worker = Worker(self, self._sinks)
        self._worker.start()

    def _build_sinks(self) -> list[Sink]:
        from . import sinks

        return [sinks.build(spec, self.settings, self._stats) for spec in self.settings.sinks]

    def _after_fork(self) -> None:
        """In a forked child: the parent's queue and worker are gone; start empty with fresh sinks."""
        self._queue = deque()
        self._wake_pending = False
        self._stats = Stats()
        if self._closed:
            return
        self.flags = _flags.Flags(self)  # the parent's flag threads did not come along
        self._sinks = self._build_sinks()
        self._start()

    def flush(self, timeout: float | None = None) -> bool:
        """Block until every event captured before this call was handled by every sink; False on timeout."""
        from ._worker import Marker

        worker = self._worker
        if worker is None or not worker.thread.is_alive():
            return not self._queue
        if threading.current_thread() is worker.thread:
            log.warning("obs: flush() called from a sink; ignored to avoid a deadlock")
            return False
        marker = Marker()
        self._queue.append(marker)  # markers bypass max_queue_size
        worker.wake()
        return marker.wait(timeout)

    async def aflush(self, timeout: float | None = None) -> bool:
        """`flush` for async code (asyncio or trio): waits in a thread, never blocks the event loop."""
        import anyio

        return await anyio.to_thread.run_sync(self.flush, timeout, abandon_on_cancel=True)

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush, close the sinks and stop the worker. Later captures are dropped (and counted)."""
        from ._worker import Marker

        if self._closed:
            return True
        self._closed = True
        self._max_queue = 0
        self.flags.close()
        worker = self._worker
        if worker is None or not worker.thread.is_alive():
            return not self._queue
        if threading.current_thread() is worker.thread:
            return False
        deadline = None if timeout is None else time.monotonic() + timeout
        marker = Marker(stop=True)
        self._queue.append(marker)
        worker.wake()
        if not marker.wait(timeout):
            log.warning("obs: shutdown timed out after %ss with events still unsent", timeout)
            return False
        worker.thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return True

    async def ashutdown(self, timeout: float | None = None) -> bool:
        import anyio

        return await anyio.to_thread.run_sync(self.shutdown, timeout, abandon_on_cancel=True)

    def stats(self) -> dict[str, Any]:
        """Counters of what was queued, sent, retried and dropped (and why)."""
        snap = self._stats.snapshot()
        snap["in_queue"] = len(self._queue)
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
    ) -> str | None:
        return self._put("custom", event, properties, distinct_id, timestamp, uuid, groups, "batch", None)

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
        try:
            q = self._queue
            if len(q) >= self._max_queue:
                self._drop()
                return None
            ns = _time_ns()
            u = uuid7(ns) if uuid is None else _as_uuid(uuid)
            q.append(
                (
                    kind,
                    name,
                    dict(properties) if properties else None,
                    distinct_id,
                    ns if timestamp is None else _timestamp(timestamp),
                    u,
                    groups,
                    _frame(),
                    route,
                    extra,
                )
            )
            if len(q) >= self._flush_at and not self._wake_pending:
                self._wake_pending = True
                w = self._worker
                if w is not None:
                    w.wake()
            return u
        except Exception as e:  # instrumentation never raises into the caller
            self._stats.incr("dropped_invalid")
            warn_every(f"put-{type(e).__name__}", 10, "obs: could not queue event %r: %r", name, e)
            return None

    def _drop(self) -> None:
        if self._closed:
            self._stats.incr("dropped_closed")
            warn_every("closed", 60, "obs: event captured after shutdown(); dropped")
        else:
            self._stats.incr("dropped_queue_full")
            warn_every(
                "queue-full",
                10,
                "obs: queue is full (max_queue_size=%d); dropping new events",
                self._max_queue,
            )

    # ---------------------------------------------------------------- worker side

    def _build(self, rec: tuple[Any, ...]) -> dict[str, Any] | None:
        """A queued record → its wire event, on the worker; None (counted, logged) if it can't be built."""
        kind, name, props, distinct_id, ts, u, groups, frame, _route, extra = rec
        try:
            merged = props
            if frame is not None:
                merged = dict(frame.properties)
                if frame.session_id is not None:
                    merged["$session_id"] = frame.session_id
                if distinct_id is None:
                    distinct_id = frame.distinct_id
                if props:
                    merged.update(props)
            problems = Problems()
            clean = sanitize_properties(merged, problems) if merged else {}
            personless = distinct_id is None or distinct_id == ""
            if personless:
                # No person: the event's own id, except that every event of one LLM trace shares its
                # trace id, as posthog-python does.
                ai_trace = extra.get("trace_id") if kind in _AI_KINDS and extra else None
                distinct_id = ai_trace or u
            fields: dict[str, Any] = {}
            if kind == "exception":
                fields = self._exception_fields(extra or {})
            elif kind in _AI_KINDS:
                fields = self._ai_fields(kind, extra or {}, lambda v, k: sanitize(v, problems, k))
            elif extra:
                fields = {k: sanitize(v, problems, k) for k, v in extra.items()}
            model = self._kinds[kind]
            event = model.__pydantic_validator__.validate_python(
                {
                    "name": name,
                    "distinct_id": str(distinct_id),
                    "properties": clean,
                    "timestamp": _from_ns(ts) if type(ts) is int else ts,
                    "uuid": u,
                    "groups": {str(k): str(v) for k, v in groups.items()} if groups else None,
                    "personless": personless,
                    **fields,
                }
            )
            if problems.dropped or problems.coerced:
                self._report(name, problems.dropped, problems.coerced)
            return self._to_wire(event, self._super)
        except Exception as e:
            self._stats.incr("dropped_invalid")
            warn_every(
                f"build-{type(e).__name__}", 10, "obs: dropped event %r that could not be built: %s", name, e
            )
            return None

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


def _from_ns(ns: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=ns // 1000)  # exact, unlike fromtimestamp(ns / 1e9)


def _timestamp(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, (int, float)):
        return dt.datetime.fromtimestamp(value, dt.timezone.utc)
    if isinstance(value, str):
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    raise TypeError(f"timestamp must be a datetime, epoch seconds or ISO string, not {type(value).__name__}")


_atexit_registered = False


def _register_atexit() -> None:
    global _atexit_registered
    if not _atexit_registered:
        _atexit_registered = True
        atexit.register(_shutdown_all)


def _shutdown_all() -> None:
    """At interpreter exit (and at the end of a multiprocessing child): flush every live client."""
    if _live:
        # Objects only the cyclic GC would free may still owe events: an LLM stream the caller stopped
        # reading without closing is closed (and reported) when collected, which must happen before
        # the clients shut down.
        gc.collect()
    for c in list(_live):
        c.shutdown(c.settings.shutdown_timeout)


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


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
