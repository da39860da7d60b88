"""Exceptions → `$exception` events in PostHog's error-tracking format.

Split in two, like every event: :func:`capture` runs on the caller's thread and keeps only what is needed
(the exception, the head of its traceback, the rate-limit verdict, the active trace ids); :func:`fields`
runs on the worker and does the expensive part — walking the cause/context chain and exception groups,
formatting frames, reading source lines and scrubbing secrets. The output has the structure of
posthog-python's ``capture_exception`` (`tests/test_parity.py` compares the two).
"""

from __future__ import annotations

import contextlib
import linecache
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, cast

from . import _api, _flags, _trace
from ._log import warn_every

if TYPE_CHECKING:
    from ._client import Client

CAPTURED = "__obs_captured__"  # set on an exception once sent, so outer handlers do not send it again
_MAX_EXCEPTIONS = 50  # entries in one $exception_list, as posthog-python
_MAX_LINE = 1024
_CONTEXT_LINES = 5
# Our own wrapper frames carry no information for the user; they are left out of stack traces.
_HIDDEN_MODULES = frozenset({"obs.decorators._wrap", "obs._exceptions", "obs._uncaught"})
if sys.version_info >= (3, 11):
    _GROUPS: tuple[type[BaseException], ...] = (BaseExceptionGroup,)  # noqa: F821
else:  # pragma: no cover - Python 3.10 has no exception groups
    _GROUPS = ()
_LEVELS = {
    "fatal": "fatal",
    "critical": "fatal",
    "error": "error",
    "warning": "warning",
    "warn": "warning",
    "log": "log",
    "info": "info",
    "debug": "debug",
}


# ---------------------------------------------------------------- caller's thread


def is_captured(exc: BaseException) -> bool:
    """Whether obs already sent ``exc`` (an inner decorator, a manual capture, a framework handler)."""
    return getattr(exc, CAPTURED, None) is not None


def capture(
    exc: BaseException,
    *,
    distinct_id: Any = None,
    properties: Mapping[str, Any] | None = None,
    level: str = "error",
    fingerprint: str | None = None,
    handled: bool = True,
    source: str | None = None,
    mechanism: str = "generic",
) -> str | None:
    """Queue ``exc`` as an `$exception` with the current client; its uuid, or None if obs is off, or
    ``exc`` was captured before or is rate-limited."""
    current = _api.get_client()
    if not current.enabled or getattr(exc, CAPTURED, None) is not None:
        return None
    client = cast("Client", current)
    tb = exc.__traceback__
    stack = _current_stack() if tb is None else None  # never raised: the stack where it was reported
    props: dict[str, Any] = {}
    limiter = client._error_limiter
    if limiter is not None:
        allowed, suppressed = limiter.check(_key(exc, tb, client._in_app))
        if not allowed:
            client._stats.incr("exceptions_rate_limited")
            _mark(exc, "rate-limited")
            return None
        if suppressed:
            props["$exception_suppressed_count"] = suppressed
    ids = _trace.active_ids()
    if ids:
        props.update(ids)
    flags = _flags.properties_for(distinct_id)  # the variants this user saw, to tie the error to them
    if flags:
        props.update(flags)
    if source:
        props["$exception_source"] = source
    if properties:
        props.update(properties)
    extra = {
        "exc": exc,
        "tb": tb,
        "stack": stack,
        "level": _LEVELS.get(str(level).lower()) or _unknown_level(level),
        "fingerprint": fingerprint,
        "mechanism": {"type": mechanism, "handled": handled},
    }
    u = client._put("exception", "$exception", props, distinct_id, None, None, None, "batch", extra)
    if u is not None:
        _mark(exc, u)
    return u


def level_name(level: str) -> str:
    """PostHog's name for ``level``; ValueError for one it does not know (a decorator's option)."""
    name = _LEVELS.get(str(level).lower())
    if name is None:
        raise ValueError(f"level must be one of {', '.join(_LEVELS)}, not {level!r}")
    return name


def _unknown_level(level: Any) -> str:
    warn_every("bad-level", 60, "obs: unknown exception level %r; sent as 'error'", level)
    return "error"


def _mark(exc: BaseException, value: str) -> None:
    # An exception type with __slots__ cannot be marked: it may be captured twice, nothing worse.
    with contextlib.suppress(Exception):
        setattr(exc, CAPTURED, value)


def _current_stack() -> list[tuple[FrameType, int]]:
    frames = []
    f: FrameType | None = sys._getframe(1)
    while f is not None and f.f_globals.get("__name__", "").startswith("obs."):
        f = f.f_back
    while f is not None:
        frames.append((f, f.f_lineno))
        f = f.f_back
    frames.reverse()  # outermost first, as a traceback
    return frames


def _key(exc: BaseException, tb: TracebackType | None, in_app: InApp) -> tuple[Any, ...]:
    """Identity of an error for rate limiting: its type and the in-app lines it went through (all lines
    when none is in-app, so that errors from different places never share a budget)."""
    lines: list[Any] = []
    in_app_lines: list[Any] = []
    while tb is not None:
        frame = tb.tb_frame
        code = frame.f_code
        line = (id(code), tb.tb_lineno)
        lines.append(line)
        if in_app(code.co_filename, frame.f_globals.get("__name__")):
            in_app_lines.append(line)
        tb = tb.tb_next
    return (type(exc), *(in_app_lines or lines))


class RateLimiter:
    """At most ``limit`` identical exceptions per ``window`` seconds; counts what it holds back.

    The first exception let through after a suppressed stretch reports how many were held back
    (`$exception_suppressed_count`). Keys are bounded: the oldest are forgotten first.
    """

    _MAX_KEYS = 1024

    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._buckets: dict[tuple[Any, ...], list[float]] = {}  # key → [window start, sent, suppressed]
        self._lock = threading.Lock()

    def check(self, key: tuple[Any, ...]) -> tuple[bool, int]:
        now = self._clock()
        with self._lock:
            b = self._buckets.get(key)
            if b is None:
                if len(self._buckets) >= self._MAX_KEYS:
                    del self._buckets[next(iter(self._buckets))]
                self._buckets[key] = [now, 1, 0]
                return True, 0
            if now - b[0] >= self.window:
                suppressed = int(b[2])
                b[0], b[1], b[2] = now, 1, 0
                return True, suppressed
            if b[1] < self.limit:
                b[1] += 1
                suppressed, b[2] = int(b[2]), 0
                return True, suppressed
            b[2] += 1
            return False, 0


# ---------------------------------------------------------------- in-app


def _external_roots() -> tuple[str, ...]:
    import sysconfig

    roots = {os.path.dirname(os.path.abspath(__file__))}  # obs itself
    for name in ("stdlib", "platstdlib", "purelib", "platlib"):
        path = sysconfig.get_paths().get(name)
        if path:
            roots.add(os.path.abspath(path))
    return tuple(sorted(r.rstrip(os.sep) + os.sep for r in roots))


_external: tuple[str, ...] | None = None


class InApp:
    """Tells application frames from the standard library, installed packages and obs itself.

    ``modules`` (``OBS_IN_APP_MODULES``) are the application even where installed (site-packages).
    Answers are cached per file.
    """

    def __init__(self, modules: Sequence[str] = ()) -> None:
        self.modules = tuple(m for m in modules if m)
        self._cache: dict[str, bool] = {}

    def __call__(self, filename: str, module: str | None) -> bool:
        v = self._cache.get(filename)
        if v is None:
            if len(self._cache) > 4096:
                self._cache.clear()
            v = self._cache[filename] = self._decide(filename, module)
        return v

    def _decide(self, filename: str, module: str | None) -> bool:
        global _external
        if module and any(module == m or module.startswith(m + ".") for m in self.modules):
            return True
        if not filename or filename.startswith("<"):  # <string>, <stdin>: no file to point at
            return False
        if _external is None:
            _external = _external_roots()
        path = os.path.abspath(filename)
        return (
            not path.startswith(_external)
            and f"{os.sep}site-packages{os.sep}" not in path
            and f"{os.sep}dist-packages{os.sep}" not in path
        )


# ---------------------------------------------------------------- worker


class Formatter:
    """Turns what :func:`capture` queued into ExceptionEvent fields, on the worker."""

    def __init__(self, scrub: Callable[[str], str], in_app: InApp) -> None:
        self.scrub = scrub
        self.in_app = in_app

    def fields(self, extra: dict[str, Any]) -> dict[str, Any]:
        exceptions: list[dict[str, Any]] = []
        self._walk(extra["exc"], extra["tb"], extra["stack"], None, None, exceptions, set())
        root = exceptions[0]["mechanism"]
        root.update(extra["mechanism"])
        root["synthetic"] = extra["stack"] is not None
        return {"exception_list": exceptions, "level": extra["level"], "fingerprint": extra["fingerprint"]}

    def _walk(
        self,
        exc: BaseException,
        tb: TracebackType | None,
        stack: list[tuple[FrameType, int]] | None,
        parent_id: int | None,
        source: str | None,
        out: list[dict[str, Any]],
        seen: set[int],
    ) -> None:
        """Depth first, as posthog-python: the exception, its cause (or context), then group members."""
        if id(exc) in seen or len(out) >= _MAX_EXCEPTIONS:
            return
        seen.add(id(exc))
        exception_id = len(out)
        mechanism: dict[str, Any] = {"exception_id": exception_id}
        if parent_id is None:
            mechanism.update(type="generic", handled=True)
        else:
            mechanism.update(parent_id=parent_id, type="chained", source=source)
        mechanism["synthetic"] = False
        errno = getattr(exc, "errno", None)
        if errno is not None:
            mechanism["meta"] = {"errno": {"number": errno}}
        if isinstance(exc, _GROUPS):
            mechanism["is_exception_group"] = True
        cls = type(exc)
        entry: dict[str, Any] = {
            "mechanism": mechanism,
            "module": None if cls.__module__ in ("builtins", "__builtins__") else cls.__module__,
            "type": cls.__qualname__,
            "value": self.scrub(_message(exc)),
        }
        if stack is not None:
            frames = [self._frame(f, n) for f, n in stack]
        else:
            frames = []
            while tb is not None:
                if tb.tb_frame.f_globals.get("__name__") not in _HIDDEN_MODULES:
                    frames.append(self._frame(tb.tb_frame, tb.tb_lineno))
                tb = tb.tb_next
        if frames:
            entry["stacktrace"] = {"frames": frames, "type": "raw"}
        out.append(entry)
        if exc.__suppress_context__:
            cause, relation = exc.__cause__, "cause"
        else:
            cause, relation = exc.__context__, "context"
        if cause is not None:
            self._walk(cause, cause.__traceback__, None, exception_id, relation, out, seen)
        if isinstance(exc, _GROUPS):
            for member in exc.exceptions:
                self._walk(member, member.__traceback__, None, exception_id, "member", out, seen)

    def _frame(self, frame: FrameType, lineno: int) -> dict[str, Any]:
        code, globs = frame.f_code, frame.f_globals
        path, module = code.co_filename, globs.get("__name__")
        pre, line, post = self._context(path, lineno, globs)
        return {
            "platform": "python",
            "filename": _filename_for_module(module, path) or None,
            "abs_path": os.path.abspath(path) if path else None,
            "function": code.co_name or "<unknown>",
            "module": module,
            "lineno": lineno,
            "pre_context": pre,
            "context_line": line,
            "post_context": post,
            "in_app": self.in_app(path, module),
        }

    def _context(
        self, path: str, lineno: int, globs: dict[str, Any]
    ) -> tuple[list[str], str | None, list[str]]:
        try:
            source = linecache.getlines(path, globs)
        except Exception:
            return [], None, []
        i = lineno - 1
        if not source or not 0 <= i < len(source):
            return [], None, []
        lo, hi = max(0, i - _CONTEXT_LINES), min(i + 1 + _CONTEXT_LINES, len(source))
        lines = [self.scrub(_cut(s.rstrip("\r\n"))) for s in source[lo:hi]]
        return lines[: i - lo], lines[i - lo], lines[i - lo + 1 :]


def _message(exc: BaseException) -> str:
    try:
        msg = getattr(exc, "message", "") or getattr(exc, "detail", "") or exc
        return _cut(str(msg))
    except Exception:
        return "<unprintable exception>"


def _cut(s: str) -> str:
    return s if len(s) <= _MAX_LINE else s[: _MAX_LINE - 3] + "..."


def _filename_for_module(module: str | None, abs_path: str | None) -> str | None:
    """The path relative to the package root, as posthog-python (and Sentry) report it."""
    if not abs_path or not module:
        return abs_path
    try:
        if abs_path.endswith(".pyc"):
            abs_path = abs_path[:-1]
        base = module.split(".", 1)[0]
        if base == module:
            return os.path.basename(abs_path)
        base_file = getattr(sys.modules.get(base), "__file__", None)
        if not base_file:
            return abs_path
        return abs_path.split(base_file.rsplit(os.sep, 2)[0], 1)[-1].lstrip(os.sep)
    except Exception:
        return abs_path


def warn_no_exception() -> None:
    warn_every("no-exception", 60, "obs: capture_exception() called with no exception being handled")
