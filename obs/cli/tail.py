"""`obs tail`."""

from __future__ import annotations


def tail() -> None:
    """Not built yet."""
    raise SystemExit("obs tail: not built yet")
