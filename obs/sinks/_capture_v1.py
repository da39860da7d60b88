"""PostHog's capture protocol v1 (`POST /i/v1/analytics/events`): the event shape, one request's headers
and body across its attempts, and the per-event results of an answer.

What differs from the legacy `/batch/` wire (posthog-python's `capture_v1.py` and PostHog's
`rust/capture/src/v1` are the references; this is our own reading of them):

- The project key travels as ``Authorization: Bearer <key>``; the body is ``{"created_at", "batch"}`` (plus
  ``"historical_migration": true`` when set), with no ``api_key`` and no ``sent_at``.
- ``PostHog-Request-Id`` names one request and stays the same across its retries, ``PostHog-Attempt``
  counts them from 1, ``created_at`` stays too, and ``PostHog-Request-Timestamp`` is taken afresh for each
  attempt: PostHog corrects clock skew from it, as it did from ``sent_at``.
- ``PostHog-Sdk-Info`` is ``obs/<version>``: PostHog derives ``$lib``/``$lib_version`` from it, so they are
  left out of the properties (the same values the legacy wire carries as properties).
- Per-event options travel in a typed ``options`` object instead of `$`-properties, and ``$session_id`` /
  ``$window_id`` as top-level fields. A wrong JSON type there fails the whole batch server-side, so values
  are coerced as the server would, or left out.
- A 2xx answer carries ``{"results": {uuid: {"result": "ok" | "warning" | "drop" | "retry", "details"}}}``:
  only ``retry`` events are sent again; ``drop`` is a refusal with a reason; absent means accepted.

Events reach the sink in the legacy wire form (`obs.events.to_wire`), which is also what the spool keeps,
so a spooled batch can be re-sent by a process in either mode; :func:`event` makes the v1 form from it.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid as _uuid
from typing import TYPE_CHECKING, Any, NamedTuple

from .. import _lazy
from .._options import PROPERTIES
from .._version import LIB, __version__

if TYPE_CHECKING:
    from pydantic_core import to_json
else:  # used only on the worker, which has loaded it: building the sink at init does not
    to_json = _lazy.function("pydantic_core", "to_json")

PATH = "/i/v1/analytics/events"
SDK_INFO = f"{LIB}/{__version__}"
# As posthog-python: 404 and 429 may come from a proxy in front of capture, so they are retried too.
RETRY_STATUS = frozenset({404, 408, 429, 500, 502, 503, 504})
RETRY, DROP = "retry", "drop"

_STRIPPED = ("$lib", "$lib_version")
_TOP_LEVEL = (("$session_id", "session_id"), ("$window_id", "window_id"))
_OPTION_OF = {prop: option for option, prop in PROPERTIES.items()}


class Result(NamedTuple):
    """One event's verdict in a 2xx answer."""

    result: str | None
    details: str | None


def _bool(value: Any) -> bool | None:
    """The server's reading of a boolean option; None (left out) for what it would refuse."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        return True if text in ("true", "1") else False if text in ("false", "0") else None
    if isinstance(value, (int, float)):
        return value != 0
    return None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def event(wire: dict[str, Any]) -> dict[str, Any]:
    """The v1 form of a legacy wire event (which is left untouched)."""
    props = dict(wire.get("properties") or {})
    for key in _STRIPPED:
        props.pop(key, None)
    options: dict[str, Any] = {}
    for prop, option in _OPTION_OF.items():
        if prop in props:  # never left in the properties, sent as an option only when readable
            value = (_str if option == "product_tour_id" else _bool)(props.pop(prop))
            if value is not None:
                options[option] = value
    out: dict[str, Any] = {
        "event": wire["event"],
        "uuid": wire["uuid"],
        "distinct_id": wire["distinct_id"],
        "timestamp": wire["timestamp"],
        "options": options,
        "properties": props,
    }
    for prop, field in _TOP_LEVEL:
        if prop in props:
            value = _str(props.pop(prop))
            if value is not None:
                out[field] = value
    return out


class Request:
    """One v1 request across its attempts: the events still to deliver, and the ids that stay.

    ``items`` are (uuid, v1 JSON, source) per event, where source is the legacy wire event (a dict or its
    JSON) that the spool keeps. After a 2xx with retries, :meth:`narrow` keeps only those events.
    """

    retry_status = RETRY_STATUS

    def __init__(self, items: list[tuple[str, bytes, Any]]) -> None:
        self.items = items
        self.id = str(_uuid.uuid4())
        self.created_at = dt.datetime.now(dt.timezone.utc).isoformat()
        self.attempts = 0

    @property
    def count(self) -> int:
        return len(self.items)

    def body(self, historical_migration: bool) -> bytes:
        events = b",".join(raw for _, raw, _ in self.items)
        tail = b',"historical_migration":true' if historical_migration else b""
        return b'{"created_at":"%s","batch":[%s]%s}' % (self.created_at.encode(), events, tail)

    def next_headers(self, api_key: str) -> dict[str, str]:
        """The headers of the next attempt (which this counts)."""
        self.attempts += 1
        return {
            "Authorization": f"Bearer {api_key}",
            "PostHog-Sdk-Info": SDK_INFO,
            "PostHog-Attempt": str(self.attempts),
            "PostHog-Request-Id": self.id,
            "PostHog-Request-Timestamp": dt.datetime.now(dt.timezone.utc).isoformat(),
        }

    def spool_parts(self) -> list[bytes]:
        """The pending events in the legacy wire form, for the spool."""
        return [s if isinstance(s, bytes) else to_json(s, inf_nan_mode="null") for _, _, s in self.items]

    def narrow(self, results: dict[str, Result]) -> list[tuple[str, str | None]]:
        """Apply a 2xx's verdicts: keep the events to retry; return the dropped ones (uuid, details)."""
        keep: list[tuple[str, bytes, Any]] = []
        dropped: list[tuple[str, str | None]] = []
        for item in self.items:
            verdict = results.get(item[0])
            if verdict is None:
                continue  # absent: accepted
            if verdict.result == RETRY:
                keep.append(item)
            elif verdict.result == DROP:
                dropped.append((item[0], verdict.details))
        self.items = keep
        return dropped


def results(body: bytes) -> dict[str, Result] | None:
    """The per-event verdicts of a 2xx answer; None when it carries none that can be read."""
    try:
        raw = json.loads(body)["results"]
        return {
            str(u): Result(
                r.get("result") if isinstance(r, dict) else None,
                r.get("details") if isinstance(r, dict) else None,
            )
            for u, r in raw.items()
        }
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
