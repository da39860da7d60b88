"""`@capture_errors` and `capture_exception`: exceptions → `$exception`, once each."""

from __future__ import annotations

import sys
from collections.abc import AsyncGenerator, Callable, Coroutine, Generator, Mapping
from typing import Any, Literal, ParamSpec, Protocol, TypeVar, overload

from .. import _api, _exceptions
from .._log import warn_every
from .._wrap import RERAISE, Decorator, DistinctId, Probe, distinct_id_for, wrap

P = ParamSpec("P")
R = TypeVar("R")
D = TypeVar("D")
D_co = TypeVar("D_co", covariant=True)
Y = TypeVar("Y")
S = TypeVar("S")


def capture_exception(
    exc: BaseException | None = None,
    *,
    distinct_id: Any = None,
    properties: Mapping[str, Any] | None = None,
    level: str = "error",
    fingerprint: str | None = None,
    handled: bool | None = None,
    mechanism: str | Mapping[str, Any] | None = None,
) -> str | None:
    """Send ``exc`` (by default the exception being handled) as an `$exception`; returns its uuid.

    Without a ``distinct_id`` here or from :class:`obs.context`, the event is personless: its
    distinct_id is the event's own uuid and it carries ``$process_person_profile: false``.

    ``handled=False`` marks an error your code did not deal with — middleware reporting what escaped a
    request, a handler that reports and re-raises; the default is handled. ``mechanism`` says how it was
    caught, as the root exception's ``mechanism`` in ``$exception_list``: a type (``"middleware"``) or
    PostHog's ``{"type": ..., "handled": ..., "synthetic": ...}``; ``handled=`` wins over its
    ``"handled"``. Returns None when the SDK is off, ``exc`` was already captured, or the error is being
    rate-limited. Never raises (a malformed ``mechanism`` is logged and left out).
    """
    try:
        if not _api.get_client().enabled:
            return None
        if exc is None:
            exc = sys.exc_info()[1]
            if exc is None:
                _exceptions.warn_no_exception()
                return None
        kind, was_handled, synthetic = _mechanism(mechanism, handled)
        return _exceptions.capture(
            exc,
            distinct_id=distinct_id,
            properties=properties,
            level=level,
            fingerprint=fingerprint,
            handled=was_handled,
            mechanism=kind,
            synthetic=synthetic,
        )
    except Exception as e:
        warn_every("capture-exception", 60, "obs: capture_exception failed: %r", e)
        return None


def _mechanism(spec: Any, handled: Any) -> tuple[str, bool, bool | None]:
    """``capture_exception``'s ``mechanism=``/``handled=`` → (type, handled, synthetic or None)."""
    kind, was_handled, synthetic = "generic", True, None
    if isinstance(spec, str):
        kind = spec or kind
    elif isinstance(spec, Mapping):
        for key, value in spec.items():
            if key == "type" and isinstance(value, str) and value:
                kind = value
            elif key == "handled" and isinstance(value, bool):
                was_handled = value
            elif key == "synthetic" and isinstance(value, bool):
                synthetic = value
            else:  # PostHog's other mechanism fields are obs's to set (exception_id, parent_id, …)
                _bad_mechanism(f"{key!r}: {value!r}")
    elif spec is not None:
        _bad_mechanism(repr(spec))
    if isinstance(handled, bool):
        was_handled = handled
    elif handled is not None:
        _bad_mechanism(f"handled={handled!r}")
    return kind, was_handled, synthetic


def _bad_mechanism(what: str) -> None:
    warn_every(
        "bad-mechanism",
        60,
        "obs: capture_exception: ignored %s (mechanism takes a type string or "
        "{'type': str, 'handled': bool, 'synthetic': bool}; handled a bool)",
        what,
    )


class _CaptureErrors(Probe):
    errors_only = True

    def __init__(
        self,
        reraise: bool,
        default: Any,
        ignore: tuple[type[BaseException], ...],
        properties: Mapping[str, Any] | None,
        distinct_id: DistinctId,
        level: str,
        fingerprint: str | None,
    ) -> None:
        self.reraise = reraise
        self.default = default
        self.ignore = ignore
        self.properties = dict(properties) if properties else None
        self.distinct_id = distinct_id
        self.level = level
        self.fingerprint = fingerprint

    def finish(
        self,
        state: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        result: Any,
        error: BaseException | None,
    ) -> Any:
        # Never SystemExit, KeyboardInterrupt, GeneratorExit or cancellation (asyncio's CancelledError,
        # trio.Cancelled: BaseExceptions, as is a group holding any of them), nor a CLI's way to stop
        # (`typer.Exit(3)` is a RuntimeError) or to report a usage mistake (click's UsageError).
        if error is None or _exceptions.is_control_flow(error) or isinstance(error, self.ignore):
            return RERAISE
        # Checked first so that the distinct_id callable never runs for nothing.
        if _api.get_client().enabled and not _exceptions.is_captured(error):
            did = distinct_id_for(self.distinct_id, args, kwargs)
            _exceptions.capture(
                error,
                distinct_id=did,
                properties=self.properties,
                level=self.level,
                fingerprint=self.fingerprint,
                handled=not self.reraise,
                source="obs.capture_errors",
                mechanism="obs.capture_errors",
            )
        return RERAISE if self.reraise else self.default


class _Swallowing(Protocol[D_co]):
    """What ``capture_errors(reraise=False, default=…)`` returns: the result type widens by the default."""

    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, R]], /
    ) -> Callable[P, Coroutine[Any, Any, R | D_co]]: ...
    @overload
    def __call__(self, fn: Callable[P, AsyncGenerator[Y, S]], /) -> Callable[P, AsyncGenerator[Y, S]]: ...
    @overload
    def __call__(self, fn: Callable[P, Generator[Y, S, R]], /) -> Callable[P, Generator[Y, S, R | D_co]]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> Callable[P, R | D_co]: ...


@overload
def capture_errors(fn: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def capture_errors(
    *,
    reraise: Literal[True] = True,
    ignore: type[BaseException] | tuple[type[BaseException], ...] = (),
    properties: Mapping[str, Any] | None = None,
    distinct_id: DistinctId = None,
    level: str = "error",
    fingerprint: str | None = None,
) -> Decorator: ...
@overload
def capture_errors(
    *,
    reraise: Literal[False],
    default: D,
    ignore: type[BaseException] | tuple[type[BaseException], ...] = (),
    properties: Mapping[str, Any] | None = None,
    distinct_id: DistinctId = None,
    level: str = "error",
    fingerprint: str | None = None,
) -> _Swallowing[D]: ...
@overload
def capture_errors(
    *,
    reraise: Literal[False],
    ignore: type[BaseException] | tuple[type[BaseException], ...] = (),
    properties: Mapping[str, Any] | None = None,
    distinct_id: DistinctId = None,
    level: str = "error",
    fingerprint: str | None = None,
) -> _Swallowing[None]: ...
def capture_errors(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    reraise: bool = True,
    default: Any = None,
    ignore: type[BaseException] | tuple[type[BaseException], ...] = (),
    properties: Mapping[str, Any] | None = None,
    distinct_id: DistinctId = None,
    level: str = "error",
    fingerprint: str | None = None,
) -> Any:
    """Send exceptions raised by the decorated callable as `$exception`, once each.

    Works on functions, coroutine functions, generators and async generators (an exception raised
    mid-iteration is captured), methods, classmethods and staticmethods; bare or with options:

    - ``reraise``: re-raise after capturing (default). With ``reraise=False`` the call returns
      ``default`` instead (a generator simply ends).
    - ``ignore``: exception types that are neither captured nor swallowed.
    - ``properties``: added to the event. ``distinct_id``: a string, or a callable taking the call's
      arguments; by default the one from :class:`obs.context`.
    - ``level`` (`$exception_level`) and ``fingerprint`` (`$exception_fingerprint`).

    Never captured or swallowed: ``SystemExit``, ``KeyboardInterrupt``, ``GeneratorExit``, cancellation,
    and what command-line frameworks raise to stop a command or report a usage mistake — click's and
    Typer's ``Exit``, ``Abort`` and ``ClickException`` (``UsageError``, ``BadParameter``…). An exception
    captured by an inner decorator is not captured again. The success path does no work besides the call
    itself.
    """
    # Mistakes in the options fail here, at decoration, not at the first error.
    ignored = (ignore,) if isinstance(ignore, type) else tuple(ignore)
    if not all(isinstance(t, type) and issubclass(t, BaseException) for t in ignored):
        raise TypeError(f"capture_errors(ignore=...) takes exception types, not {ignore!r}")
    probe = _CaptureErrors(
        reraise, default, ignored, properties, distinct_id, _exceptions.level_name(level), fingerprint
    )
    if fn is None:
        return lambda f: wrap(f, probe)
    return wrap(fn, probe)
