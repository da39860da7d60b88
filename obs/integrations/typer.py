"""``instrument(app)``: obs for a Typer application, in one call; ``main(app)`` runs one as a console script.

    app = obs.integrations.typer.instrument(typer.Typer())

Every callback of the app runs inside a guard: its commands, its own callback, its result callback, and
those of the Typer apps added with ``add_typer`` (groups in groups too), whether registered before or after
the call. An exception that escapes one — the command's uncaught error — is sent as an `$exception` (level
``fatal``, not handled) with ``component: cli``, the command path (``cli_command: "mycli db migrate"``) and
the parameters of the command and of the groups above it (``cli_params``), then obs is flushed, bounded by
the exit budget of ``OBS_SHUTDOWN_TIMEOUT``, all before Typer prints its traceback. The exception goes on to
Typer untouched: output and exit code are what they are without obs (on Python 3.11+ the guard's frame is
even left out of the traceback Typer prints).

Not errors, never sent: ``typer.Exit``, ``typer.Abort``, click's ``Exit``, ``Abort`` and ``ClickException``
with its subclasses (``UsageError``, ``BadParameter``…), ``SystemExit`` and ``KeyboardInterrupt``.

Parameters are sent as the command received them, each value made JSON-friendly and passed through obs's
secret scrubber; the value of a parameter whose name says it is a secret (``password``, ``api_key``,
``token``, ``--client-secret``…) is replaced by ``[redacted]``. ``capture_params=False`` sends none.

Typer is imported only by the caller; click's current context is read from the click Typer runs on (its
own copy since Typer 0.2x, else the ``click`` package).
"""

from __future__ import annotations

import contextlib
import enum
import functools
import importlib
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .. import _api, _exceptions
from .._log import warn_every
from .._scrub import REDACTED, Scrubber, secret_name

if TYPE_CHECKING:
    import typer

T = TypeVar("T", bound="typer.Typer")

_INSTRUMENTED = "__obs_cli__"  # on an app: it is instrumented
_GUARDED = "__obs_cli_guard__"  # on a callback: it is a guard
_FLUSHED = "__obs_cli_flushed__"  # on an exception: a guard flushed after it, the outer ones need not
_CALLBACKS = ("callback", "result_callback")  # what a TyperInfo / CommandInfo may run
# Options Typer adds to the root command of every app (shell completion): not the app's parameters.
_TYPER_OWN = frozenset({"install_completion", "show_completion"})
_MAX_VALUE = 1024  # characters of one parameter value
_MAX_ITEMS = 50  # items of one list-valued parameter


def instrument(app: T, *, capture_params: bool = True) -> T:
    """Instrument ``app`` and return it: each command's uncaught error is sent and flushed before Typer
    prints it. Commands and sub-apps registered later are covered too. ``capture_params=False`` leaves
    the command's parameters out of the event."""
    _instrument(app, capture_params)
    return app


def main(app: typer.Typer, *, capture_params: bool = True, **kwargs: Any) -> Any:
    """Run ``app``, instrumented, as the body of a ``[project.scripts]`` entry point.

    obs is set up from the environment first (``POSTHOG_API_KEY``, ``OBS_CAPTURE_UNCAUGHT``…) unless
    ``obs.init`` ran before. ``kwargs`` go to the app (``args``, ``prog_name``, ``standalone_mode``…).
    As with ``app()``, the exit code comes as ``SystemExit``; what the command captured is sent first.
    """
    _api.get_client()
    return instrument(app, capture_params=capture_params)(**kwargs)


# ---------------------------------------------------------------- wrapping the app's callbacks


def _instrument(app: Any, capture_params: bool) -> None:
    if getattr(app, _INSTRUMENTED, False):
        return
    setattr(app, _INSTRUMENTED, True)
    _guard_registrations(app, capture_params)
    _guard_all(app, capture_params)


def _guard_all(app: Any, capture_params: bool) -> None:
    """Put a guard around every callback registered on ``app`` so far (idempotent)."""
    from typer import Typer

    infos = [app.info, app.registered_callback, *app.registered_commands, *app.registered_groups]
    for info in infos:
        if info is None:
            continue
        for attr in _CALLBACKS:
            fn = getattr(info, attr, None)
            if callable(fn):  # Typer's unset options are DefaultPlaceholder objects, not callable
                setattr(info, attr, _guard(fn, capture_params))
        sub = getattr(info, "typer_instance", None)
        if isinstance(sub, Typer):  # unset, it is a DefaultPlaceholder
            _instrument(sub, capture_params)


def _guard_registrations(app: Any, capture_params: bool) -> None:
    """Make ``app.command()``, ``app.callback()`` and ``app.add_typer()`` guard what they register."""
    command, callback, add_typer = app.command, app.callback, app.add_typer

    def guarding(decorator: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def register(fn: Any) -> Any:
            out = decorator(fn)  # the user's own function: calling it directly stays unguarded
            _guard_all(app, capture_params)
            return out

        return register

    @functools.wraps(command)
    def command_(*args: Any, **kwargs: Any) -> Any:
        return guarding(command(*args, **kwargs))

    @functools.wraps(callback)
    def callback_(*args: Any, **kwargs: Any) -> Any:
        return guarding(callback(*args, **kwargs))

    @functools.wraps(add_typer)
    def add_typer_(*args: Any, **kwargs: Any) -> Any:
        out = add_typer(*args, **kwargs)
        _guard_all(app, capture_params)
        return out

    app.command, app.callback, app.add_typer = command_, callback_, add_typer_


def _guard(fn: Callable[..., Any], capture_params: bool) -> Callable[..., Any]:
    if getattr(fn, _GUARDED, False):
        return fn

    # functools.wraps keeps what Typer reads from the function: its signature (through __wrapped__), type
    # hints, name and docstring.
    @functools.wraps(fn)
    def guard(*args: Any, **kwargs: Any) -> Any:
        _rich_traceback_omit = True  # rich, which prints Typer's tracebacks, skips this frame
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            tb = exc.__traceback__
            if tb is not None and tb.tb_frame is sys._getframe():
                # Re-raised without this frame (Python 3.11+; ignored before): the traceback Typer
                # prints, and the one sent, start at the user's function.
                exc.__traceback__ = tb.tb_next
            _report(exc, capture_params)
            raise

    setattr(guard, _GUARDED, True)
    return guard


# ---------------------------------------------------------------- the event


def _report(exc: Exception, capture_params: bool) -> None:
    """Send ``exc`` (unless it is not an error, or was sent already), then flush once. Never raises."""
    try:
        if _exceptions.is_control_flow(exc):
            return
        client = _api.get_client()
        if not client.enabled:
            return
        if not _exceptions.is_captured(exc):
            _exceptions.capture(
                exc,
                properties=_properties(client, capture_params),
                level="fatal",
                handled=False,
                source="obs.integrations.typer",
                mechanism="obs.typer",
            )
        if not getattr(exc, _FLUSHED, False):
            with contextlib.suppress(Exception):  # an exception type with __slots__: flushed again, no worse
                setattr(exc, _FLUSHED, True)
            client.flush_before_exit()
    except Exception as e:
        warn_every("typer-capture", 60, "obs: could not capture a command's error: %r", e)


def _properties(client: Any, capture_params: bool) -> dict[str, Any]:
    props: dict[str, Any] = {"component": "cli"}
    ctx = _current_context()
    if ctx is None:
        return props
    props["cli_command"] = ctx.command_path
    if capture_params:
        settings = client.settings
        scrub = Scrubber(settings.scrub_secrets, settings.scrub_patterns)
        props["cli_params"] = _params(ctx, scrub, redact_names=settings.scrub_secrets)
    return props


def _current_context() -> Any:
    """The click context of the running command, from the click that Typer runs on."""
    for name in ("typer._click.globals", "click.globals"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        return module.get_current_context(silent=True)
    return None


def _params(ctx: Any, scrub: Scrubber, *, redact_names: bool) -> dict[str, Any]:
    """The parameters of the command and of the groups above it; the command's win a name they share."""
    chain = []
    while ctx is not None:
        chain.append(ctx)
        ctx = ctx.parent
    params: dict[str, Any] = {}
    for level in reversed(chain):
        for name, value in (level.params or {}).items():
            if level.parent is None and name in _TYPER_OWN:
                continue
            secret = redact_names and secret_name(str(name)) and value is not None and type(value) is not bool
            params[str(name)] = REDACTED if secret else _value(value, scrub)
    return params


def _value(value: Any, scrub: Scrubber) -> Any:
    """A parameter's value as JSON takes it: scalars kept, paths, enums and files by what names them,
    sequences item by item, anything else as text; every text scrubbed and cut."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, enum.Enum):
        return _value(value.value, scrub)
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_value(v, scrub) for v in list(value)[:_MAX_ITEMS]]
    if isinstance(value, os.PathLike):
        text = os.fspath(value)
        text = text if isinstance(text, str) else os.fsdecode(text)
    elif hasattr(value, "read") or hasattr(value, "write"):  # click.File: the file, not the object
        text = str(getattr(value, "name", type(value).__name__))
    else:
        text = value if isinstance(value, str) else str(value)
    if len(text) <= _MAX_VALUE:
        return scrub(text)
    head = scrub(text[: _MAX_VALUE + 512])[:_MAX_VALUE]  # read past the cut: a secret there is seen whole
    return f"{head}…[truncated {len(text) - _MAX_VALUE} chars]"
