"""What counts as cancellation: the one test every decorator, span and generation uses.

Cancellation is not a failure of the cancelled work: the caller went away (a client disconnected, a
timeout or task group stopped it). asyncio raises ``asyncio.CancelledError``, trio ``trio.Cancelled``;
anyio raises the backend's own (``anyio.get_cancelled_exc_class()`` is one of the two), so these two
classes cover all three. An exception group holding nothing but cancellations, as a task group may
raise, is a cancellation too. Checked without importing trio or asyncio: each is looked up only when
loaded (an exception of a library never imported cannot exist), so ``import obs`` stays cheap.
"""

from __future__ import annotations

import sys
from typing import Any


def is_cancellation(error: BaseException | None) -> bool:
    """True if ``error`` is asyncio's, trio's (so anyio's) cancellation, or a group of nothing else."""
    if error is None or isinstance(error, Exception):
        # Both cancellation classes are BaseExceptions: an Exception never is one (concurrent.futures'
        # CancelledError is an Exception, raised by a *result* that was cancelled: that call failed).
        return False
    aio = sys.modules.get("asyncio.exceptions")
    if aio is not None and isinstance(error, aio.CancelledError):
        return True
    trio = sys.modules.get("trio")
    if trio is not None and isinstance(error, trio.Cancelled):
        return True
    members = _group_members(error)
    if not members:
        return False
    return all(is_cancellation(m) for m in members)


def _group_members(error: BaseException) -> tuple[Any, ...] | None:
    """The members of an exception group (builtin, or the ``exceptiongroup`` backport); None otherwise."""
    if sys.version_info >= (3, 11):
        groups: tuple[type[BaseException], ...] = (BaseExceptionGroup,)  # noqa: F821
    else:  # pragma: no cover - Python 3.10: anyio's backport, when it is loaded
        backport = sys.modules.get("exceptiongroup")
        groups = (backport.BaseExceptionGroup,) if backport is not None else ()
    if groups and isinstance(error, groups):
        return tuple(getattr(error, "exceptions", ()))
    return None
