"""The `obs` logger, and warnings that repeat at most once per interval so a hot failure cannot flood logs."""

from __future__ import annotations

import logging
import os
import threading
import time

log = logging.getLogger("obs")

_last: dict[str, float] = {}
_tally: dict[str, int] = {}
_lock = threading.Lock()


def _due(key: str, interval: float, n: int = 0) -> int | None:
    """Adds ``n`` to ``key``'s tally; the tally (then reset) if ``key`` may be logged now, else None."""
    now = time.monotonic()
    with _lock:
        total = _tally.get(key, 0) + n
        last = _last.get(key)
        if last is not None and now - last < interval:
            _tally[key] = total
            return None
        _last[key] = now
        _tally[key] = 0
    return total


def warn_every(key: str, interval: float, msg: str, *args: object, level: int = logging.WARNING) -> None:
    """Log ``msg`` unless the same ``key`` was logged less than ``interval`` seconds ago."""
    if _due(key, interval) is not None:
        log.log(level, msg, *args)


def warn_tally(key: str, interval: float, n: int, msg: str, *args: object) -> None:
    """`warn_every` for losses: ``n`` more of them; the line logged carries how many since the last one.

    ``msg`` takes ``args`` followed by the tally (``"... %s ... dropped %d event(s)"``).
    """
    total = _due(key, interval, n)
    if total is not None:
        log.warning(msg, *args, total)


def _reset_lock_in_child() -> None:
    # A thread of the parent may have held it while the process forked; the child must not inherit that.
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_lock_in_child)


def enable_debug() -> None:
    """POSTHOG_DEBUG: the obs logger at DEBUG, with a stderr handler when nothing else would show it."""
    log.setLevel(logging.DEBUG)
    if not log.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s obs %(levelname)s %(message)s"))
        log.addHandler(handler)
