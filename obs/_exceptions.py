"""Exceptions → `$exception` events in PostHog's error-tracking format.

Split in two, like every event: :func:`capture` runs on the caller's thread and keeps only what is needed
(the exception, the head of its traceback, the rate-limit verdict, the active trace ids); :func:`fields`
runs on the worker and does the expensive part — walking the cause/context chain and exception groups,
formatting frames, reading source lines and scrubbing secrets. The output has the structure of
posthog-python's ``capture_exception`` (`tests/test_parity.py` compares the two), trimmed to fit the
per-event size limit (`max_event_bytes`) instead of being dropped whole at the sink.
"""

from __future__ import annotations

import contextlib
import linecache
import os
import re
import sys
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, cast

from . import _current, _flags, _kinds, _lazy, _trace
from ._log import warn_every

if TYPE_CHECKING:
    from pydantic_core import to_json

    from ._client import Client
    from ._config import Settings
    from ._serialize import Problems
else:  # loaded when an exception is first captured: enabling obs does not load pydantic
    to_json = _lazy.function("pydantic_core", "to_json")

CAPTURED = "__obs_captured__"  # set on an exception once sent, so outer handlers do not send it again
_MAX_EXCEPTIONS = 50  # entries in one $exception_list, as posthog-python
_MAX_MESSAGE = 1024  # characters of an exception message
_MAX_LINE = 1024  # characters of the line a frame was executing
_MAX_CONTEXT = 256  # characters of each line around it
_CONTEXT_LINES = 5
# Frames per stack trace. A deeper one (a RecursionError has ~1,000) keeps its outermost fifth and its
# innermost four fifths, where it broke, around one synthetic frame that says how many were left out.
_MAX_FRAMES = 100
# Characters the scrubber reads past a cut, so that a secret straddling it (keys, tokens, a JWT's header
# and payload) is still recognised whole, at a bounded cost for a line of any length.
_SCRUB_MARGIN = 512
# The per-event limit (`max_event_bytes`) when the caller did not say; the setting's default.
_DEFAULT_MAX_EVENT_BYTES = 900 * 1024
# Part of the limit left to the rest of the event (your properties, flags, context, super-properties).
_RESERVE = 16 * 1024
# An encoded JSON string never takes more than 6 bytes per character (`\u001f`): below a sixth of the
# budget by a cheap character count, an exception surely fits and is never encoded here.
_WORST_BYTES_PER_CHAR = 6
_SHORT_MESSAGE = 128  # a message's length once everything else is gone
_TRUNCATED = re.compile(r"…\[truncated (\d+) chars\]\Z")
# Our own wrapper frames carry no information for the user; they are left out of stack traces.
_HIDDEN_MODULES = frozenset({"obs._wrap", "obs._exceptions", "obs._uncaught"})
if sys.version_info >= (3, 11):
    _GROUPS: tuple[type[BaseException], ...] = (BaseExceptionGroup,)  # noqa: F821
else:  # pragma: no cover - Python 3.10 has no exception groups
    _GROUPS = ()
# Exceptions command-line frameworks raise to end a command on purpose (`typer.Exit(3)`, `click.Abort`) or to
# tell its user they typed it wrong (`click.UsageError`, `BadParameter`, any `ClickException`): never bugs.
# Named, not imported, so that obs never imports click; Typer >= 0.2x carries its own copy of click.
_CLI_EXITS = frozenset(
    {
        ("click.exceptions", "ClickException"),
        ("click.exceptions", "Abort"),
        ("click.exceptions", "Exit"),
        ("typer._click.exceptions", "ClickException"),
        ("typer.exceptions", "Abort"),
        ("typer.exceptions", "Exit"),
    }
)
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


def is_control_flow(exc: BaseException) -> bool:
    """Whether ``exc`` ends a program or command on purpose rather than reporting an error: what no hook or
    decorator of obs ever captures. ``SystemExit``, ``KeyboardInterrupt``, ``GeneratorExit`` and
    cancellation (any non-``Exception``), and click's and Typer's ``Exit``, ``Abort`` and ``ClickException``
    (``UsageError``, ``BadParameter``…), subclasses included."""
    if not isinstance(exc, Exception):
        return True
    return any((c.__module__, c.__qualname__) in _CLI_EXITS for c in type(exc).__mro__)


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
    synthetic: bool | None = None,
) -> str | None:
    """Queue ``exc`` as an `$exception` with the current client; its uuid, or None if obs is off, or
    ``exc`` was captured before or is rate-limited.

    ``mechanism``, ``handled`` and ``synthetic`` become the root exception's ``mechanism`` (PostHog's
    ``{type, handled, synthetic}``); ``synthetic`` defaults to whether the stack had to be made up here
    (the exception was never raised)."""
    current = _current.get()
    if not current.enabled or getattr(exc, CAPTURED, None) is not None:
        return None
    client = cast("Client", current)
    tb = exc.__traceback__
    stack = _current_stack() if tb is None else None  # never raised: the stack where it was reported
    props: dict[str, Any] = {}
    limiter, in_app = _limits(client)
    if limiter is not None:
        allowed, suppressed = limiter.check(_key(exc, tb, in_app))
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
        "mechanism": {"type": mechanism, "handled": handled}
        if synthetic is None
        else {"type": mechanism, "handled": handled, "synthetic": synthetic},
        "max_event_bytes": client.settings.max_event_bytes,
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
    """Turns what :func:`capture` queued into ExceptionEvent fields, on the worker, within the size
    budget the limit ``max_event_bytes`` (queued with each exception) leaves them."""

    def __init__(self, scrub: Callable[[str], str], in_app: InApp) -> None:
        self.scrub = scrub
        self.in_app = in_app

    def fields(self, extra: dict[str, Any]) -> dict[str, Any]:
        exceptions: list[dict[str, Any]] = []
        stacks: list[_Stack] = []
        self._walk(extra["exc"], extra["tb"], extra["stack"], None, None, exceptions, stacks, set())
        root = exceptions[0]["mechanism"]
        root.update(extra["mechanism"])
        if "synthetic" not in extra["mechanism"]:  # the caller's word wins over what obs can tell
            root["synthetic"] = extra["stack"] is not None
        limit = extra.get("max_event_bytes") or _DEFAULT_MAX_EVENT_BYTES
        _fit(exceptions, stacks, limit - min(limit // 4, _RESERVE))
        return {"exception_list": exceptions, "level": extra["level"], "fingerprint": extra["fingerprint"]}

    def _walk(
        self,
        exc: BaseException,
        tb: TracebackType | None,
        stack: list[tuple[FrameType, int]] | None,
        parent_id: int | None,
        source: str | None,
        out: list[dict[str, Any]],
        stacks: list[_Stack],
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
            "value": self._clip(_message(exc), _MAX_MESSAGE),
        }
        calls = stack
        if calls is None:
            calls = []
            while tb is not None:
                if tb.tb_frame.f_globals.get("__name__") not in _HIDDEN_MODULES:
                    calls.append((tb.tb_frame, tb.tb_lineno))
                tb = tb.tb_next
        if calls:
            kept = _Stack(entry, calls)
            kept.keep(_MAX_FRAMES)  # before formatting: frames left out are never read nor scrubbed
            kept.frames = [self._frame(f, n) for f, n in kept.frames]
            kept.write()
            stacks.append(kept)
        out.append(entry)
        if exc.__suppress_context__:
            cause, relation = exc.__cause__, "cause"
        else:
            cause, relation = exc.__context__, "context"
        if cause is not None:
            self._walk(cause, cause.__traceback__, None, exception_id, relation, out, stacks, seen)
        if isinstance(exc, _GROUPS):
            for member in exc.exceptions:
                self._walk(member, member.__traceback__, None, exception_id, "member", out, stacks, seen)

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
        clip = self._clip
        return (
            [clip(s.rstrip("\r\n"), _MAX_CONTEXT) for s in source[lo:i]],
            clip(source[i].rstrip("\r\n"), _MAX_LINE),
            [clip(s.rstrip("\r\n"), _MAX_CONTEXT) for s in source[i + 1 : hi]],
        )

    def _clip(self, text: str, limit: int) -> str:
        """``text`` scrubbed, and cut after ``limit`` characters with the marker LLM payloads carry too:
        ``…[truncated N chars]``. The scrubber reads a margin past the cut, so a secret straddling it is
        recognised as a whole and no prefix of it is kept."""
        if len(text) <= limit:
            return self.scrub(text)
        read = text[: limit + _SCRUB_MARGIN]
        head = self.scrub(read)
        more = max(0, len(head) - limit) + len(text) - len(read)
        return _truncated(head[:limit], more) if more else head


class _Stack:
    """One exception's stack trace as it will be sent: the frames kept, outermost first, and how many
    frames were left out between the first ``gap`` of them and the rest."""

    __slots__ = ("entry", "frames", "gap", "omitted")

    def __init__(self, entry: dict[str, Any], frames: list[Any]) -> None:
        self.entry = entry
        self.frames = frames
        self.gap = 0
        self.omitted = 0

    def keep(self, n: int) -> None:
        """Keep ``n`` frames: about a fifth outermost (how it got there) and the rest innermost (where it
        broke), leaving out a middle run; frames left out before stay one run, at the same place."""
        total = len(self.frames)
        if n >= total:
            return
        outer = (n + 3) // 5
        if self.omitted:
            outer = min(max(outer, n - (total - self.gap)), self.gap)
        self.frames = self.frames[:outer] + self.frames[total - (n - outer) :]
        self.gap = outer
        self.omitted += total - n

    def write(self) -> None:
        stacktrace: dict[str, Any] = {"frames": self.frames, "type": "raw"}
        if self.omitted:
            frames = self.frames
            stacktrace["frames"] = [*frames[: self.gap], _omitted_frame(self.omitted), *frames[self.gap :]]
            stacktrace["frames_omitted"] = self.omitted
        self.entry["stacktrace"] = stacktrace


def _omitted_frame(n: int) -> dict[str, Any]:
    """The synthetic frame standing where ``n`` frames were left out, so PostHog's stack trace shows it."""
    return {
        "platform": "python",
        "filename": "<omitted>",
        "abs_path": None,
        "function": f"<{n} frame{'' if n == 1 else 's'} omitted>",
        "module": None,
        "lineno": None,
        "pre_context": [],
        "context_line": None,
        "post_context": [],
        "in_app": False,  # never part of PostHog's fingerprint, which is made of in-app frames
        "synthetic": True,
    }


def _fit(out: list[dict[str, Any]], stacks: list[_Stack], budget: int) -> None:
    """Trim ``out`` until it encodes to at most ``budget`` bytes, least useful first: the source lines
    around each call, then frames (halving, innermost kept), then all source lines, then chained
    exceptions (halving, the caught one kept), then long messages. An exception whose cheap character
    count is far below the budget, as nearly all are, is never encoded here."""
    if _chars(out, stacks) * _WORST_BYTES_PER_CHAR <= budget:
        return

    def fits() -> bool:
        for s in stacks:
            s.write()
        return len(to_json(out, serialize_unknown=True, inf_nan_mode="null")) <= budget

    if fits():
        return
    for s in stacks:
        for f in s.frames[:-1]:  # the innermost frame is where it was raised: its lines stay
            f["pre_context"], f["post_context"] = [], []
    if fits():
        return
    while any(len(s.frames) > 2 for s in stacks):
        for s in stacks:
            s.keep(max(2, len(s.frames) // 2))
        if fits():
            return
    for s in stacks:
        for f in s.frames:
            f["pre_context"], f["context_line"], f["post_context"] = [], None, []
    if fits():
        return
    while len(out) > 1:
        del out[max(1, len(out) // 2) :]  # causes follow their parent: every parent_id left is kept
        stacks[:] = [s for s in stacks if s.entry["mechanism"]["exception_id"] < len(out)]
        if fits():
            return
    for s in stacks:
        s.keep(1)
    for e in out:
        e["value"] = _shorten(e["value"], _SHORT_MESSAGE)
    fits()  # as small as it gets; if still too big, the sink drops it and logs why


def _chars(out: list[dict[str, Any]], stacks: list[_Stack]) -> int:
    """A cheap count of the characters ``out`` encodes to, keys and punctuation included."""
    n = 200 * len(out)
    for e in out:
        n += len(e["type"]) + len(e["value"]) + len(str(e["module"]))
    for s in stacks:
        n += 200 * (1 + len(s.frames))  # each frame's keys and punctuation, and the synthetic frame
        for f in s.frames:
            pre, post = f["pre_context"], f["post_context"]
            n += (  # `filename` is never longer than `abs_path`: that is counted twice
                2 * len(f["abs_path"] or "")
                + len(f["function"])
                + len(str(f["module"]))
                + len(f["context_line"] or "")
                + len("".join(pre))
                + len("".join(post))
                + 3 * (len(pre) + len(post))
            )
    return n


def _message(exc: BaseException) -> str:
    try:
        msg = getattr(exc, "message", "") or getattr(exc, "detail", "") or exc
        return str(msg)
    except Exception:
        return "<unprintable exception>"


def _truncated(head: str, more: int) -> str:
    return f"{head}…[truncated {more} chars]"


def _shorten(text: str, limit: int) -> str:
    """``text`` (perhaps already cut) cut after ``limit`` characters, its marker counting everything cut."""
    m = _TRUNCATED.search(text)
    head, more = (text[: m.start()], int(m[1])) if m else (text, 0)
    return _truncated(head[:limit], more + len(head) - limit) if len(head) > limit else text


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


# Per client: its rate limiter (None: unlimited) and in-app test, made on its first exception. A forked
# child starts afresh (a parent's thread may have held the limiter's lock at the fork).
_per_client: weakref.WeakKeyDictionary[Client, tuple[RateLimiter | None, InApp]] = weakref.WeakKeyDictionary()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_per_client.clear)


def _limits(client: Client) -> tuple[RateLimiter | None, InApp]:
    state = _per_client.get(client)
    if state is None:
        s = client.settings
        limiter = RateLimiter(s.error_rate_limit, s.error_rate_window) if s.error_rate_limit else None
        state = _per_client.setdefault(client, (limiter, InApp(s.in_app_modules)))
    return state


def _builder(settings: Settings, scrub: Callable[[str], str]) -> _kinds.Builder:
    """The worker-side builder of `$exception` events: the exception list, level and fingerprint."""
    fields = Formatter(scrub, InApp(settings.in_app_modules)).fields

    def build(extra: dict[str, Any], problems: Problems) -> dict[str, Any]:
        return fields(extra)

    return build


_kinds.register("exception", _builder)
