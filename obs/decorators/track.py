"""`@track`: one product event per call, with its duration and outcome."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar, overload

from .. import _api, _flags
from .._cancel import is_cancellation
from .._wrap import RERAISE, Decorator, DistinctId, Probe, distinct_id_for, wrap

P = ParamSpec("P")
R = TypeVar("R")
_MISSING = object()
_perf_ns = time.perf_counter_ns


class _Track(Probe):
    idle_when_disabled = True

    def __init__(
        self,
        fn: Callable[..., Any],
        event: str,
        properties: Mapping[str, Any] | None,
        capture_args: Sequence[str],
        capture_result: bool,
        distinct_id: Any,
    ) -> None:
        target = getattr(fn, "__func__", fn)
        self.event = event
        self.base = {"source": f"{target.__module__}.{target.__qualname__}", **(properties or {})}
        self.args = _arg_getters(target, capture_args)
        self.capture_result = capture_result
        self.distinct_id = distinct_id

    def start(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        c = _api.get_client()
        return _perf_ns() if c.enabled else None

    def finish(
        self,
        state: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        result: Any,
        error: BaseException | None,
    ) -> Any:
        if state is None:  # the SDK was off when the call started
            return RERAISE
        props = dict(self.base)
        props["duration_ms"] = (_perf_ns() - state) / 1e6
        if error is None or isinstance(error, GeneratorExit):
            props["success"] = True
            if error is not None:
                props["closed_early"] = True  # the consumer stopped iterating before the end
            elif self.capture_result:
                props["result"] = result
        elif is_cancellation(error):
            # Neither a success nor a failure: no `success` at all, so success-rate queries
            # (success = true / success = false) leave the call out, and no `error_type`.
            props["cancelled"] = True
        else:
            props["success"] = False
            props["error_type"] = type(error).__qualname__
        for name, index, default in self.args:
            value = kwargs.get(name, _MISSING)
            if value is _MISSING:
                value = args[index] if index is not None and index < len(args) else default
            if value is not _MISSING:
                props[f"arg_{name}"] = value
        did = distinct_id_for(self.distinct_id, args, kwargs)
        flags = _flags.properties_for(did)
        if flags:
            props.update(flags)
        c = _api.get_client()
        c._put("custom", self.event, props, did, None, None, None, "batch", None)
        return RERAISE


def _arg_getters(fn: Callable[..., Any], names: Sequence[str]) -> list[tuple[str, int | None, Any]]:
    """(name, position or None, default) for each captured argument; unknown names fail at decoration."""
    if not names:
        return []
    params = list(inspect.signature(fn).parameters.values())
    by_name = {p.name: (i, p) for i, p in enumerate(params)}
    getters = []
    for name in names:
        if name not in by_name:
            raise TypeError(f"@track: {fn.__qualname__} has no parameter {name!r} (capture_args)")
        i, p = by_name[name]
        positional = p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        default = _MISSING if p.default is p.empty else p.default
        getters.append((name, i if positional else None, default))
    return getters


@overload
def track(event: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def track(
    event: str,
    /,
    *,
    properties: Mapping[str, Any] | None = None,
    capture_args: Sequence[str] = (),
    capture_result: bool = False,
    distinct_id: DistinctId = None,
) -> Decorator: ...
def track(
    event: str | Callable[..., Any],
    /,
    *,
    properties: Mapping[str, Any] | None = None,
    capture_args: Sequence[str] = (),
    capture_result: bool = False,
    distinct_id: DistinctId = None,
) -> Any:
    """Send one product event per call: ``@track("report_exported", properties={...})``.

    The event carries ``duration_ms``, ``success``, ``source`` (the function's dotted name), the
    environment/release super-properties and ``properties``; a failure adds ``error_type`` (the exception
    is not captured — combine with ``@capture_errors`` for that). A cancelled call (asyncio, trio or
    anyio cancellation) is no failure: it has ``cancelled: true`` and neither ``success`` nor
    ``error_type``. Arguments are recorded only when named
    in ``capture_args`` (as ``arg_<name>``), the return value only with ``capture_result=True``. A
    generator is tracked from first ``next`` to the end; stopped early it has ``closed_early: true``.
    Used bare (``@track``) the event is named after the function.
    """
    if not isinstance(event, str):  # used bare: @track on a function, classmethod or staticmethod
        fn = event
        return wrap(fn, _Track(fn, getattr(fn, "__name__", "call"), None, (), False, None))
    name = event
    if not name:
        raise ValueError("@track needs an event name, e.g. @track('report_exported')")

    def decorate(fn: Callable[..., Any]) -> Any:
        return wrap(fn, _Track(fn, name, properties, tuple(capture_args), capture_result, distinct_id))

    return decorate
