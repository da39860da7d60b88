"""`obs ui`."""

from __future__ import annotations


def ui() -> None:
    """Not built yet."""
    raise SystemExit("obs ui: not built yet")
