"""PostHogSink: POSTs batches to PostHog's capture API over httpx.AsyncClient.

- `POST {host}/batch/` (or `/i/v0/ai/batch/` for `capture_ai` events) with `{"api_key", "batch", "sent_at"}`,
  optionally gzipped.
- Batches are cut by count (upstream, `flush_at`) and here by bytes (`max_batch_bytes`); a single event
  larger than the per-event cap is dropped with a log line, since it could never be accepted.
- 413 splits the batch in two and sends each half; one event that still gets 413 is dropped.
- Network errors, 408, 429 and 5xx are retried with exponential backoff (`backoff`: at least 0.1 s, then
  doubling, with bounded jitter; `Retry-After` is a minimum, up to `retry_max_delay`) while both budgets
  last: `max_retries` attempts and `retry_budget` seconds since the first. Other 4xx are not retried.
- Events are encoded once, so every retry carries the same uuid and timestamp; only `sent_at` moves.
- With a spool (`spool_dir`, `_spool.py`): a request that fails is written to the spool before it is
  retried; once retrying in place has taken `spool_hold` seconds, the batch is left to the spool and the
  sink is in outage mode, where new batches go straight to disk. `run()` re-sends spooled batches, oldest
  first, deleting each only after a 2xx, and ends outage mode when one gets through.

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
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
import httpx
from pydantic_core import to_json

from .._log import log, warn_every
from .._stats import Stats
from .._version import __version__
from ._base import Batch, Route

if TYPE_CHECKING:
    from ._spool import Spool, SpooledBatch

BATCH_PATH = "/batch/"
AI_PATH = "/i/v0/ai/batch/"
_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
RETRY_FLOOR = 0.1  # seconds: no retry comes sooner, whatever retry_backoff says
JITTER = 0.25  # each wait is stretched by a random 0–25 %
Outcome = dict[str, int]


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


def _parts(batch: Batch) -> list[bytes]:
    return [to_json(e, inf_nan_mode="null") for e in batch]


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
        stats: Stats | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.host = host.rstrip("/")
        self._key_json = json.dumps(api_key).encode()
        self.gzip = gzip
        self.max_retries = max_retries
        self.retry_backoff = retry_backoff
        self.retry_max_delay = retry_max_delay
        self.retry_budget = retry_budget
        self.max_batch_bytes = max_batch_bytes
        self._max_event = {"batch": max_event_bytes, "ai": max_ai_event_bytes}
        # Bytes of the body around the events (`_body` with an empty batch and the longest `sent_at`), so
        # that max_batch_bytes bounds the whole request body, not just the events in it.
        self._envelope = len(b'{"api_key":%s,"sent_at":"%s","batch":[]}' % (self._key_json, b"0" * 32))
        self.stats = stats or Stats()
        self.last_error: str | None = None  # the latest failure, for the line logged when events are lost
        self._spool: Spool | None = None
        if spool_dir:
            from ._spool import Spool

            self._spool = Spool(spool_dir, max_bytes=spool_max_bytes, stats=self.stats)
        self.spool_hold = spool_hold
        self._outage = False  # with a spool: the endpoint is failing, new batches go straight to disk
        self._resend_wake: anyio.Event | None = None
        self._kept: Batch | None = None  # the batch a cancelled send had already left in the spool
        self._http = httpx.AsyncClient(
            timeout=timeout,
            transport=transport,
            headers={"Content-Type": "application/json", "User-Agent": f"obs-python/{__version__}"},
        )

    # ------------------------------------------------------------------------------------ sending

    async def send(self, batch: Batch) -> Outcome | None:
        out: Outcome = {}
        route: Route = batch.route
        if self._outage and self._keep(route, lambda: _parts(batch)):
            return {"spooled": len(batch)}
        cap = self._max_event[route]
        blob = batch.encoded if batch.encoded is not None else to_json(batch, inf_nan_mode="null")
        try:
            # The common case: no event can be over the per-event cap and the whole batch fits one request.
            if len(blob) <= cap and self._envelope + len(blob) - 2 <= self.max_batch_bytes:
                status = await self._post(blob[1:-1], len(batch), route, out, lambda: _parts(batch))
                if status == 413:
                    await self._split(_parts(batch), route, out)
            else:
                await self._send_each(batch, route, cap, out)
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
                _add(out, "dropped_too_large", 1)
                log.error(
                    "obs: dropped event %r (uuid %s): %d bytes is over the %d-byte per-event limit",
                    e.get("event"),
                    e.get("uuid"),
                    len(raw),
                    cap,
                )
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
        if await self._post(b",".join(parts), len(parts), route, out, lambda: parts) == 413:
            await self._split(parts, route, out)

    async def _split(self, parts: list[bytes], route: Route, out: Outcome) -> None:
        if len(parts) == 1:
            _add(out, "dropped_too_large", 1)
            log.error("obs: PostHog answered 413 for a single %d-byte event; dropped", len(parts[0]))
            return
        mid = len(parts) // 2
        await self._post_parts(parts[:mid], route, out)
        await self._post_parts(parts[mid:], route, out)

    def _body(self, events: bytes) -> bytes:
        sent_at = dt.datetime.now(dt.timezone.utc).isoformat().encode()
        body = b'{"api_key":%s,"sent_at":"%s","batch":[%s]}' % (self._key_json, sent_at, events)
        return gzip.compress(body, compresslevel=6) if self.gzip else body

    async def _attempt(self, events: bytes, route: Route) -> tuple[int | None, str, float | None]:
        """One POST: (status or None when nothing answered, why it failed, Retry-After)."""
        url = self.host + (AI_PATH if route == "ai" else BATCH_PATH)
        headers = {"Content-Encoding": "gzip"} if self.gzip else None
        try:
            resp = await self._http.post(url, content=self._body(events), headers=headers)
        except httpx.TransportError as e:  # connect refused, reset, timeouts, DNS
            return None, f"{type(e).__name__}: {e}", None
        status = resp.status_code
        if 200 <= status < 300:
            return status, "", None
        return status, f"HTTP {status} {resp.text[:200]!r}", _retry_after(resp)

    async def _post(
        self, events: bytes, count: int, route: Route, out: Outcome, parts: Callable[[], list[bytes]]
    ) -> int | None:
        """POST ``count`` comma-joined encoded events with retries; the final status (None: no answer).

        What was not delivered is added to ``out``, except for 413, which is left to the caller.
        """
        started = time.monotonic()
        attempt = 0
        row: int | None = None  # the spool row holding these events while they are retried
        try:
            while True:
                status, reason, retry_after = await self._attempt(events, route)
                if status is not None and (200 <= status < 300 or status == 413):
                    return status
                if status is not None and status not in _RETRY_STATUS:
                    _add(out, "dropped_rejected", count)
                    warn_every(
                        f"posthog-{status}",
                        60,
                        "obs: PostHog rejected %d event(s) with %s; not retrying",
                        count,
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
                    row = self._spool.put(route, parts(), claim=True)
                if row is not None and (out_of_budget or elapsed + delay > self.spool_hold):
                    # Long enough in place: leave it to the spool's re-sender, keep the lane moving.
                    assert self._spool is not None
                    self._spool.release([row])
                    row = None
                    self._enter_outage(reason)
                    _add(out, "spooled", count)
                    return status
                if out_of_budget:
                    _add(out, "dropped_failed", count)
                    log.error(
                        "obs: gave up on %d event(s) after %d attempt(s) in %.1fs: %s",
                        count,
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
                _add(out, "spooled", count)
                row = None
            raise
        finally:
            if row is not None and self._spool is not None:
                self._spool.delete([row])  # delivered (or refused) after all: not to be sent again

    # ------------------------------------------------------------------------------------ the spool

    def _keep(self, route: Route, parts: Callable[[], list[bytes]]) -> bool:
        """Write events to the spool (unclaimed: any process may send them); False if it cannot."""
        return self._spool is not None and self._spool.put(route, parts()) is not None

    def _enter_outage(self, reason: str) -> None:
        if not self._outage:
            self._outage = True
            log.warning("obs: PostHog is not answering (%s); events go to the spool until it does", reason)
        if self._resend_wake is not None:
            self._resend_wake.set()

    def stash(self, batch: Batch) -> bool:
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
            try:
                for sb in claimed:
                    if not await self._resend(sb):
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
            await anyio.sleep(backoff(failures, self.retry_backoff, self.retry_max_delay))
            failures += 1

    async def _resend(self, sb: SpooledBatch) -> bool:
        """One attempt at a spooled batch; True when it is settled (delivered, or refused for good)."""
        assert self._spool is not None
        route: Route = "ai" if sb.route == "ai" else "batch"
        status, reason, _ = await self._attempt(b",".join(sb.events), route)
        if status is None or status in _RETRY_STATUS:
            self.last_error = reason
            return False
        if 200 <= status < 300:
            self.stats.incr("spool_sent", len(sb.events))
        elif status == 413 and len(sb.events) > 1:  # re-spool in halves, each sent on its own later
            mid = len(sb.events) // 2
            for half in (sb.events[:mid], sb.events[mid:]):
                if self._spool.put(route, half) is None:
                    return False
        else:
            self.stats.incr("spool_rejected", len(sb.events))
            log.error("obs: PostHog refused %d spooled event(s): %s; removed", len(sb.events), reason)
        self._spool.delete([sb.id])
        return True

    def spool_pending(self) -> int:
        """Events waiting in the spool (this process's and others'); 0 without a spool."""
        return self._spool.pending()[0] if self._spool is not None else 0

    async def aclose(self) -> None:
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
        stats=stats,
    )
