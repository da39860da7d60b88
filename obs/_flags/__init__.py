"""Feature flags: evaluation, its short-lived cache, `$feature_flag_called`, snapshots, and the flags a
context saw — one concept per module, layered one way (each imports only those above it here):

- ``_result``: one flag evaluated for one user (:class:`Result`) and ``FlagValue``.
- ``_overrides``: values set by hand (``obs.testing``): every check answered in-process, no request.
- ``_seen``: the flags evaluated in the current context, carried by its `$exception` and ``@track`` events.
- ``_answer``: reading a ``/flags`` answer (v4, v2 and legacy) into Results.
- ``_cache``: answers kept for ``OBS_FLAGS_CACHE_TTL``.
- ``_runner``: the private asyncio loop every remote evaluation runs on, awaited from any event loop.
- ``_remote``: PostHog's ``/flags?v=4`` request, retried once as posthog-python does.
- ``_local``: local evaluation by posthog-python from polled definitions (a personal or secure key).
- ``_events``: `$feature_flag_called` and `$experiment_exposure`, deduplicated.
- ``_snapshot``: :class:`FeatureFlagEvaluations`, what ``evaluate_flags`` returns.
- ``_engine``: :class:`Flags`, one per enabled client: overrides, then the cache, then local evaluation
  (``POSTHOG_PERSONAL_API_KEY``), then ``/flags``; and what each read sends.
- ``_api``: the module-level functions (``obs.get_feature_flag`` …) and :class:`FeatureDisabled`.

Network work runs on the private loop, in a context of its own (never the caller's, whose contextvars may
name another async library), so the sync functions are safe in plain code, worker threads and inside a
running loop, and the async ones never block theirs, on asyncio or trio. Any failure returns the caller's
default, logged once per cause and counted (``flag_errors``). While obs is off nothing here makes a
request. Nothing heavy is imported here: httpx loads with the first remote evaluation, posthog-python with
the first local one.
"""

from ._api import (
    FeatureDisabled,
    aevaluate_flags,
    afeature_enabled,
    aget_feature_flag,
    aget_feature_flag_payload,
    current,
    evaluate_flags,
    feature_enabled,
    get_feature_flag,
    get_feature_flag_payload,
)
from ._engine import Flags
from ._overrides import FlagOverrides
from ._result import FlagValue, Result
from ._seen import properties_for
from ._snapshot import FeatureFlagEvaluations

__all__ = [
    "FeatureDisabled",
    "FeatureFlagEvaluations",
    "FlagOverrides",
    "FlagValue",
    "Flags",
    "Result",
    "aevaluate_flags",
    "afeature_enabled",
    "aget_feature_flag",
    "aget_feature_flag_payload",
    "current",
    "evaluate_flags",
    "feature_enabled",
    "get_feature_flag",
    "get_feature_flag_payload",
    "properties_for",
]
