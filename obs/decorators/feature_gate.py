"""`@feature_gate`: run the callable only for users the feature flag is on for (or who get a variant)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar, overload

from .. import _flags
from .._flags import FeatureDisabled, FlagValue
from .._log import warn_every
from .._wrap import RUN, Decorator, DistinctId, Probe, distinct_id_for, wrap
from .capture_errors import _Swallowing

D = TypeVar("D")
Spec = Mapping[str, Any] | Callable[..., Any] | None


class _FeatureGate(Probe):
    gates = True

    def __init__(
        self,
        key: str,
        variant: str | None,
        default: FlagValue | None,
        fallback: Any,
        distinct_id: DistinctId,
        groups: Any,
        person_properties: Any,
        disable_geoip: bool | None,
    ) -> None:
        self.key = key
        self.variant = variant
        self.default = default
        self.distinct_id = distinct_id
        self.groups = groups
        self.person_properties = person_properties
        self.disable_geoip = disable_geoip
        self.raises = fallback if isinstance(fallback, type) and issubclass(fallback, BaseException) else None
        self.fallback = _replacement(fallback)

    def _decide(self, value: Any) -> Any:
        on = bool(value) if self.variant is None else value == self.variant
        if on:
            return RUN
        exc_type = self.raises
        if exc_type is None:
            return self.fallback
        key = self.key

        def raise_disabled(*args: Any, **kwargs: Any) -> Any:
            if issubclass(exc_type, FeatureDisabled):
                raise exc_type(key, value)
            raise exc_type(f"feature flag {key!r} is off for this call")

        return raise_disabled

    def _failed(self, e: Exception) -> Any:
        warn_every(f"feature-gate-{self.key}", 60, "obs: @feature_gate(%r): %r; using default", self.key, e)
        return self._decide(self.default)

    def gate(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        try:
            flags = _flags.current()
            if flags is None:  # obs is off: the default decides
                return self._decide(self.default)
            value = flags.get(
                self.key,
                distinct_id_for(self.distinct_id, args, kwargs),
                _resolve(self.groups, args, kwargs),
                _resolve(self.person_properties, args, kwargs),
                None,
                self.default,
                disable_geoip=self.disable_geoip,
            )
        except Exception as e:  # a groups/person_properties callable failed: the default decides
            return self._failed(e)
        return self._decide(value)

    async def agate(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        try:
            flags = _flags.current()
            if flags is None:
                return self._decide(self.default)
            value = await flags.aget(
                self.key,
                distinct_id_for(self.distinct_id, args, kwargs),
                _resolve(self.groups, args, kwargs),
                _resolve(self.person_properties, args, kwargs),
                None,
                self.default,
                disable_geoip=self.disable_geoip,
            )
        except Exception as e:
            return self._failed(e)
        return self._decide(value)


def _resolve(spec: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return spec if spec is None or not callable(spec) else spec(*args, **kwargs)


def _replacement(fallback: Any) -> Callable[..., Any]:
    """What runs instead of the callable (exception classes are raised by ``_decide``): raise an
    exception instance, call a callable, or return a value."""
    if isinstance(fallback, BaseException):
        exc = fallback

        def raise_instance(*args: Any, **kwargs: Any) -> Any:
            raise exc

        return raise_instance
    if callable(fallback):
        return fallback  # type: ignore[no-any-return]
    return lambda *args, **kwargs: fallback


@overload
def feature_gate(
    key: str,
    /,
    *,
    default: FlagValue | None = False,
    variant: str | None = None,
    fallback: type[BaseException] | BaseException | Callable[..., Any],
    distinct_id: DistinctId = None,
    groups: Spec = None,
    person_properties: Spec = None,
    disable_geoip: bool | None = None,
) -> Decorator: ...
@overload
def feature_gate(
    key: str,
    /,
    *,
    default: FlagValue | None = False,
    variant: str | None = None,
    fallback: D,
    distinct_id: DistinctId = None,
    groups: Spec = None,
    person_properties: Spec = None,
    disable_geoip: bool | None = None,
) -> _Swallowing[D]: ...
@overload
def feature_gate(
    key: str,
    /,
    *,
    default: FlagValue | None = False,
    variant: str | None = None,
    distinct_id: DistinctId = None,
    groups: Spec = None,
    person_properties: Spec = None,
    disable_geoip: bool | None = None,
) -> _Swallowing[None]: ...
def feature_gate(
    key: str,
    /,
    *,
    default: FlagValue | None = False,
    variant: str | None = None,
    fallback: Any = None,
    distinct_id: DistinctId = None,
    groups: Spec = None,
    person_properties: Spec = None,
    disable_geoip: bool | None = None,
) -> Any:
    """Run the decorated callable only when feature flag ``key`` is on for the caller's user (with
    ``variant``: only when they get that variant); otherwise return ``fallback``.

    - ``fallback``: a value, or a callable taking the same arguments (a coroutine function for an async
      callable is awaited), or an exception class or instance to raise — ``obs.FeatureDisabled`` says
      which flag was off.
    - ``default``: the flag's value when it cannot be evaluated (obs off, no distinct_id, a failure).
    - ``distinct_id``, ``groups``, ``person_properties``: values, or callables given the call's
      arguments; the distinct_id defaults to :class:`obs.context`'s.
    - ``disable_geoip``: overrides ``OBS_DISABLE_GEOIP`` for this gate's checks.

    Evaluations are cached (``OBS_FLAGS_CACHE_TTL``), so a hot gate costs a dictionary lookup; async
    callables await a cache miss without blocking the event loop. Generators: the flag is checked when
    iteration starts, and the fallback's result is iterated instead.
    """
    if not isinstance(key, str) or not key:
        raise ValueError("@feature_gate needs a flag key, e.g. @feature_gate('new-checkout')")
    probe = _FeatureGate(
        key, variant, default, fallback, distinct_id, groups, person_properties, disable_geoip
    )
    return lambda fn: wrap(fn, probe)
