"""The module-level API: ``init()``, which fills the process-wide client slot (``obs/_current.py``), and
the functions that use that client.

Nothing here imports pydantic, anyio or httpx: ``import obs`` and a disabled SDK stay cheap, and enabling
one reads its configuration without pydantic (``_config_reader``); HTTP loads with the first request.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import uuid as _uuidlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from . import _current
from ._log import enable_debug, log, warn_every

if TYPE_CHECKING:
    from ._client import Client, DisabledClient
    from ._config import Settings
    from ._config_reader import Config
    from ._flags import FeatureFlagEvaluations
    from ._options import CaptureOptions

# The variables Settings reads (docs/configuration.md): a change to any of them is a new configuration.
_ENV_PREFIXES = ("POSTHOG_", "OBS_", "LOCAL_DEV_MODE", "RELEASE_CHANNEL")


def init(**overrides: Any) -> Client | DisabledClient:
    """Configure obs from the environment plus ``overrides`` (setting names, see docs/configuration.md).

    Idempotent: calling it again with the same overrides and environment returns the same client; a
    different configuration (new overrides, or obs variables changed since) flushes and replaces it.
    Without ``POSTHOG_API_KEY`` (or ``api_key=``) the SDK is off: a no-op client, no thread, no network.
    Raises :class:`obs.ConfigError` for configuration that cannot work.
    """
    config = (dict(overrides), _obs_environment())
    with _current.lock:
        old = _current.client
        if old is not None and _current.overrides == config and not getattr(old, "_closed", False):
            return old
        capturing = _current.capturing
        if capturing is not None and old is capturing and not capturing._closed:
            return capturing  # the app's own init() under obs.testing: the events stay captured
        if _key(overrides) is None:
            from ._client import DisabledClient

            new: Client | DisabledClient = DisabledClient()
        else:
            from ._client import Client
            from ._config_reader import ConfigError, problem

            settings = _settings(overrides)
            if settings.debug:
                enable_debug()
            try:
                # A Config has every attribute of Settings (tests/test_config_reader.py).
                new = Client(cast("Settings", settings))
            except ValueError as e:  # an unknown sink spec
                line = problem("sinks", overrides, str(e))
                raise ConfigError(f"obs configuration is invalid:\n  {line}") from None
            log.debug("obs: enabled, sending to %s via %s", settings.host, settings.sinks)
        _current.client, _current.overrides = new, config
        _set_uncaught_hooks(new)
    if old is not None and old is not new:
        old.shutdown(getattr(old.settings, "shutdown_timeout", None))
    return new


def _settings(overrides: dict[str, Any]) -> Config | Settings:
    """The configuration, read without pydantic when it is plain (the common case: nothing on the enable
    path builds a pydantic model); otherwise the Settings model accepts it or raises the ConfigError."""
    from ._config_reader import read_config

    config = read_config(overrides)
    if config is not None:
        return config
    from ._config import load_settings

    return load_settings(**overrides)


def _set_uncaught_hooks(client: Client | DisabledClient) -> None:
    if client.enabled and getattr(client.settings, "capture_uncaught", False):
        from . import _uncaught

        _uncaught.install()
    else:
        _remove_uncaught_hooks()


def _remove_uncaught_hooks() -> None:
    uncaught = sys.modules.get("obs._uncaught")  # never imported: nothing was installed
    if uncaught is not None:
        uncaught.uninstall()


def _obs_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(_ENV_PREFIXES)}


def _key(overrides: dict[str, Any]) -> str | None:
    """The API key without reading the rest: a disabled SDK reads nothing else."""
    v = overrides["api_key"] if "api_key" in overrides else os.environ.get("POSTHOG_API_KEY")
    return None if v is None or not str(v).strip() else str(v)


def get_client() -> Client | DisabledClient:
    """The current client, created from the environment on first use."""
    return _current.client or _lazy()


def _lazy() -> Client | DisabledClient:
    # First use without an explicit init(): configuration problems are logged, never raised into the caller.
    try:
        return init()
    except Exception as e:
        from ._client import DisabledClient

        log.error("obs: disabled: %s", e)
        with _current.lock:
            if _current.client is None:
                _current.client, _current.overrides = DisabledClient(), None
            return _current.client


_current.create = _lazy  # features reach the client through obs._current, never through this module


def capture(
    event: str,
    properties: Mapping[str, Any] | None = None,
    *,
    distinct_id: Any = None,
    timestamp: dt.datetime | None = None,
    uuid: str | _uuidlib.UUID | None = None,
    groups: Mapping[str, Any] | None = None,
    flags: FeatureFlagEvaluations | None = None,
    options: CaptureOptions | None = None,
) -> str | None:
    """Queue a product event; returns its uuid (the caller's, if given), or None when disabled or dropped.

    ``flags``: a snapshot from :func:`obs.evaluate_flags`, attached as `$feature/<key>` and
    `$active_feature_flags` under the event's own properties (no request). ``options``
    (:class:`obs.CaptureOptions`) are PostHog's per-event processing options.
    """
    if flags is not None:
        properties = _with_flags(properties, flags)
    if options is not None:
        return (_current.client or _lazy()).capture(
            event,
            properties,
            distinct_id=distinct_id,
            timestamp=timestamp,
            uuid=uuid,
            groups=groups,
            options=options,
        )
    return (_current.client or _lazy())._put(
        "custom", event, properties, distinct_id, timestamp, uuid, groups, "batch", None
    )


def capture_ai(
    event: str,
    properties: Mapping[str, Any] | None = None,
    *,
    distinct_id: Any = None,
    timestamp: dt.datetime | None = None,
    uuid: str | _uuidlib.UUID | None = None,
    groups: Mapping[str, Any] | None = None,
    flags: FeatureFlagEvaluations | None = None,
) -> str | None:
    """Like :func:`capture`, but sent to PostHog's dedicated AI batch route (larger per-event cap)."""
    if flags is not None:
        properties = _with_flags(properties, flags)
    return (_current.client or _lazy())._put(
        "custom", event, properties, distinct_id, timestamp, uuid, groups, "ai", None
    )


def _with_flags(
    properties: Mapping[str, Any] | None, flags: FeatureFlagEvaluations
) -> Mapping[str, Any] | None:
    """A flags snapshot's properties under the event's own, as posthog-python attaches them."""
    try:
        return {**flags._event_properties(), **(properties or {})}
    except Exception as e:  # not a snapshot, or properties that cannot be read: the event goes without
        warn_every("capture-flags", 60, "obs: capture(flags=...) not attached: %r", e)
        return properties


def identify(distinct_id: Any, properties: Mapping[str, Any] | None = None) -> str | None:
    """Send `$identify` with `$set` person properties, filtered by ``POSTHOG_IDENTIFY_PII``."""
    return (_current.client or _lazy()).identify(distinct_id, properties)


def group_identify(
    group_type: str, group_key: str, properties: Mapping[str, Any] | None = None, *, distinct_id: Any = None
) -> str | None:
    """Send `$groupidentify`: set ``properties`` on the group ``group_type``/``group_key``."""
    return (_current.client or _lazy()).group_identify(
        group_type, group_key, properties, distinct_id=distinct_id
    )


def flush(timeout: float | None = None) -> bool:
    """Block until everything captured so far was handled by every sink (any thread); False on timeout."""
    c = _current.client
    return True if c is None else c.flush(timeout)


async def aflush(timeout: float | None = None) -> bool:
    """Await :func:`flush` without blocking the event loop (asyncio or trio)."""
    c = _current.client
    return True if c is None else await c.aflush(timeout)


def shutdown(timeout: float | None = None) -> bool:
    """Flush, close the sinks and stop the worker. Later captures are dropped (counted) until `init()`."""
    c = _current.client
    _remove_uncaught_hooks()
    return True if c is None else c.shutdown(timeout)


async def ashutdown(timeout: float | None = None) -> bool:
    """Await :func:`shutdown` without blocking the event loop."""
    c = _current.client
    _remove_uncaught_hooks()
    return True if c is None else await c.ashutdown(timeout)
