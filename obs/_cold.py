"""The cold exit post: a short process delivers its events without ever starting the worker.

A process that captures a few events and exits before ``flush_interval`` has passed has not started the
worker (`Client` starts it lazily). Its `flush()`/`shutdown()` (and so the exit flush) then builds the queued
events with the worker's own builder (`Client._build`), encodes them and POSTs them once per route with the
standard library's `http.client`, blocking, on the calling thread: no event loop, no httpx, no pydantic. The
request is the sink's: its body, paths and headers come from `sinks/_wire.py` (legacy) and
`sinks/_capture_v1.py` (capture v1, whose per-event verdicts leave `retry` and `drop` events to the worker).

It is only a shortcut for the common case. It applies only when nothing it cannot do is asked for: the
default PostHog sink alone, no proxy or certificate variables that httpx would honour, and no
events waiting in the spool (the worker re-sends those). Whatever goes wrong — no connection, a timeout, an
answer other than 2xx, an event that cannot be encoded, a body over ``max_batch_bytes`` — the events go back
to the front of the queue and the worker takes over with its retries, spool and counting. After an
ambiguous failure (a timeout once the request was sent) the worker may send an event PostHog already has;
it carries the same uuid, and PostHog keeps one.
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import urllib.parse
from typing import TYPE_CHECKING, Any

from .sinks import Route, _wire
from .sinks import _capture_v1 as v1

if TYPE_CHECKING:
    from ._client import Client

# Variables httpx reads from the environment (trust_env): with one of them set, only httpx sends as asked.
_PROXY_ENV = frozenset({"http_proxy", "https_proxy", "all_proxy", "no_proxy"})
_TLS_ENV = frozenset({"ssl_cert_file", "ssl_cert_dir"})  # for https only
_Record = tuple[Any, ...]


def usable(client: Client) -> bool:
    """Whether ``client``'s queued events may be sent by :func:`send` instead of the worker."""
    settings = client.settings
    if settings.sinks != ["posthog"] or len(client._sinks) != 1:
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
    # Building takes a record's properties from beside the queue (`Client._put`); those handed back need
    # them again. Building again is the same: the properties the first build added are the constants.
    waiting = {
        rec[2]: client._props[rec[2]] for rec in records if type(rec[2]) is int and rec[2] in client._props
    }
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
        missed = _post(client, route, [wire for _, wire, _, _ in built], timeout)
        sent = sum(1 for _, wire, _, _ in built if wire["uuid"] not in missed)
        stats.incr("drained", sent)
        stats.incr("queued", sent)
        stats.incr("sent", sent)
        back.extend(b for b in built if b[1]["uuid"] in missed)
    if not back:
        return []
    stats.incr("properties_dropped", -sum(d for _, _, d, _ in back))
    stats.incr("properties_coerced", -sum(c for _, _, _, c in back))
    for rec, _, _, _ in back:
        if type(rec[2]) is int and rec[2] in waiting:
            client._props[rec[2]] = waiting[rec[2]]
    order = {id(rec): i for i, rec in enumerate(records)}
    return sorted((rec for rec, _, _, _ in back), key=lambda rec: order[id(rec)])


def _post(client: Client, route: Route, events: list[dict[str, Any]], timeout: float) -> set[str]:
    """One POST of ``events``; the uuids of those it did not deliver (all of them unless a 2xx took them).

    In capture v1 a 2xx answers per event: those marked ``retry`` or ``drop`` are left to the worker, which
    retries them or counts them by the reason given.
    """
    settings = client.settings
    everything = {str(e["uuid"]) for e in events}
    cap = settings.max_ai_event_bytes if route == "ai" else settings.max_event_bytes
    try:
        req: v1.Request | None = None
        if settings.capture_mode == "v1" and route == "batch":
            raws = [_json(v1.event(e)) for e in events]
            req = v1.Request([(str(e["uuid"]), raw, e) for e, raw in zip(events, raws, strict=True)])
            body = req.body(settings.historical_migration)
            # Over a cap: the worker cuts the batch, or drops the one event too large, and counts it.
            if max(map(len, raws)) > cap or len(body) > settings.max_batch_bytes:
                return everything
            path = v1.PATH
            headers = {**_wire.HEADERS, **req.next_headers(settings.api_key or "")}
            if settings.gzip:
                body = gzip.compress(body, compresslevel=_wire.GZIP_LEVEL)
        else:
            raw = _json(events)
            key, extra = _wire.key_json(settings.api_key or ""), _wire.extra(settings.historical_migration)
            if len(raw) > cap or _wire.envelope(key, extra) + len(raw) - 2 > settings.max_batch_bytes:
                return everything
            body = _wire.body(key, raw[1:-1], extra, settings.gzip)
            path = _wire.path(route)
            headers = dict(_wire.HEADERS)
        if settings.gzip:
            headers.update(_wire.GZIP_HEADERS)
        url = urllib.parse.urlsplit(settings.host.rstrip("/") + path)
        conn = _connection(url, timeout)
        try:
            conn.request("POST", url.path or "/", body=body, headers=headers)
            resp = conn.getresponse()
            content = resp.read()
        finally:
            conn.close()
    except Exception:  # any failure: the worker sends them, and logs and counts what goes wrong
        return everything
    if not 200 <= resp.status < 300:
        return everything
    if req is None:
        return set()
    results = v1.results(content)
    if results is None:  # what such an answer means is the sink's to decide (it warns)
        return everything
    dropped = req.narrow(results)
    return {u for u, _ in dropped} | {u for u, _, _ in req.items}


def _json(value: Any) -> bytes:
    """As the worker's encoding, but strict: NaN or a lone surrogate fails here, and the worker, which
    repairs them, takes over."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


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
