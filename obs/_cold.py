"""The cold exit post: a short process delivers its events without ever starting the worker.

A process that captures a few events and exits before ``flush_interval`` has passed has not started the
worker (`Client` starts it lazily). Its `flush()`/`shutdown()` (and so the exit flush) then builds the queued
events with the worker's own builder (`Client._build`), encodes them and POSTs them once per route with the
standard library's `http.client`, blocking, on the calling thread: no event loop, no httpx, no pydantic.

It is only a shortcut for the common case. It applies only when nothing it cannot do is asked for: the
default PostHog sink alone, capture v0, no proxy or certificate variables that httpx would honour, and no
events waiting in the spool (the worker re-sends those). Whatever goes wrong — no connection, a timeout, an
answer other than 2xx, an event that cannot be encoded, a body over ``max_batch_bytes`` — the events go back
to the front of the queue and the worker takes over with its retries, spool and counting. After an
ambiguous failure (a timeout once the request was sent) the worker may send an event PostHog already has;
it carries the same uuid, and PostHog keeps one.
"""

from __future__ import annotations

import http.client
import json
import os
import urllib.parse
from typing import TYPE_CHECKING, Any

from .sinks import Route, _wire

if TYPE_CHECKING:
    from ._client import Client

# Variables httpx reads from the environment (trust_env): with one of them set, only httpx sends as asked.
_PROXY_ENV = frozenset({"http_proxy", "https_proxy", "all_proxy", "no_proxy"})
_TLS_ENV = frozenset({"ssl_cert_file", "ssl_cert_dir"})  # for https only
_Record = tuple[Any, ...]


def usable(client: Client) -> bool:
    """Whether ``client``'s queued events may be sent by :func:`send` instead of the worker."""
    settings = client.settings
    if settings.capture_mode != "v0" or settings.sinks != ["posthog"] or len(client._sinks) != 1:
        return False
    scheme = urllib.parse.urlsplit(settings.host).scheme
    if scheme not in ("http", "https"):
        return False
    honoured = _PROXY_ENV | _TLS_ENV if scheme == "https" else _PROXY_ENV
    if any(name.lower() in honoured for name in os.environ):
        return False
    # Events an earlier run left in the spool are re-sent by the worker: let it start.
    pending = getattr(client._sinks[0], "spool_pending", None)
    return not (settings.spool_dir and callable(pending) and pending())


def send(client: Client, records: list[_Record], timeout: float) -> list[_Record]:
    """Build ``records``, POST them once per route; the records not delivered, in their order.

    Counts what it settles as the worker would: those delivered ``sent``, those that cannot be built
    ``dropped_invalid`` (by `Client._build`). Those returned are left uncounted for the worker, which
    builds them again: what their building counted is taken back.
    """
    stats = client._stats
    routes: dict[Route, list[tuple[_Record, dict[str, Any], int, int]]] = {}
    invalid = 0
    counters = vars(stats)  # what building an event counted: properties_dropped, properties_coerced
    for rec in records:
        dropped, coerced = counters["properties_dropped"], counters["properties_coerced"]
        wire = client._build(rec)
        if wire is None:
            invalid += 1
            continue
        routes.setdefault(rec[8], []).append(
            (rec, wire, counters["properties_dropped"] - dropped, counters["properties_coerced"] - coerced)
        )
    if invalid:
        stats.incr("drained", invalid)
        stats.note_loss(client._epoch, invalid)
    back: list[tuple[_Record, dict[str, Any], int, int]] = []
    for route, built in routes.items():
        if _post(client, route, [wire for _, wire, _, _ in built], timeout):
            stats.incr("drained", len(built))
            stats.incr("queued", len(built))
            stats.incr("sent", len(built))
        else:
            back.extend(built)
    if not back:
        return []
    stats.incr("properties_dropped", -sum(d for _, _, d, _ in back))
    stats.incr("properties_coerced", -sum(c for _, _, _, c in back))
    order = {id(rec): i for i, rec in enumerate(records)}
    return sorted((rec for rec, _, _, _ in back), key=lambda rec: order[id(rec)])


def _post(client: Client, route: Route, events: list[dict[str, Any]], timeout: float) -> bool:
    """One POST of ``events``: True only for a 2xx answer."""
    settings = client.settings
    try:
        # As the worker's encoding, but strict: NaN or a lone surrogate fails here and the worker, which
        # repairs them, takes over.
        raw = json.dumps(events, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
        cap = settings.max_ai_event_bytes if route == "ai" else settings.max_event_bytes
        key, extra = _wire.key_json(settings.api_key or ""), _wire.extra(settings.historical_migration)
        # Over a cap: the worker cuts the batch, or drops the one event too large, and counts it.
        if len(raw) > cap or _wire.envelope(key, extra) + len(raw) - 2 > settings.max_batch_bytes:
            return False
        body = _wire.body(key, raw[1:-1], extra, settings.gzip)
        url = urllib.parse.urlsplit(settings.host.rstrip("/") + _wire.path(route))
        conn = _connection(url, timeout)
        try:
            headers = {**_wire.HEADERS, **(_wire.GZIP_HEADERS if settings.gzip else {})}
            conn.request("POST", url.path or "/", body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            return 200 <= resp.status < 300
        finally:
            conn.close()
    except Exception:  # any failure: the worker sends them, and logs and counts what goes wrong
        return False


def _connection(url: urllib.parse.SplitResult, timeout: float) -> http.client.HTTPConnection:
    host, port = url.hostname or "", url.port
    if url.scheme == "http":
        return http.client.HTTPConnection(host, port, timeout=timeout)
    import ssl

    # Verified against the same certificates as httpx (certifi's bundle, which httpx depends on).
    try:
        import certifi

        context = ssl.create_default_context(cafile=certifi.where())
    except ImportError:
        context = ssl.create_default_context()
    return http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
