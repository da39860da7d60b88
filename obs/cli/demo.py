"""`obs demo`."""

from __future__ import annotations


def demo() -> None:
    """Not built yet."""
    raise SystemExit("obs demo: not built yet")
