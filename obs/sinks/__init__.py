"""Where events go. A sink is anything with ``async send(batch)`` and ``async aclose()`` (:class:`Sink`).

``OBS_SINKS`` / ``obs.init(sinks=...)`` names them: ``posthog``, ``console``, ``memory``,
``jsonl:PATH``, ``sqlite[:PATH]`` (default ``.obs/events.db``), or Sink instances.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._base import Batch, Route, Sink

if TYPE_CHECKING:
    from .._stats import Stats
    from .console import ConsoleSink
    from .jsonl import JsonlSink
    from .memory import MemorySink
    from .posthog import PostHogSink
    from .sqlite import SqliteSink

_LAZY = {
    "ConsoleSink": "console",
    "JsonlSink": "jsonl",
    "MemorySink": "memory",
    "PostHogSink": "posthog",
    "SqliteSink": "sqlite",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build(spec: Any, settings: Any, stats: Stats) -> Sink:
    """One sink from a spec string (see module docs) or a Sink instance; ValueError for anything else."""
    if not isinstance(spec, str):
        if isinstance(spec, Sink):
            return spec
        raise ValueError(f"sink {spec!r} has no async send(batch) / aclose()")
    kind, _, arg = spec.strip().partition(":")
    kind = kind.lower()
    if kind == "posthog" and not arg:
        from .posthog import from_settings

        return from_settings(settings, stats)
    if kind == "console" and not arg:
        from .console import ConsoleSink

        return ConsoleSink()
    if kind == "memory" and not arg:
        from .memory import MemorySink

        return MemorySink()
    if kind == "jsonl" and arg:
        from .jsonl import JsonlSink

        return JsonlSink(arg)
    if kind == "sqlite":
        from .sqlite import DEFAULT_PATH, SqliteSink

        return SqliteSink(arg or DEFAULT_PATH)
    raise ValueError(
        f"unknown sink {spec!r}: use posthog, console, memory, jsonl:PATH or sqlite[:PATH] (comma-separated)"
    )


__all__ = [
    "Batch",
    "ConsoleSink",
    "JsonlSink",
    "MemorySink",
    "PostHogSink",
    "Route",
    "Sink",
    "SqliteSink",
    "build",
]
