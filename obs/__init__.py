"""obs: errors, LLM calls, feature flags and product events to PostHog, from decorators, off the hot path.

The public surface is listed in ``__all__``. Importing obs is cheap: pydantic, anyio and httpx load only
when a client is enabled (``POSTHOG_API_KEY`` set), posthog-python only for local flag evaluation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._api import (
    aflush,
    ashutdown,
    capture,
    capture_ai,
    flush,
    get_client,
    group_identify,
    identify,
    init,
    shutdown,
)
from ._context import context
from ._flags import (
    FeatureDisabled,
    FeatureFlagEvaluations,
    aevaluate_flags,
    afeature_enabled,
    aget_feature_flag,
    aget_feature_flag_payload,
    evaluate_flags,
    feature_enabled,
    get_feature_flag,
    get_feature_flag_payload,
)
from ._llm import Generation, trace_generation
from ._trace import Span, span, trace
from ._version import __version__
from .decorators import capture_errors, capture_exception, feature_gate, flush_after, trace_llm, track

if TYPE_CHECKING:
    from . import display, events, integrations, sinks, testing
    from ._client import Client, DisabledClient
    from ._config import Settings
    from ._config_reader import ConfigError
    from ._options import CaptureOptions
    from ._snippet import browser_snippet
    from .events import (
        AIEmbeddingEvent,
        AIGenerationEvent,
        AISpanEvent,
        AITraceEvent,
        CustomEvent,
        Event,
        ExceptionEvent,
        FeatureFlagCalledEvent,
        GroupIdentifyEvent,
        IdentifyEvent,
    )
    from .integrations.anthropic import instrument_anthropic
    from .integrations.openai import instrument_openai


# The typed event models (obs.events), for type hints; they import pydantic, so they load on first use.
_EVENT_MODELS = frozenset(
    {
        "AIEmbeddingEvent",
        "AIGenerationEvent",
        "AISpanEvent",
        "AITraceEvent",
        "CustomEvent",
        "Event",
        "ExceptionEvent",
        "FeatureFlagCalledEvent",
        "GroupIdentifyEvent",
        "IdentifyEvent",
    }
)


def __getattr__(name: str) -> Any:  # heavy names load on first use
    import importlib

    if name in _EVENT_MODELS:
        return getattr(importlib.import_module("obs.events"), name)
    if name == "ConfigError":  # without pydantic: `except obs.ConfigError` costs nothing
        return importlib.import_module("obs._config_reader").ConfigError
    if name == "Settings":
        return importlib.import_module("obs._config").Settings
    if name == "CaptureOptions":
        return importlib.import_module("obs._options").CaptureOptions
    if name in ("Client", "DisabledClient"):
        return getattr(importlib.import_module("obs._client"), name)
    if name in ("display", "events", "sinks", "testing", "integrations"):
        return importlib.import_module(f"obs.{name}")
    if name == "browser_snippet":
        return importlib.import_module("obs._snippet").browser_snippet
    if name in ("instrument_openai", "instrument_anthropic"):
        return getattr(importlib.import_module(f"obs.integrations.{name[11:]}"), name)
    raise AttributeError(f"module 'obs' has no attribute {name!r}")


__all__ = [
    "AIEmbeddingEvent",
    "AIGenerationEvent",
    "AISpanEvent",
    "AITraceEvent",
    "CaptureOptions",
    "Client",
    "ConfigError",
    "CustomEvent",
    "DisabledClient",
    "Event",
    "ExceptionEvent",
    "FeatureDisabled",
    "FeatureFlagCalledEvent",
    "FeatureFlagEvaluations",
    "Generation",
    "GroupIdentifyEvent",
    "IdentifyEvent",
    "Settings",
    "Span",
    "__version__",
    "aevaluate_flags",
    "afeature_enabled",
    "aflush",
    "aget_feature_flag",
    "aget_feature_flag_payload",
    "ashutdown",
    "browser_snippet",
    "capture",
    "capture_ai",
    "capture_errors",
    "capture_exception",
    "context",
    "display",
    "evaluate_flags",
    "events",
    "feature_enabled",
    "feature_gate",
    "flush",
    "flush_after",
    "get_client",
    "get_feature_flag",
    "get_feature_flag_payload",
    "group_identify",
    "identify",
    "init",
    "instrument_anthropic",
    "instrument_openai",
    "integrations",
    "shutdown",
    "sinks",
    "span",
    "testing",
    "trace",
    "trace_generation",
    "trace_llm",
    "track",
]
