"""Per-event capture options: what ``obs.capture(..., options=...)`` accepts and the properties they become.

PostHog reads four per-event processing options. The legacy `/batch/` wire carries them as `$`-properties
(as posthog-python and posthog-js send them); capture v1 carries them in each event's typed ``options``
object. obs keeps one form on its way through the pipeline, the properties, so that local sinks, the spool
and both wires see the same event: the PostHog sink lifts them into ``options`` when it sends with
``OBS_CAPTURE_MODE=v1`` (`obs/sinks/_capture_v1.py`).

Checked on the caller's thread, and only when options are passed: an invalid value refuses the event (a
logged, counted ``dropped_invalid``) rather than sending it without an option the caller relied on, such as
``process_person_profile=False``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict


class CaptureOptions(TypedDict, total=False):
    """Per-event options for :func:`obs.capture` (every key optional).

    - ``process_person_profile``: False sends the event without creating or updating a person profile.
    - ``cookieless_mode``: True has PostHog derive the person from the request instead of a stored id.
    - ``disable_skew_correction``: True keeps the event's timestamp as sent (no clock-skew correction).
    - ``product_tour_id``: the product tour the event belongs to.
    """

    process_person_profile: bool
    cookieless_mode: bool
    disable_skew_correction: bool
    product_tour_id: str


# option → the property the legacy wire carries it in (posthog-python's and posthog-js's names).
PROPERTIES: dict[str, str] = {
    "cookieless_mode": "$cookieless_mode",
    "disable_skew_correction": "$ignore_sent_at",
    "product_tour_id": "$product_tour_id",
    "process_person_profile": "$process_person_profile",
}
_TYPES: dict[str, type] = {
    "cookieless_mode": bool,
    "disable_skew_correction": bool,
    "product_tour_id": str,
    "process_person_profile": bool,
}
_CLIENT_SETTINGS = {"historical_migration": "OBS_HISTORICAL_MIGRATION / obs.init(historical_migration=True)"}


def to_properties(options: Any) -> dict[str, Any]:
    """The properties ``options`` stand for; ValueError naming what is wrong."""
    if type(options) is not dict and not isinstance(options, Mapping):
        raise ValueError(f"options must be a dict (obs.CaptureOptions), not {type(options).__name__}")
    props: dict[str, Any] = {}
    for key, value in options.items():
        prop = PROPERTIES.get(key)
        if prop is None:
            if key in _CLIENT_SETTINGS:
                raise ValueError(
                    f"{key} is a client setting, not a per-event option: {_CLIENT_SETTINGS[key]}"
                )
            raise ValueError(f"unknown option {key!r} (known: {', '.join(sorted(PROPERTIES))})")
        if value is None:
            continue  # not set: PostHog's default
        want = _TYPES[key]
        if type(value) is not want or (type(value) is str and not value.strip()):
            raise ValueError(
                f"option {key} must be a {'non-empty str' if want is str else 'bool'}, not {value!r}"
            )
        props[prop] = value
    return props
