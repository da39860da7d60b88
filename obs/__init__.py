"""obs: errors, LLM calls, feature flags and product events to PostHog, from decorators, off the hot path.

The public surface is listed in ``__all__``. Importing obs is cheap: it loads the module-level API only;
every other name loads on first use. Enabling a client reads its configuration without pydantic; anyio
starts with its worker and httpx with its first request; posthog-python only for local flag evaluation.
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
from ._version import __version__

if TYPE_CHECKING:
    from . import display, events, integrations, sinks, testing
    from ._client import Client, DisabledClient
    from ._config import Settings
    from ._config_reader import ConfigError
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
    from ._options import CaptureOptions
    from ._snippet import browser_snippet
    from ._trace import Span, span, trace
    from .decorators.capture_errors import capture_errors, capture_exception
    from .decorators.feature_gate import feature_gate
    from .decorators.flush_after import flush_after
    from .decorators.trace_llm import trace_llm
    from .decorators.track import track
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

# Every other public name loads on first use, so that `import obs` costs only the module-level API:
# a short process that only captures never loads the decorators, flags, LLM and error machinery, nor
# pydantic (the typed event models, obs.events).
_FROM = {
    "obs._context": ("context",),
    "obs._flags": (
        "FeatureDisabled",
        "FeatureFlagEvaluations",
        "aevaluate_flags",
        "afeature_enabled",
        "aget_feature_flag",
        "aget_feature_flag_payload",
        "evaluate_flags",
        "feature_enabled",
        "get_feature_flag",
        "get_feature_flag_payload",
    ),
    "obs._llm": ("Generation", "trace_generation"),
    "obs._trace": ("Span", "span", "trace"),
    "obs.decorators": (
        "capture_errors",
        "capture_exception",
        "feature_gate",
        "flush_after",
        "trace_llm",
        "track",
    ),
    "obs.events": (
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
    ),
    "obs._config_reader": ("ConfigError",),  # without pydantic: `except obs.ConfigError` costs nothing
    "obs._config": ("Settings",),
    "obs._options": ("CaptureOptions",),
    "obs._client": ("Client", "DisabledClient"),
    "obs._snippet": ("browser_snippet",),
    "obs.integrations.openai": ("instrument_openai",),
    "obs.integrations.anthropic": ("instrument_anthropic",),
}
_LAZY = {name: module for module, names in _FROM.items() for name in names}
_SUBMODULES = frozenset({"display", "events", "sinks", "testing", "integrations"})


def __getattr__(name: str) -> Any:
    import importlib

    if name in _SUBMODULES:
        return importlib.import_module(f"obs.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'obs' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later uses are a plain attribute
    return value


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
