"""The legacy capture request (`POST /batch/`, `/i/v0/ai/batch/`): its paths, headers and body.

One definition for both senders: `PostHogSink` (httpx, on the worker) and the cold exit post (`obs._cold`,
the standard library, on the exiting thread). Imports nothing heavy: loading it costs no HTTP client, no
event loop and no pydantic.
"""

from __future__ import annotations

import datetime as dt
import gzip as _gzip
import json

from .._version import __version__
from ._base import Route

BATCH_PATH = "/batch/"
AI_PATH = "/i/v0/ai/batch/"
# Level 1: a batch of events compresses almost as well as at 6 (their keys repeat), at a quarter of the CPU.
GZIP_LEVEL = 1
HEADERS = {"Content-Type": "application/json", "User-Agent": f"obs-python/{__version__}"}
GZIP_HEADERS = {"Content-Encoding": "gzip"}


def path(route: Route) -> str:
    """The v0 path a route's events are POSTed to."""
    return AI_PATH if route == "ai" else BATCH_PATH


def key_json(api_key: str) -> bytes:
    return json.dumps(api_key).encode()


def extra(historical_migration: bool) -> bytes:
    """What a v0 body adds for ``historical_migration`` (as posthog-python's bodies do)."""
    return b',"historical_migration":true' if historical_migration else b""


def envelope(key: bytes, extra: bytes) -> int:
    """Bytes of a body around its events (an empty batch, the longest ``sent_at``), uncompressed."""
    return len(b'{"api_key":%s,"sent_at":"%s"%s,"batch":[]}' % (key, b"0" * 32, extra))


def body(key: bytes, events: bytes, extra: bytes, gzip: bool) -> bytes:
    """The request body for ``events`` (comma-joined JSON objects, without brackets)."""
    sent_at = dt.datetime.now(dt.timezone.utc).isoformat().encode()
    raw = b'{"api_key":%s,"sent_at":"%s"%s,"batch":[%s]}' % (key, sent_at, extra, events)
    return _gzip.compress(raw, compresslevel=GZIP_LEVEL) if gzip else raw
