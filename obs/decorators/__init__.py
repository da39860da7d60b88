"""Decorators, each a thin layer over the one wrapping helper (`obs/_wrap.py`).

Every decorator is a :class:`~obs._wrap.Probe` — what to do when a unit of work starts and
ends — handed to ``wrap``, which serves functions, coroutine functions, generators, async generators,
methods, classmethods and staticmethods alike. All of them are also importable from ``obs``.
"""

from .capture_errors import capture_errors, capture_exception
from .feature_gate import feature_gate
from .flush_after import flush_after
from .trace_llm import trace_llm
from .track import track

__all__ = ["capture_errors", "capture_exception", "feature_gate", "flush_after", "trace_llm", "track"]
