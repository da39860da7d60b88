"""PostHogSink: POSTs batches to PostHog's capture API over httpx.AsyncClient.

- `POST {host}/batch/` (or `/i/v0/ai/batch/` for `capture_ai` events) with `{"api_key", "batch", "sent_at"}`,
  optionally gzipped.
- Batches are cut by count (upstream, `flush_at`) and here by bytes (`max_batch_bytes`); a single event
  larger than the per-event cap is dropped with a log line, since it could never be accepted.
- 413 splits the batch in two and sends each half; one event that still gets 413 is dropped.
- Network errors, 408, 429 and 5xx are retried up to `max_retries` times with exponential backoff and
  full jitter, or after `Retry-After` when the server sends it. Other 4xx are not retried.
- Events are encoded once, so every retry carries the same uuid and timestamp; only `sent_at` moves.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import gzip
import json
import random
from typing import Any

import anyio
import httpx
from pydantic_core import to_json

from .._log import log, warn_every
from .._stats import Stats
from .._version import __version__
from ._base import Batch, Route

BATCH_PATH = "/batch/"
AI_PATH = "/i/v0/ai/batch/"
_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})


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


class PostHogSink:
    """Delivers batches to PostHog. Construct with the settings' values or let `obs.init` do it."""

    def __init__(
        self,
        api_key: str,
        host: str,
        *,
        gzip: bool = False,
        timeout: float = 10.0,
        max_retries: int = 3,
        retry_backoff: float = 0.5,
        retry_max_delay: float = 30.0,
        max_batch_bytes: int = 5 * 1024 * 1024,
        max_event_bytes: int = 900 * 1024,
        max_ai_event_bytes: int = 8 * 1024 * 1024,
        stats: Stats | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.host = host.rstrip("/")
        self._key_json = json.dumps(api_key).encode()
        self.gzip = gzip
        self.max_retries = max_retries
        self.retry_backoff = retry_backoff
        self.retry_max_delay = retry_max_delay
        self.max_batch_bytes = max_batch_bytes
        self._max_event = {"batch": max_event_bytes, "ai": max_ai_event_bytes}
        # Bytes of the body around the events (`_body` with an empty batch and the longest `sent_at`), so
        # that max_batch_bytes bounds the whole request body, not just the events in it.
        self._envelope = len(b'{"api_key":%s,"sent_at":"%s","batch":[]}' % (self._key_json, b"0" * 32))
        self.stats = stats or Stats()
        self._http = httpx.AsyncClient(
            timeout=timeout,
            transport=transport,
            headers={"Content-Type": "application/json", "User-Agent": f"obs-python/{__version__}"},
        )

    async def send(self, batch: Batch) -> None:
        route: Route = batch.route
        cap = self._max_event[route]
        blob = to_json(batch, inf_nan_mode="null")  # b"[e1,e2,…]": one encode for the whole batch
        # The common case: no event can be over the per-event cap and the whole batch fits one request.
        if len(blob) <= cap and self._envelope + len(blob) - 2 <= self.max_batch_bytes:
            if await self._post(blob[1:-1], len(batch), route) == 413:
                await self._split([to_json(e, inf_nan_mode="null") for e in batch], route)
            return
        await self._send_each(batch, route, cap)

    async def _send_each(self, batch: Batch, route: Route, cap: int) -> None:
        """Encode events one by one: drop those over the cap, cut the rest into requests by bytes."""
        chunk: list[bytes] = []
        size = self._envelope
        for e in batch:
            raw = to_json(e, inf_nan_mode="null")
            if len(raw) > cap:
                self.stats.incr("dropped_too_large")
                log.error(
                    "obs: dropped event %r (uuid %s): %d bytes is over the %d-byte per-event limit",
                    e.get("event"),
                    e.get("uuid"),
                    len(raw),
                    cap,
                )
                continue
            if chunk and size + len(raw) + 1 > self.max_batch_bytes:
                await self._post_parts(chunk, route)
                chunk, size = [], self._envelope
            chunk.append(raw)
            size += len(raw) + 1
        if chunk:
            await self._post_parts(chunk, route)

    async def _post_parts(self, parts: list[bytes], route: Route) -> None:
        """Send encoded events; on 413 split them in two and send each half (a single one is dropped)."""
        if await self._post(b",".join(parts), len(parts), route) == 413:
            await self._split(parts, route)

    async def _split(self, parts: list[bytes], route: Route) -> None:
        if len(parts) == 1:
            self.stats.incr("dropped_too_large")
            log.error("obs: PostHog answered 413 for a single %d-byte event; dropped", len(parts[0]))
            return
        mid = len(parts) // 2
        await self._post_parts(parts[:mid], route)
        await self._post_parts(parts[mid:], route)

    def _body(self, events: bytes) -> bytes:
        sent_at = dt.datetime.now(dt.timezone.utc).isoformat().encode()
        body = b'{"api_key":%s,"sent_at":"%s","batch":[%s]}' % (self._key_json, sent_at, events)
        return gzip.compress(body, compresslevel=6) if self.gzip else body

    async def _post(self, events: bytes, count: int, route: Route) -> int | None:
        """POST ``count`` comma-joined encoded events with retries; the final status (None: no answer).

        2xx, non-retryable 4xx and exhausted retries are counted here; 413 is left to the caller.
        """
        url = self.host + (AI_PATH if route == "ai" else BATCH_PATH)
        headers = {"Content-Encoding": "gzip"} if self.gzip else None
        attempt = 0
        while True:
            delay: float | None = None
            status: int | None = None
            try:
                resp = await self._http.post(url, content=self._body(events), headers=headers)
            except httpx.TransportError as e:  # connect refused, reset, timeouts
                reason = f"{type(e).__name__}: {e}"
            else:
                status = resp.status_code
                if 200 <= status < 300:
                    self.stats.incr("sent", count)
                    return status
                if status == 413:
                    return status
                reason = f"HTTP {status} {resp.text[:200]!r}"
                if status not in _RETRY_STATUS:
                    self.stats.incr("dropped_rejected", count)
                    warn_every(
                        f"posthog-{status}",
                        60,
                        "obs: PostHog rejected %d event(s) with %s; not retrying",
                        count,
                        reason,
                    )
                    return status
                delay = _retry_after(resp)
            if attempt >= self.max_retries:
                self.stats.incr("dropped_failed", count)
                log.error("obs: gave up on %d event(s) after %d attempt(s): %s", count, attempt + 1, reason)
                return status
            if delay is None:
                delay = random.uniform(0, self.retry_backoff * (2**attempt))
            delay = min(delay, self.retry_max_delay)
            attempt += 1
            self.stats.incr("retries")
            log.debug("obs: retry %d in %.2fs after %s", attempt, delay, reason)
            await anyio.sleep(delay)

    async def aclose(self) -> None:
        await self._http.aclose()


def from_settings(settings: Any, stats: Stats) -> PostHogSink:
    return PostHogSink(
        settings.api_key,
        settings.host,
        gzip=settings.gzip,
        timeout=settings.timeout,
        max_retries=settings.max_retries,
        retry_backoff=settings.retry_backoff,
        retry_max_delay=settings.retry_max_delay,
        max_batch_bytes=settings.max_batch_bytes,
        max_event_bytes=settings.max_event_bytes,
        max_ai_event_bytes=settings.max_ai_event_bytes,
        stats=stats,
    )
