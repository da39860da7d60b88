"""Configuration on the enable path, without pydantic: a table of every setting and a plain reader.

:class:`obs.Settings` (``_config.py``, pydantic-settings) is the typed, documented contract and the only
source of :class:`ConfigError` messages. Building it costs a short process more than the rest of obs
(pydantic-settings alone is ~180 ms of CPU here, and building any pydantic model runs every installed
pydantic plugin, logfire's among them), so :func:`read_config` reads the same variables and keywords by
the table below and returns a plain :class:`Config` — but only for values it can vouch for. Anything
unusual (an invalid value, a keyword of an unexpected type, an unknown identify mode that must be warned
about) makes it return None, and the caller builds Settings instead, which accepts it or raises the one
ConfigError. tests/test_config_reader.py proves the table matches the model field by field and that the
reader, when it answers, answers exactly what the model would.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from typing import Any

DEFAULT_HOST = "https://eu.i.posthog.com"
PII_MODES = ("none", "id", "email", "full")
# PostHog routes a host must not end in: obs adds the route itself (a path prefix, as behind a reverse
# proxy, is fine). Matched against the path without its trailing slashes.
ROUTE = re.compile(r"(/i/v\d+(/[^?#]*)?|/(batch|capture|e|track|engage|flags|decide|s))\Z", re.IGNORECASE)
MODULE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*\Z")
# A host the reader accepts without a URL parser: http(s), DNS labels, a port, a plain path. Anything
# else (IPv6, user info, odd characters) is left to the model's full check.
_PLAIN_HOST = re.compile(
    r"https?://[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"(:(?P<port>\d{1,5}))?(?P<path>(/[A-Za-z0-9._~-]+)*/*)\Z"
)
_INT = re.compile(r"\d+\Z")
_FLOAT = re.compile(r"\d+(\.\d+)?\Z")
_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})


class ConfigError(ValueError):
    """Raised by :func:`obs.init` for configuration that cannot work."""


class _Defer(Exception):
    """A value the reader does not vouch for: the Settings model decides."""


class Secret:
    """A key kept out of reprs and logs, read with :meth:`get_secret_value` (as pydantic's SecretStr)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        get = getattr(other, "get_secret_value", None)
        return callable(get) and get() == self._value

    def __hash__(self) -> int:
        return hash(self._value)


# --------------------------------------------------------------------------------------------- parsers
# Each takes the raw value (a keyword's object, or a variable's string) and returns the setting's value,
# or raises _Defer. ``FIELDS`` below pairs them with each setting's variable, default and bound.


def _bool(v: Any) -> bool:
    if type(v) is bool:
        return v
    if isinstance(v, str):
        low = v.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
    raise _Defer


def _int(v: Any) -> int:
    if type(v) is int:
        return v
    if isinstance(v, str) and _INT.match(v):
        return int(v)
    raise _Defer


def _float(v: Any) -> float:
    if type(v) in (int, float) and math.isfinite(v):
        return float(v)
    if isinstance(v, str) and _FLOAT.match(v):
        return float(v)
    raise _Defer


def _text(v: Any) -> str | None:
    if v is None or isinstance(v, str):
        return v
    raise _Defer


def _blank_is_none(v: Any) -> str | None:
    if v is None:
        return None
    if not isinstance(v, str):
        raise _Defer
    return v.strip() or None


def _api_key(v: Any) -> str | None:
    key = _blank_is_none(v)
    if key is not None and key.startswith("phx_"):
        raise _Defer  # a personal key: the model explains
    return key


def _personal_key(v: Any) -> Secret | None:
    key = _blank_is_none(v)  # a SecretStr given as the keyword: the model unwraps it
    if key is None:
        return None
    if key.startswith("phc_"):
        raise _Defer
    return Secret(key)


def _host(v: Any) -> str:
    raw = _blank_is_none(v)
    if raw is None:
        return DEFAULT_HOST
    m = _PLAIN_HOST.match(raw)
    if m is None or int(m.group("port") or 0) > 65535 or ROUTE.search(m.group("path").rstrip("/")):
        raise _Defer
    return raw.rstrip("/")


def _identify_pii(v: Any) -> str:
    mode = _blank_is_none(v)
    if mode is None:
        return "email"
    if mode.lower() not in PII_MODES:
        raise _Defer  # the model warns and falls back
    return mode.lower()


def _script_url(v: Any) -> str | None:
    raw = _blank_is_none(v)
    if raw is not None and not raw.startswith(("https://", "http://", "/")):
        raise _Defer
    return raw


def _capture_mode(v: Any) -> str:
    mode = _blank_is_none(v)
    if mode is None:
        return "v0"
    mode = {"legacy": "v0", "analytics_v1": "v1"}.get(mode.lower(), mode.lower())
    if mode not in ("v0", "v1"):
        raise _Defer
    return mode


def _sinks(v: Any) -> list[Any]:
    if v is None:
        return ["posthog"]
    if isinstance(v, str):
        return [s.strip() for s in v.split(",") if s.strip()] or ["posthog"]
    if type(v) in (list, tuple):
        return list(v)
    raise _Defer


def _modules(v: Any) -> list[str]:
    if v is None:
        return []
    items = [m.strip() for m in v.split(",") if m.strip()] if isinstance(v, str) else v
    if type(items) is not list or not all(type(m) is str and MODULE.match(m) for m in items):
        raise _Defer
    return list(items)


def _patterns(v: Any) -> list[str]:
    if v is None:
        return []
    if isinstance(v, str):
        text = v.strip()
        items: Any = [text] if text else []
        if text.startswith("["):
            raise _Defer  # JSON or a regex: the model tells them apart
    else:
        items = v
    if type(items) is not list or not all(type(p) is str for p in items):
        raise _Defer
    if items:
        from ._scrub import Scrubber

        try:
            Scrubber(False, items)
        except ValueError:
            raise _Defer from None
    return list(items)


def _properties(v: Any) -> dict[str, Any]:
    if v is None or (isinstance(v, str) and not v.strip()):
        return {}
    if isinstance(v, str):
        try:
            v = json.loads(v)
        except ValueError:
            raise _Defer from None
    if type(v) is not dict:
        raise _Defer
    if not v:
        return {}
    from ._serialize import Problems, sanitize_properties

    if not all(type(k) is str and k and k not in OBS_OWNED for k in v):
        raise _Defer
    problems = Problems()
    clean = sanitize_properties(v, problems)
    if problems.dropped:
        raise _Defer
    return clean


# Set by obs on every event: a base property of that name could never be seen.
OBS_OWNED = {
    "environment": "set it with POSTHOG_ENVIRONMENT / environment=",
    "$lib": "obs sends its own",
    "$lib_version": "obs sends its own",
}

_MiB = 1024 * 1024
# name: (variable, parser, default, (ge, gt) bound or None). The order is Settings' field order.
FIELDS: dict[str, tuple[str, Any, Any, tuple[float | None, float | None] | None]] = {
    "api_key": ("POSTHOG_API_KEY", _api_key, None, None),
    "host": ("POSTHOG_HOST", _host, DEFAULT_HOST, None),
    "identify_pii": ("POSTHOG_IDENTIFY_PII", _identify_pii, "email", None),
    "replay": ("POSTHOG_REPLAY", _bool, True, None),
    "replay_mask_selector": ("POSTHOG_REPLAY_MASK_SELECTOR", _text, None, None),
    "script_url": ("POSTHOG_SCRIPT_URL", _script_url, None, None),
    "inject_max_bytes": ("OBS_INJECT_MAX_BYTES", _int, 4 * _MiB, (0, None)),
    "llm_payloads": ("POSTHOG_LLM_PAYLOADS", _bool, False, None),
    "llm_payload_max_chars": ("POSTHOG_LLM_PAYLOAD_MAX_CHARS", _int, 30_000, (0, None)),
    "ai_route": ("OBS_AI_ROUTE", _bool, False, None),
    "debug": ("POSTHOG_DEBUG", _bool, False, None),
    "disable_geoip": ("OBS_DISABLE_GEOIP", _bool, True, None),
    "is_server": ("OBS_IS_SERVER", _bool, True, None),
    "capture_uncaught": ("OBS_CAPTURE_UNCAUGHT", _bool, False, None),
    "error_rate_limit": ("OBS_ERROR_RATE_LIMIT", _int, 10, (0, None)),
    "error_rate_window": ("OBS_ERROR_RATE_WINDOW", _float, 60.0, (None, 0)),
    "scrub_secrets": ("OBS_SCRUB_SECRETS", _bool, True, None),
    "scrub_patterns": ("OBS_SCRUB_PATTERNS", _patterns, [], None),
    "in_app_modules": ("OBS_IN_APP_MODULES", _modules, [], None),
    "personal_api_key": ("POSTHOG_PERSONAL_API_KEY", _personal_key, None, None),
    "flags_cache_ttl": ("OBS_FLAGS_CACHE_TTL", _float, 30.0, (0, None)),
    "flags_timeout": ("OBS_FLAGS_TIMEOUT", _float, 3.0, (None, 0)),
    "flags_poll_interval": ("OBS_FLAGS_POLL_INTERVAL", _float, 30.0, (None, 0)),
    "properties": ("OBS_PROPERTIES", _properties, {}, None),
    "environment": ("POSTHOG_ENVIRONMENT", _blank_is_none, None, None),
    "release": ("OBS_RELEASE", _blank_is_none, None, None),
    "local_dev_mode": ("LOCAL_DEV_MODE", _bool, False, None),
    "release_channel": ("RELEASE_CHANNEL", _blank_is_none, None, None),
    "deployment_env": ("OBS_DEPLOYMENT_ENV", _blank_is_none, None, None),
    "flush_at": ("OBS_FLUSH_AT", _int, 100, (1, None)),
    "flush_interval": ("OBS_FLUSH_INTERVAL", _float, 0.5, (None, 0)),
    "max_queue_size": ("OBS_MAX_QUEUE_SIZE", _int, 100_000, (1, None)),
    "max_retries": ("OBS_MAX_RETRIES", _int, 10, (0, None)),
    "retry_backoff": ("OBS_RETRY_BACKOFF", _float, 0.5, (0, None)),
    "retry_max_delay": ("OBS_RETRY_MAX_DELAY", _float, 30.0, (0, None)),
    "retry_budget": ("OBS_RETRY_BUDGET", _float, 30.0, (0, None)),
    "spool_dir": ("OBS_SPOOL_DIR", _blank_is_none, None, None),
    "spool_max_bytes": ("OBS_SPOOL_MAX_BYTES", _int, 100 * _MiB, (64 * 1024, None)),
    "gzip": ("OBS_GZIP", _bool, False, None),
    "capture_mode": ("OBS_CAPTURE_MODE", _capture_mode, "v0", None),
    "historical_migration": ("OBS_HISTORICAL_MIGRATION", _bool, False, None),
    "timeout": ("OBS_TIMEOUT", _float, 10.0, (None, 0)),
    "shutdown_timeout": ("OBS_SHUTDOWN_TIMEOUT", _float, 10.0, (0, None)),
    "max_batch_bytes": ("OBS_MAX_BATCH_BYTES", _int, 5 * _MiB, (1024, None)),
    "max_event_bytes": ("OBS_MAX_EVENT_BYTES", _int, 900 * 1024, (1024, None)),
    "max_ai_event_bytes": ("OBS_MAX_AI_EVENT_BYTES", _int, 8 * _MiB, (1024, None)),
    "sinks": ("OBS_SINKS", _sinks, ["posthog"], None),
}


class Config:
    """Every setting as a plain attribute, as :class:`obs.Settings` has them (read by :func:`read_config`)."""

    # Declared for the type checker; read_config sets one attribute per FIELDS entry.
    api_key: str | None
    host: str
    identify_pii: str
    personal_api_key: Secret | None
    properties: dict[str, Any]
    environment: str | None
    release: str | None
    release_channel: str | None
    deployment_env: str | None
    local_dev_mode: bool
    disable_geoip: bool
    is_server: bool
    debug: bool
    sinks: list[Any]

    def __getattr__(self, name: str) -> Any:  # only for the type checker: every field is set
        raise AttributeError(name)

    @property
    def enabled(self) -> bool:
        return self.api_key is not None

    def super_properties(self) -> dict[str, Any]:
        """What every event carries under its own properties: the base properties, then obs's."""
        return super_properties(self)

    def model_dump(self) -> dict[str, Any]:
        """Every setting by name (keys stay :class:`Secret`), as Settings.model_dump() gives them."""
        return {name: getattr(self, name) for name in FIELDS}

    def __repr__(self) -> str:
        return "Config(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in FIELDS) + ")"


def read_config(overrides: Mapping[str, Any], environ: Mapping[str, str] = os.environ) -> Config | None:
    """The configuration from ``environ`` plus keyword ``overrides``; None when the model must decide."""
    config = Config()
    try:
        for name, (variable, parse, default, bound) in FIELDS.items():
            if name in overrides:
                value = parse(overrides[name])
            elif variable in environ:
                value = parse(environ[variable])
            else:
                value = default.copy() if isinstance(default, (list, dict)) else default
            if bound is not None and value is not None:
                ge, gt = bound
                if (ge is not None and value < ge) or (gt is not None and value <= gt):
                    raise _Defer
            setattr(config, name, value)
    except _Defer:
        return None
    if any(name not in FIELDS for name in overrides):
        return None  # the model names the unknown keyword
    derive_environment(config)
    return config


def env_name(field: str) -> str:
    """The environment variable of setting ``field``."""
    return FIELDS[field][0] if field in FIELDS else field


def problem(field: str, overrides: Mapping[str, Any], message: str, fix: Any = None) -> str:
    """One line of a ConfigError: what the user wrote for ``field`` (keyword or variable), the message,
    and, given a ``fix``, the corrected value in the same form."""
    if field in overrides:
        name, value = field, overrides[field]
    else:
        name, value = env_name(field), os.environ.get(env_name(field))
    line = f"{name}={shown(field, value)}: {message}" if value is not None else f"{name}: {message}"
    if fix is not None:
        line += f"; use {name}={shown(field, fix)}"
    return line


def shown(field: str, value: Any) -> str:
    """``value`` as the user wrote it, short, and never a secret: a key shows only its prefix."""
    get = getattr(value, "get_secret_value", None)
    if callable(get):
        value = get()
    if field.endswith("api_key") and isinstance(value, str):
        return repr(value[:4] + "…") if len(value) > 4 else repr(value)
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "…"


def super_properties(settings: Any) -> dict[str, Any]:
    """What every event carries under its own properties: the base properties, then obs's (for a `Config`
    and for the `Settings` model alike)."""
    props: dict[str, Any] = dict(settings.properties)
    props["environment"] = settings.environment
    if settings.release is not None:
        props["release"] = settings.release
    if settings.disable_geoip:
        props["$geoip_disable"] = True
    if settings.is_server:
        props["$is_server"] = True
    return props


def derive_environment(settings: Any) -> None:
    """The fallback chain of ``environment`` and ``release`` (for a `Config` and the `Settings` model alike):
    POSTHOG_ENVIRONMENT, else "local" under LOCAL_DEV_MODE, else RELEASE_CHANNEL, OBS_DEPLOYMENT_ENV,
    "unknown"; OBS_RELEASE, else RELEASE_CHANNEL."""
    if settings.environment is None:
        if settings.local_dev_mode:
            settings.environment = "local"
        else:
            settings.environment = settings.release_channel or settings.deployment_env or "unknown"
    if settings.release is None:
        settings.release = settings.release_channel
