"""`obs schema`."""

from __future__ import annotations


def schema() -> None:
    """Not built yet."""
    raise SystemExit("obs schema: not built yet")
