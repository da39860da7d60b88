"""`obs status`."""

from __future__ import annotations


def status() -> None:
    """Not built yet."""
    raise SystemExit("obs status: not built yet")
