"""PostHogSink: POSTs batches to PostHog's capture API over httpx.AsyncClient.

- `POST {host}/batch/` (or `/i/v0/ai/batch/` for `capture_ai` events) with `{"api_key", "batch", "sent_at"}`,
  optionally gzipped. With `capture_mode="v1"`, `/batch/` events go to `POST {host}/i/v1/analytics/events`
  instead (`_capture_v1.py`): a 2xx there answers per event, and only the events it marks `retry` are sent
  again, within the same retry budget; those it marks `drop` are counted `dropped_rejected` and by reason.
  `capture_ai` events keep the v0 AI route in either mode, as posthog-python's do.
- The worker already sizes batches by bytes (up to `max_batch_bytes` when there is a backlog); a batch
  still too large is cut here by bytes, and a single event larger than the per-event cap is dropped with
  a log line, since it could never be accepted.
- 413 splits the batch in two and sends each half; one event that still gets 413 is dropped.
- Network errors, 408, 429 and 5xx are retried with exponential backoff (`backoff`: at least 0.1 s, then
  doubling, with bounded jitter; `Retry-After` is a minimum, up to `retry_max_delay`) while both budgets
  last: `max_retries` attempts and `retry_budget` seconds since the first. Other 4xx are not retried.
- Events are encoded once, so every retry carries the same uuid and timestamp; only `sent_at` (v1: the
  attempt number and request timestamp) moves.
- With a spool (`spool_dir`, `_spool.py`): a request that fails is written to the spool before it is
  retried; once retrying in place has taken `spool_hold` seconds, the batch is left to the spool and the
  sink is in outage mode, where new batches go straight to disk. `run()` re-sends spooled batches, oldest
  first, deleting each only after a 2xx, and ends outage mode when one gets through. The spool keeps
  events in the legacy wire form whatever the mode, so either mode's process can re-send them; a re-send
  is a new v1 request (its own request id), and a 2xx that marks some events `retry` puts those back.

`send` returns what it did not deliver, by reason (`dropped_too_large`, `dropped_rejected`,
`dropped_failed`, `spooled`); the worker turns that into the pipeline's counters.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import gzip
import json
import random
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from .. import _lazy
from .._log import log, warn_every
from .._stats import Stats
from . import _capture_v1 as v1
from . import _wire
from ._base import Batch, EncodedBatch, Route

if TYPE_CHECKING:
    import anyio
    import httpx
    from pydantic_core import to_json

    from ._spool import Spool, SpooledBatch
else:  # used only on the worker, which has loaded them: building the sink at init does not
    anyio = _lazy.Module("anyio")
    to_json = _lazy.function("pydantic_core", "to_json")

BATCH_PATH = _wire.BATCH_PATH
AI_PATH = _wire.AI_PATH
V1_PATH = v1.PATH
_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
RETRY_FLOOR = 0.1  # seconds: no retry comes sooner, whatever retry_backoff says
JITTER = 0.25  # each wait is stretched by a random 0–25 %
GZIP_LEVEL = _wire.GZIP_LEVEL
Outcome = dict[str, int]
CaptureMode = Literal["v0", "v1"]


def backoff(attempt: int, base: float, cap: float) -> float:
    """The wait before retry ``attempt + 1``: max(base, 0.1 s)·2^attempt, stretched by up to 25 %, ≤ cap."""
    wait: float = max(RETRY_FLOOR, base) * 2**attempt * random.uniform(1.0, 1.0 + JITTER)
    return min(cap, wait)


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - dt.datetime.now(dt.timezone.utc)).total_seconds())


def _add(out: Outcome, reason: str, n: int) -> None:
    out[reason] = out.get(reason, 0) + n


def _too_large(event: dict[str, Any], size: int, cap: int, out: Outcome) -> None:
    _add(out, "dropped_too_large", 1)
    log.error(
        "obs: dropped event %r (uuid %s): %d bytes is over the %d-byte per-event limit",
        event.get("event"),
        event.get("uuid"),
        size,
        cap,
    )


def _events(batch: Batch | EncodedBatch) -> Batch:
    return batch.decode() if isinstance(batch, EncodedBatch) else batch


def _parts(batch: Batch | EncodedBatch) -> list[bytes]:
    """Each event's JSON on its own (for the spool, and to split a batch that got 413)."""
    return [to_json(e, inf_nan_mode="null") for e in _events(batch)]


class _Answer(NamedTuple):
    """One attempt's answer: status (None: nothing answered), why it failed, Retry-After, and for a v1
    2xx the per-event verdicts (None: none given, all taken as accepted)."""

    status: int | None
    reason: str = ""
    retry_after: float | None = None
    results: dict[str, v1.Result] | None = None


class _V0Request:
    """Legacy events on their way: comma-joined JSON, and the same events one by one for the spool."""

    retry_status = _RETRY_STATUS

    def __init__(self, events: bytes, count: int, parts: Callable[[], list[bytes]]) -> None:
        self.events = events
        self.count = count
        self.spool_parts = parts


_Request = _V0Request | v1.Request


class PostHogSink:
    """Delivers batches to PostHog. Construct with the settings' values or let `obs.init` do it."""

    def __init__(
        self,
        api_key: str,
        host: str,
        *,
        gzip: bool = False,
        timeout: float = 10.0,
        max_retries: int = 10,
        retry_backoff: float = 0.5,
        retry_max_delay: float = 30.0,
        retry_budget: float = 30.0,
        max_batch_bytes: int = 5 * 1024 * 1024,
        max_event_bytes: int = 900 * 1024,
        max_ai_event_bytes: int = 8 * 1024 * 1024,
        spool_dir: str | None = None,
        spool_max_bytes: int = 100 * 1024 * 1024,
        spool_hold: float = 0.5,
        capture_mode: CaptureMode = "v0",
        historical_migration: bool = False,
        stats: Stats | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if capture_mode not in ("v0", "v1"):
            raise ValueError(f"capture_mode must be 'v0' or 'v1', not {capture_mode!r}")
        self.host = host.rstrip("/")
        self._api_key = api_key
        self._key_json = _wire.key_json(api_key)
        self.capture_mode = capture_mode
        # The worker may hand it an EncodedBatch (only the events' JSON). Not in capture v1, which sends each
        # event in its own form: the wire dicts would only be decoded again.
        self.takes_encoded = capture_mode == "v0"
        self.historical_migration = historical_migration
        # v0 bodies carry the flag as posthog-python's do; v1 bodies add it in `_capture_v1`.
        self._v0_extra = _wire.extra(historical_migration)
        self.gzip = gzip
        self.max_retries = max_retries
        self.retry_backoff = retry_backoff
        self.retry_max_delay = retry_max_delay
        self.retry_budget = retry_budget
        self.max_batch_bytes = max_batch_bytes
        self._max_event = {"batch": max_event_bytes, "ai": max_ai_event_bytes}
        # Bytes of the body around the events (`_body` with an empty batch and the longest `sent_at`), so
        # that max_batch_bytes bounds the whole request body, not just the events in it.
        self._envelope = _wire.envelope(self._key_json, self._v0_extra)
        self._v1_envelope = len(v1.Request([]).body(historical_migration))
        self.stats = stats or Stats()
        self.last_error: str | None = None  # the latest failure, for the line logged when events are lost
        self._spool: Spool | None = None
        if spool_dir:
            from ._spool import Spool

            self._spool = Spool(spool_dir, max_bytes=spool_max_bytes, stats=self.stats)
        self.spool_hold = spool_hold
        self._outage = False  # with a spool: the endpoint is failing, new batches go straight to disk
        self._resend_wake: anyio.Event | None = None
        # the batch a cancelled send had already left in the spool
        self._kept: Batch | EncodedBatch | None = None
        # httpx (~0.1 s of CPU to import) loads with the first request, on the worker: enabling obs
        # does not pay for it, and a process that never sends never loads it.
        self._timeout = timeout
        self._transport = transport
        self._http: httpx.AsyncClient | None = None

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            import httpx

            self._http = httpx.AsyncClient(
                timeout=self._timeout,
                transport=self._transport,
                headers=_wire.HEADERS,
            )
        return self._http

    # ------------------------------------------------------------------------------------ sending

    async def send(self, batch: Batch | EncodedBatch) -> Outcome | None:
        out: Outcome = {}
        route: Route = batch.route
        if self._outage and self._keep(route, lambda: _parts(batch)):
            return {"spooled": len(batch)}
        cap = self._max_event[route]
        try:
            if self.capture_mode == "v1" and route == "batch":
                await self._send_v1(_events(batch), cap, out)
                return out or None
            blob = batch.encoded
            if blob is None:
                blob = to_json(batch, inf_nan_mode="null")
            # The common case: no event can be over the per-event cap and the whole batch fits one request.
            largest = batch.largest_event if batch.largest_event is not None else len(blob)
            if largest <= cap and self._envelope + len(blob) - 2 <= self.max_batch_bytes:
                req = _V0Request(blob[1:-1], len(batch), lambda: _parts(batch))
                if await self._post(req, route, out) == 413:
                    await self._split(_parts(batch), route, out)
            else:
                await self._send_each(_events(batch), route, cap, out)
        except anyio.get_cancelled_exc_class():
            if out.get("spooled") == len(batch):
                self._kept = batch  # a shutdown ran out of time mid-retry: it is on disk already
            raise
        return out or None

    async def _send_each(self, batch: Batch, route: Route, cap: int, out: Outcome) -> None:
        """Encode events one by one: drop those over the cap, cut the rest into requests by bytes."""
        chunk: list[bytes] = []
        size = self._envelope
        for e in batch:
            raw = to_json(e, inf_nan_mode="null")
            if len(raw) > cap:
                _too_large(e, len(raw), cap, out)
                continue
            if chunk and size + len(raw) + 1 > self.max_batch_bytes:
                await self._post_parts(chunk, route, out)
                chunk, size = [], self._envelope
            chunk.append(raw)
            size += len(raw) + 1
        if chunk:
            await self._post_parts(chunk, route, out)

    async def _post_parts(self, parts: list[bytes], route: Route, out: Outcome) -> None:
        """Send encoded events; on 413 split them in two and send each half (a single one is dropped)."""
        if await self._post(_V0Request(b",".join(parts), len(parts), lambda: parts), route, out) == 413:
            await self._split(parts, route, out)

    async def _split(self, parts: list[bytes], route: Route, out: Outcome) -> None:
        if len(parts) == 1:
            _add(out, "dropped_too_large", 1)
            log.error("obs: PostHog answered 413 for a single %d-byte event; dropped", len(parts[0]))
            return
        mid = len(parts) // 2
        await self._post_parts(parts[:mid], route, out)
        await self._post_parts(parts[mid:], route, out)

    async def _send_v1(self, batch: Batch, cap: int, out: Outcome) -> None:
        """Encode each event in its v1 form, drop those over the cap, cut the rest into requests by bytes."""
        chunk: list[tuple[str, bytes, Any]] = []
        size = self._v1_envelope
        for e in batch:
            raw = to_json(v1.event(e), inf_nan_mode="null")
            if len(raw) > cap:
                _too_large(e, len(raw), cap, out)
                continue
            if chunk and size + len(raw) + 1 > self.max_batch_bytes:
                await self._post_v1(chunk, out)
                chunk, size = [], self._v1_envelope
            chunk.append((str(e.get("uuid")), raw, e))
            size += len(raw) + 1
        if chunk:
            await self._post_v1(chunk, out)

    async def _post_v1(self, items: list[tuple[str, bytes, Any]], out: Outcome) -> None:
        """One v1 request with retries; on 413 the events still pending are split in two new requests."""
        req = v1.Request(items)
        if await self._post(req, "batch", out) != 413:
            return
        if len(req.items) == 1:
            _add(out, "dropped_too_large", 1)
            log.error("obs: PostHog answered 413 for a single %d-byte event; dropped", len(req.items[0][1]))
            return
        mid = len(req.items) // 2
        await self._post_v1(req.items[:mid], out)
        await self._post_v1(req.items[mid:], out)

    def _body(self, events: bytes) -> bytes:
        return _wire.body(self._key_json, events, self._v0_extra, self.gzip)

    async def _attempt(self, req: _Request, route: Route) -> _Answer:
        """One POST of what ``req`` still has to deliver."""
        headers: dict[str, str] = dict(_wire.GZIP_HEADERS) if self.gzip else {}
        if isinstance(req, v1.Request):
            url = self.host + V1_PATH
            headers.update(req.next_headers(self._api_key))
            body = req.body(self.historical_migration)
            if self.gzip:
                body = gzip.compress(body, compresslevel=GZIP_LEVEL)
        else:
            url = self.host + _wire.path(route)
            body = self._body(req.events)
        http = self._client()
        import httpx  # loaded by _client()

        try:
            resp = await http.post(url, content=body, headers=headers)
        except httpx.TransportError as e:  # connect refused, reset, timeouts, DNS
            return _Answer(None, f"{type(e).__name__}: {e}")
        status = resp.status_code
        if 200 <= status < 300:
            if not isinstance(req, v1.Request):
                return _Answer(status)
            results = v1.results(resp.content)
            if results is None:
                # The request was taken; without verdicts there is nothing to resend (posthog-python
                # does not resend either). A proxy answering for PostHog could do this.
                warn_every(
                    "posthog-v1-no-results",
                    60,
                    "obs: PostHog answered %d without per-event results; %d event(s) taken as delivered",
                    status,
                    req.count,
                )
            return _Answer(status, retry_after=_retry_after(resp), results=results)
        return _Answer(status, f"HTTP {status} {resp.text[:200]!r}", _retry_after(resp))

    def _apply_results(self, req: v1.Request, results: dict[str, v1.Result], out: Outcome) -> None:
        """Count the events a 2xx dropped (by reason) and keep only those it asks to retry in ``req``."""
        dropped = req.narrow(results)
        if dropped:
            _add(out, "dropped_rejected", len(dropped))
            self._note_rejected(dropped, "dropped")

    def _note_rejected(self, dropped: list[tuple[str, str | None]], what: str) -> None:
        reasons = Counter(details or "unspecified" for _, details in dropped)
        for reason, n in reasons.items():
            self.stats.note_rejected(reason, n)
        summary = ", ".join(f"{reason} ×{n}" for reason, n in reasons.most_common())
        warn_every(
            f"posthog-v1-drop-{what}",
            60,
            "obs: PostHog %s %d event(s) (%s); not retrying them",
            what,
            len(dropped),
            summary,
        )

    async def _post(self, req: _Request, route: Route, out: Outcome) -> int | None:
        """POST ``req``'s events with retries; the final status (None: no answer).

        What was not delivered is added to ``out``, except for 413, which is left to the caller (the
        events ``req`` still holds then are the ones it refused).
        """
        started = time.monotonic()
        attempt = 0
        row: int | None = None  # the spool row holding these events while they are retried
        try:
            while True:
                status, reason, retry_after, results = await self._attempt(req, route)
                if status is not None and 200 <= status < 300:
                    if results is None or not isinstance(req, v1.Request):
                        return status
                    self._apply_results(req, results, out)
                    if not req.count:
                        return status
                    # Some events were not persisted: the rest is settled, these go round again.
                    reason = f"HTTP {status}: {req.count} event(s) to retry"
                    if row is not None and self._spool is not None:
                        row = self._respool(row, route, req)
                elif status == 413:
                    return status
                elif status is not None and status not in req.retry_status:
                    _add(out, "dropped_rejected", req.count)
                    self.stats.note_rejected(f"http_{status}", req.count)
                    warn_every(
                        f"posthog-{status}",
                        60,
                        "obs: PostHog rejected %d event(s) with %s; not retrying",
                        req.count,
                        reason,
                    )
                    return status
                self.last_error = reason
                last = attempt >= self.max_retries
                delay = 0.0 if last else backoff(attempt, self.retry_backoff, self.retry_max_delay)
                if retry_after is not None:
                    delay = max(delay, min(retry_after, self.retry_max_delay))
                elapsed = time.monotonic() - started
                out_of_budget = last or elapsed + delay > self.retry_budget
                if self._spool is not None and row is None:
                    row = self._spool.put(route, req.spool_parts(), claim=True)
                if row is not None and (out_of_budget or elapsed + delay > self.spool_hold):
                    # Long enough in place: leave it to the spool's re-sender, keep the lane moving.
                    assert self._spool is not None
                    self._spool.release([row])
                    row = None
                    self._enter_outage(reason)
                    _add(out, "spooled", req.count)
                    return status
                if out_of_budget:
                    _add(out, "dropped_failed", req.count)
                    log.error(
                        "obs: gave up on %d event(s) after %d attempt(s) in %.1fs: %s",
                        req.count,
                        attempt + 1,
                        elapsed,
                        reason,
                    )
                    return status
                attempt += 1
                self.stats.incr("retries")
                log.debug("obs: retry %d in %.2fs after %s", attempt, delay, reason)
                await anyio.sleep(delay)
        except anyio.get_cancelled_exc_class():
            if row is not None and self._spool is not None:
                self._spool.release([row])  # on disk for the next process, not claimed by a dead one
                _add(out, "spooled", req.count)
                row = None
            raise
        finally:
            if row is not None and self._spool is not None:
                self._spool.delete([row])  # delivered (or refused) after all: not to be sent again

    # ------------------------------------------------------------------------------------ the spool

    def _respool(self, row: int, route: Route, req: _Request) -> int | None:
        """The events ``req`` still holds replace spool row ``row`` (claimed by us); the new row's id."""
        assert self._spool is not None
        new = self._spool.put(route, req.spool_parts(), claim=True)
        if new is not None:
            self._spool.delete([row])
            return new
        return row  # could not write: the old row (a superset, deduped by uuid) stays in its place

    def _keep(self, route: Route, parts: Callable[[], list[bytes]]) -> bool:
        """Write events to the spool (unclaimed: any process may send them); False if it cannot."""
        return self._spool is not None and self._spool.put(route, parts()) is not None

    def _enter_outage(self, reason: str) -> None:
        if not self._outage:
            self._outage = True
            log.warning("obs: PostHog is not answering (%s); events go to the spool until it does", reason)
        if self._resend_wake is not None:
            self._resend_wake.set()

    def stash(self, batch: Batch | EncodedBatch) -> bool:
        """A shutdown ran out of time with ``batch`` undelivered: keep it in the spool (True) if any."""
        if batch is self._kept:
            return True
        return self._keep(batch.route, lambda: _parts(batch))

    async def run(self) -> None:
        """Re-send spooled batches, oldest first, with backoff while the endpoint keeps failing."""
        spool = self._spool
        if spool is None:
            return
        failures = 0
        idle = max(1.0, self.spool_hold)
        while True:
            self._resend_wake = anyio.Event()
            # An empty spool costs one read of its totals row, not a write transaction per process.
            claimed = spool.claim(16) if spool.pending()[0] else []
            if not claimed:
                with anyio.move_on_after(idle):  # rows from other processes appear without a wake
                    await self._resend_wake.wait()
                continue
            done = 0
            retry_after: float | None = None
            try:
                for sb in claimed:
                    settled, retry_after = await self._resend(sb)
                    if not settled:
                        break
                    done += 1
            finally:
                spool.release([sb.id for sb in claimed[done:]])
            if done == len(claimed):
                failures = 0
                if self._outage:
                    self._outage = False
                    log.warning("obs: PostHog answers again; sending spooled events")
                continue
            delay = backoff(failures, self.retry_backoff, self.retry_max_delay)
            if retry_after is not None:
                delay = max(delay, min(retry_after, self.retry_max_delay))
            await anyio.sleep(delay)
            failures += 1

    async def _resend(self, sb: SpooledBatch) -> tuple[bool, float | None]:
        """One attempt at a spooled batch: (settled, Retry-After). Settled: delivered, or refused for good
        (a v1 answer's `retry` events are then back in the spool, in a row of their own)."""
        assert self._spool is not None
        route: Route = "ai" if sb.route == "ai" else "batch"
        if self.capture_mode == "v1" and route == "batch":
            return await self._resend_v1(sb)
        status, reason, retry_after, _ = await self._attempt(
            _V0Request(b",".join(sb.events), len(sb.events), lambda: sb.events), route
        )
        if status is None or status in _RETRY_STATUS:
            self.last_error = reason
            return False, retry_after
        if 200 <= status < 300:
            self.stats.incr("spool_sent", len(sb.events))
        elif status == 413 and len(sb.events) > 1:  # re-spool in halves, each sent on its own later
            mid = len(sb.events) // 2
            for half in (sb.events[:mid], sb.events[mid:]):
                if self._spool.put(route, half) is None:
                    return False, None
        else:
            self._spool_refused(len(sb.events), status, reason)
        self._spool.delete([sb.id])
        return True, None

    def _spool_refused(self, n: int, status: int, reason: str) -> None:
        self.stats.incr("spool_rejected", n)
        self.stats.note_rejected(f"http_{status}", n)
        log.error("obs: PostHog refused %d spooled event(s): %s; removed", n, reason)

    async def _resend_v1(self, sb: SpooledBatch) -> tuple[bool, float | None]:
        """`_resend` in capture v1: a new request; verdicts settle each event on its own."""
        assert self._spool is not None
        items: list[tuple[str, bytes, Any]] = []
        unreadable = 0
        for raw in sb.events:
            try:
                wire = json.loads(raw)
                items.append((str(wire["uuid"]), to_json(v1.event(wire), inf_nan_mode="null"), raw))
            except (ValueError, KeyError, TypeError):  # not an event this obs wrote: never sendable
                unreadable += 1
        if unreadable:
            self.stats.incr("spool_rejected", unreadable)
            log.error("obs: %d spooled event(s) could not be read back; removed", unreadable)
        req = v1.Request(items)
        status, reason, retry_after, results = await self._attempt(req, "batch") if items else _Answer(200)
        if status is None or status in req.retry_status:
            self.last_error = reason
            return False, retry_after
        if 200 <= status < 300:
            sent = req.count
            dropped = req.narrow(results) if results is not None else []
            if req.items and self._spool.put("batch", req.spool_parts()) is None:
                return False, retry_after  # the row stays whole; PostHog dedupes what arrived twice
            self.stats.incr("spool_sent", sent - len(dropped) - req.count)
            if dropped:
                self.stats.incr("spool_rejected", len(dropped))
                self._note_rejected(dropped, "dropped spooled")
            self._spool.delete([sb.id])
            if req.items:
                self.last_error = f"HTTP {status}: {req.count} event(s) to retry"
                return False, retry_after
            return True, None
        if status == 413 and len(items) > 1:  # re-spool in halves, each sent on its own later
            mid = len(items) // 2
            for half in (items[:mid], items[mid:]):
                if self._spool.put("batch", [raw for _, _, raw in half]) is None:
                    return False, None
        else:
            self._spool_refused(len(items), status, reason)
        self._spool.delete([sb.id])
        return True, None

    def spool_pending(self) -> int:
        """Events waiting in the spool (this process's and others'); 0 without a spool."""
        return self._spool.pending()[0] if self._spool is not None else 0

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
        if self._spool is not None:
            self._spool.close()


def from_settings(settings: Any, stats: Stats) -> PostHogSink:
    return PostHogSink(
        settings.api_key,
        settings.host,
        gzip=settings.gzip,
        timeout=settings.timeout,
        max_retries=settings.max_retries,
        retry_backoff=settings.retry_backoff,
        retry_max_delay=settings.retry_max_delay,
        retry_budget=settings.retry_budget,
        max_batch_bytes=settings.max_batch_bytes,
        max_event_bytes=settings.max_event_bytes,
        max_ai_event_bytes=settings.max_ai_event_bytes,
        spool_dir=settings.spool_dir,
        spool_max_bytes=settings.spool_max_bytes,
        spool_hold=settings.flush_interval,
        capture_mode=settings.capture_mode,
        historical_migration=settings.historical_migration,
        stats=stats,
    )
