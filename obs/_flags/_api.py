"""The module-level flag functions (``obs.get_feature_flag``, ``obs.evaluate_flags`` …) and
:class:`FeatureDisabled`; each asks the current client's engine, and never raises into the caller."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .. import _current
from .._log import warn_every
from ._result import FlagValue
from ._snapshot import FeatureFlagEvaluations

if TYPE_CHECKING:
    from ._engine import Flags

_MISSING: Any = object()


class FeatureDisabled(Exception):
    """Raised by a ``@feature_gate(..., fallback=obs.FeatureDisabled)`` call whose flag is off."""

    def __init__(self, flag: str, value: Any = None) -> None:
        super().__init__(f"feature flag {flag!r} is off for this call (value {value!r})")
        self.flag = flag
        self.value = value


def current() -> Flags | None:
    """The current client's flags; None while obs is off."""
    return _current.get().flags


def _get(
    name: str,
    key: str,
    distinct_id: Any,
    groups: Any,
    props: Any,
    group_props: Any,
    default: Any,
    report: bool,
    disable_geoip: bool | None,
) -> Any:
    try:
        flags = current()
        if flags is None:
            return default
        return flags.get(key, distinct_id, groups, props, group_props, default, report, disable_geoip)
    except Exception as e:  # never into the caller
        warn_every(f"flags-{name}", 60, "obs: %s(%r) failed: %r", name, key, e)
        return default


async def _aget(
    name: str,
    key: str,
    distinct_id: Any,
    groups: Any,
    props: Any,
    group_props: Any,
    default: Any,
    report: bool,
    disable_geoip: bool | None,
) -> Any:
    try:
        flags = current()
        if flags is None:
            return default
        return await flags.aget(key, distinct_id, groups, props, group_props, default, report, disable_geoip)
    except Exception as e:
        warn_every(f"flags-{name}", 60, "obs: %s(%r) failed: %r", name, key, e)
        return default


def get_feature_flag(
    key: str,
    distinct_id: Any = None,
    *,
    groups: Mapping[str, Any] | None = None,
    person_properties: Mapping[str, Any] | None = None,
    group_properties: Mapping[str, Mapping[str, Any]] | None = None,
    disable_geoip: bool | None = None,
    default: FlagValue | None = None,
) -> FlagValue | None:
    """The flag's value for the user: a variant key, True/False, or ``default`` when it cannot be told
    (obs off, no distinct_id, no such flag, any failure). ``distinct_id`` defaults to ``obs.context``'s.
    ``disable_geoip`` overrides ``OBS_DISABLE_GEOIP`` for this check (PostHog's GeoIP person properties).
    Safe from sync code, threads and inside a running event loop (a cache miss blocks this thread)."""
    return _get(  # type: ignore[no-any-return]
        "get_feature_flag",
        key,
        distinct_id,
        groups,
        person_properties,
        group_properties,
        default,
        True,
        disable_geoip,
    )


async def aget_feature_flag(
    key: str,
    distinct_id: Any = None,
    *,
    groups: Mapping[str, Any] | None = None,
    person_properties: Mapping[str, Any] | None = None,
    group_properties: Mapping[str, Mapping[str, Any]] | None = None,
    disable_geoip: bool | None = None,
    default: FlagValue | None = None,
) -> FlagValue | None:
    """:func:`get_feature_flag` for async code (asyncio or trio); never blocks the event loop."""
    return await _aget(  # type: ignore[no-any-return]
        "aget_feature_flag",
        key,
        distinct_id,
        groups,
        person_properties,
        group_properties,
        default,
        True,
        disable_geoip,
    )


def feature_enabled(
    key: str,
    distinct_id: Any = None,
    *,
    groups: Mapping[str, Any] | None = None,
    person_properties: Mapping[str, Any] | None = None,
    group_properties: Mapping[str, Mapping[str, Any]] | None = None,
    disable_geoip: bool | None = None,
    default: bool = False,
) -> bool:
    """Whether the flag is on (any variant counts) for the user; ``default`` when it cannot be told."""
    value = _get(
        "feature_enabled",
        key,
        distinct_id,
        groups,
        person_properties,
        group_properties,
        _MISSING,
        True,
        disable_geoip,
    )
    return default if value is _MISSING else bool(value)


async def afeature_enabled(
    key: str,
    distinct_id: Any = None,
    *,
    groups: Mapping[str, Any] | None = None,
    person_properties: Mapping[str, Any] | None = None,
    group_properties: Mapping[str, Mapping[str, Any]] | None = None,
    disable_geoip: bool | None = None,
    default: bool = False,
) -> bool:
    """:func:`feature_enabled` for async code; never blocks the event loop."""
    value = await _aget(
        "afeature_enabled",
        key,
        distinct_id,
        groups,
        person_properties,
        group_properties,
        _MISSING,
        True,
        disable_geoip,
    )
    return default if value is _MISSING else bool(value)


def get_feature_flag_payload(
    key: str,
    distinct_id: Any = None,
    *,
    groups: Mapping[str, Any] | None = None,
    person_properties: Mapping[str, Any] | None = None,
    group_properties: Mapping[str, Mapping[str, Any]] | None = None,
    disable_geoip: bool | None = None,
    default: Any = None,
) -> Any:
    """The JSON payload of the value the user gets (decoded), or ``default``. Sends no event."""
    return _get(
        "get_feature_flag_payload",
        key,
        distinct_id,
        groups,
        person_properties,
        group_properties,
        default,
        False,
        disable_geoip,
    )


async def aget_feature_flag_payload(
    key: str,
    distinct_id: Any = None,
    *,
    groups: Mapping[str, Any] | None = None,
    person_properties: Mapping[str, Any] | None = None,
    group_properties: Mapping[str, Mapping[str, Any]] | None = None,
    disable_geoip: bool | None = None,
    default: Any = None,
) -> Any:
    """:func:`get_feature_flag_payload` for async code; never blocks the event loop."""
    return await _aget(
        "aget_feature_flag_payload",
        key,
        distinct_id,
        groups,
        person_properties,
        group_properties,
        default,
        False,
        disable_geoip,
    )


def evaluate_flags(
    distinct_id: Any = None,
    *,
    groups: Mapping[str, Any] | None = None,
    person_properties: Mapping[str, Any] | None = None,
    group_properties: Mapping[str, Mapping[str, Any]] | None = None,
    disable_geoip: bool | None = None,
    flag_keys: Iterable[str] | None = None,
) -> FeatureFlagEvaluations:
    """Every feature flag of the user (only ``flag_keys`` when given) in one snapshot, with one ``/flags``
    request at most — none when local evaluation decides them all. Branch on ``.is_enabled(key)`` /
    ``.get_flag(key)`` and pass it to ``obs.capture(..., flags=snapshot)``. Never raises: obs off, no
    distinct_id or a failure give a snapshot whose reads return their defaults."""
    try:
        flags = current()
        if flags is None:
            return FeatureFlagEvaluations(None, "", {})  # every read gets its default; nothing is sent
        return flags.evaluate(
            distinct_id, groups, person_properties, group_properties, disable_geoip, flag_keys
        )
    except Exception as e:  # never into the caller
        warn_every("flags-evaluate_flags", 60, "obs: evaluate_flags() failed: %r", e)
        return FeatureFlagEvaluations(None, "", {})


async def aevaluate_flags(
    distinct_id: Any = None,
    *,
    groups: Mapping[str, Any] | None = None,
    person_properties: Mapping[str, Any] | None = None,
    group_properties: Mapping[str, Mapping[str, Any]] | None = None,
    disable_geoip: bool | None = None,
    flag_keys: Iterable[str] | None = None,
) -> FeatureFlagEvaluations:
    """:func:`evaluate_flags` for async code (asyncio or trio); never blocks the event loop."""
    try:
        flags = current()
        if flags is None:
            return FeatureFlagEvaluations(None, "", {})
        return await flags.aevaluate(
            distinct_id, groups, person_properties, group_properties, disable_geoip, flag_keys
        )
    except Exception as e:
        warn_every("flags-aevaluate_flags", 60, "obs: aevaluate_flags() failed: %r", e)
        return FeatureFlagEvaluations(None, "", {})
