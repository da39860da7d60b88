"""`$feature_flag_called` and `$experiment_exposure`: what a flag read sends, deduplicated as posthog-python
does, and queued through the client like any other event."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._result import FlagValue, Result

if TYPE_CHECKING:
    from .._client import Client

_MAX_REPORTED = 50_000  # $feature_flag_called (and exposure) keys already sent


# posthog-python's `$experiment_exposure` copies these from the `$feature_flag_called` of the same read.
_EXPOSURE_COPIES = (
    "$feature_flag_id",
    "$feature_flag_version",
    "$feature_flag_request_id",
    "$feature_flag_evaluated_at",
)


def _called_properties(result: Result) -> dict[str, Any]:
    props: dict[str, Any] = {"locally_evaluated": result.local, **result.meta}
    if result.payload is not None:
        props["$feature_flag_payload"] = result.payload
    return props


def _groups_key(groups: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """Groups as part of the `$feature_flag_called` dedup key: group-scoped flags report per group."""
    return tuple(sorted((str(k), str(v)) for k, v in groups.items()))


class Reporter:
    """Sends a flag read's events through ``client``, once per dedup key (the newest 50,000 are kept)."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self.reported: dict[tuple[Any, ...], None] = {}
        self._lock = threading.Lock()

    def report(
        self,
        did: str,
        key: str,
        value: FlagValue | None,
        props: Result | dict[str, Any],
        attribution: tuple[Any, ...] | None,
        groups: Mapping[str, Any] | None,
        geoip: bool | None,
    ) -> None:
        """`$feature_flag_called` once per (distinct_id, flag, value, groups[, attribution]) as
        posthog-python dedups it, and `$experiment_exposure` once per experiment rule and variant. A
        Result's properties are built only when an event is sent."""
        gkey = _groups_key(groups) if groups else ()
        called = (did, key, value, gkey) if attribution is None else (did, key, value, gkey, *attribution)
        exposed = None
        if attribution is not None and attribution[3] is not None:  # a complete experiment split
            _, rule_id, _, variant_key = attribution
            exposed = ("$experiment_exposure", did, key, gkey, rule_id, variant_key)
        reported = self.reported
        if called in reported and (exposed is None or exposed in reported):
            return  # the hot path: reported already
        if isinstance(props, Result):
            props = _called_properties(props)
        if geoip is not None:  # the call's own choice, over OBS_DISABLE_GEOIP's on every event
            props["$geoip_disable"] = geoip
        if self._reserve(called):
            extra = {"flag": key, "response": value}
            put = self._client._put(
                "feature_flag_called", "$feature_flag_called", props, did, None, None, groups, "batch", extra
            )
            if put is None:  # not queued (full, closed): a later read tries again
                reported.pop(called, None)
        if exposed is not None and self._reserve(exposed):
            exposure = {k: props[k] for k in _EXPOSURE_COPIES if k in props}
            exposure.update(
                {
                    "$feature_flag": key,
                    "$feature_flag_response": value,
                    "locally_evaluated": props.get("locally_evaluated") is True,
                    "$feature_flag_variant_key": exposed[5],
                    "$feature_flag_rule_id": exposed[4],
                }
            )
            if geoip is not None:
                exposure["$geoip_disable"] = geoip
            put = self._client._put(
                "custom", "$experiment_exposure", exposure, did, None, None, groups, "batch", None
            )
            if put is None:
                reported.pop(exposed, None)

    def _reserve(self, dedup: tuple[Any, ...]) -> bool:
        """Claim ``dedup`` for one event; False when it was sent (or is being sent) already."""
        reported = self.reported
        with self._lock:
            if dedup in reported:
                return False
            if len(reported) >= _MAX_REPORTED:
                with contextlib.suppress(KeyError, RuntimeError, StopIteration):
                    del reported[next(iter(reported))]
            reported[dedup] = None
            return True
