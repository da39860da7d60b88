"""The `obs` logger, and warnings that repeat at most once per interval so a hot failure cannot flood logs."""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger("obs")

_last: dict[str, float] = {}
_lock = threading.Lock()


def warn_every(key: str, interval: float, msg: str, *args: object, level: int = logging.WARNING) -> None:
    """Log ``msg`` unless the same ``key`` was logged less than ``interval`` seconds ago."""
    now = time.monotonic()
    with _lock:
        last = _last.get(key)
        if last is not None and now - last < interval:
            return
        _last[key] = now
    log.log(level, msg, *args)


def enable_debug() -> None:
    """POSTHOG_DEBUG: the obs logger at DEBUG, with a stderr handler when nothing else would show it."""
    log.setLevel(logging.DEBUG)
    if not log.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s obs %(levelname)s %(message)s"))
        log.addHandler(handler)
