"""All configuration: one pydantic-settings model, read from the environment plus keyword overrides.

This model is the typed contract and the source of every ConfigError message; ``obs.init`` reads valid
configurations through ``_config_reader.read_config`` (the same rules, without pydantic) and builds this
model only when that reader cannot vouch for a value.

``POSTHOG_API_KEY`` is the only on/off switch. Misconfiguration that would silently lose data (a personal
key, a host that is not an http(s) URL, a bad number) raises :class:`ConfigError` at init with one clear
message; a merely unknown identify mode falls back to ``email`` with one warning.

:func:`load_settings` turns every validation problem into a line naming what the user wrote — the
keyword (``flush_interval=-1``) or the variable (``OBS_FLUSH_INTERVAL='-1'``), told apart by whether the
keyword was given — driven by each field's alias, so a new field needs nothing here. No pydantic or
pydantic-settings exception leaves it. A validator that knows the fix raises :class:`Fix` with the
corrected value, which the message then suggests in the user's own form.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

# The exception, the variable names and the rules the fast reader shares with this model.
from ._config_reader import (
    DEFAULT_HOST,
    MODULE,
    OBS_OWNED,
    PII_MODES,
    ROUTE,
    derive_environment,
    env_name,
    problem,
    super_properties,
)
from ._config_reader import (
    ConfigError as ConfigError,
)

log = logging.getLogger("obs")

IdentifyPII = Literal["none", "id", "email", "full"]
_PII_MODES = PII_MODES
_ROUTE = ROUTE
_MODULE = MODULE
_OBS_OWNED = OBS_OWNED


class Fix(ValueError):
    """A validator's problem that has one obvious correction: the message suggests ``value`` instead."""

    def __init__(self, problem: str, value: Any) -> None:
        super().__init__(problem)
        self.value = value


class Settings(BaseSettings):
    """Every setting, its environment variable(s) and default. Keyword overrides use the field name."""

    model_config = SettingsConfigDict(
        env_prefix="", case_sensitive=True, extra="forbid", env_ignore_empty=False
    )

    api_key: str | None = Field(None, validation_alias="POSTHOG_API_KEY")
    host: str = Field(DEFAULT_HOST, validation_alias="POSTHOG_HOST")
    identify_pii: IdentifyPII = Field("email", validation_alias="POSTHOG_IDENTIFY_PII")
    replay: bool = Field(True, validation_alias="POSTHOG_REPLAY")
    replay_mask_selector: str | None = Field(None, validation_alias="POSTHOG_REPLAY_MASK_SELECTOR")
    # The web integration (docs/web.md): where the page loads posthog-js from, and the HTML it rewrites.
    script_url: str | None = Field(None, validation_alias="POSTHOG_SCRIPT_URL")
    inject_max_bytes: int = Field(4 * 1024 * 1024, ge=0, validation_alias="OBS_INJECT_MAX_BYTES")
    llm_payloads: bool = Field(False, validation_alias="POSTHOG_LLM_PAYLOADS")
    llm_payload_max_chars: int = Field(30_000, ge=0, validation_alias="POSTHOG_LLM_PAYLOAD_MAX_CHARS")
    ai_route: bool = Field(False, validation_alias="OBS_AI_ROUTE")
    debug: bool = Field(False, validation_alias="POSTHOG_DEBUG")
    # As posthog-python: events from a server must not be geolocated by the server's own IP address.
    disable_geoip: bool = Field(True, validation_alias="OBS_DISABLE_GEOIP")
    is_server: bool = Field(True, validation_alias="OBS_IS_SERVER")

    # Error tracking.
    capture_uncaught: bool = Field(False, validation_alias="OBS_CAPTURE_UNCAUGHT")
    error_rate_limit: int = Field(10, ge=0, validation_alias="OBS_ERROR_RATE_LIMIT")
    error_rate_window: float = Field(60.0, gt=0, validation_alias="OBS_ERROR_RATE_WINDOW")
    scrub_secrets: bool = Field(True, validation_alias="OBS_SCRUB_SECRETS")
    # One plain regex or a JSON list of them: decoded by `_parse_patterns`, not by pydantic-settings.
    scrub_patterns: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias="OBS_SCRUB_PATTERNS"
    )
    in_app_modules: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias="OBS_IN_APP_MODULES"
    )

    # Feature flags (docs/flags.md). The personal/secure key is a SecretStr: never in a repr or a log line.
    personal_api_key: SecretStr | None = Field(None, validation_alias="POSTHOG_PERSONAL_API_KEY")
    flags_cache_ttl: float = Field(30.0, ge=0, validation_alias="OBS_FLAGS_CACHE_TTL")
    flags_timeout: float = Field(3.0, gt=0, validation_alias="OBS_FLAGS_TIMEOUT")
    flags_poll_interval: float = Field(30.0, gt=0, validation_alias="OBS_FLAGS_POLL_INTERVAL")

    # Super-properties on every event; see `_derive_environment` for the fallback chain. `properties`
    # are the process's base properties (a JSON object in the variable), under all the others.
    properties: Annotated[dict[str, Any], NoDecode] = Field(
        default_factory=dict, validation_alias="OBS_PROPERTIES"
    )
    environment: str | None = Field(None, validation_alias="POSTHOG_ENVIRONMENT")
    release: str | None = Field(None, validation_alias="OBS_RELEASE")
    local_dev_mode: bool = Field(False, validation_alias="LOCAL_DEV_MODE")
    release_channel: str | None = Field(None, validation_alias="RELEASE_CHANNEL")
    deployment_env: str | None = Field(None, validation_alias="OBS_DEPLOYMENT_ENV")

    # Pipeline tuning.
    flush_at: int = Field(100, ge=1, validation_alias="OBS_FLUSH_AT")
    flush_interval: float = Field(0.5, gt=0, validation_alias="OBS_FLUSH_INTERVAL")
    max_queue_size: int = Field(100_000, ge=1, validation_alias="OBS_MAX_QUEUE_SIZE")
    max_retries: int = Field(10, ge=0, validation_alias="OBS_MAX_RETRIES")
    retry_backoff: float = Field(0.5, ge=0, validation_alias="OBS_RETRY_BACKOFF")
    retry_max_delay: float = Field(30.0, ge=0, validation_alias="OBS_RETRY_MAX_DELAY")
    retry_budget: float = Field(30.0, ge=0, validation_alias="OBS_RETRY_BUDGET")
    # The durable spool (docs/reliability.md): off unless a directory is given.
    spool_dir: str | None = Field(None, validation_alias="OBS_SPOOL_DIR")
    spool_max_bytes: int = Field(100 * 1024 * 1024, ge=64 * 1024, validation_alias="OBS_SPOOL_MAX_BYTES")
    gzip: bool = Field(False, validation_alias="OBS_GZIP")
    # PostHog's capture protocol (docs/configuration.md#capture-protocol): v0 is /batch/, v1 the newer one.
    capture_mode: Literal["v0", "v1"] = Field("v0", validation_alias="OBS_CAPTURE_MODE")
    historical_migration: bool = Field(False, validation_alias="OBS_HISTORICAL_MIGRATION")
    timeout: float = Field(10.0, gt=0, validation_alias="OBS_TIMEOUT")
    shutdown_timeout: float = Field(10.0, ge=0, validation_alias="OBS_SHUTDOWN_TIMEOUT")
    max_batch_bytes: int = Field(5 * 1024 * 1024, ge=1024, validation_alias="OBS_MAX_BATCH_BYTES")
    max_event_bytes: int = Field(900 * 1024, ge=1024, validation_alias="OBS_MAX_EVENT_BYTES")
    max_ai_event_bytes: int = Field(8 * 1024 * 1024, ge=1024, validation_alias="OBS_MAX_AI_EVENT_BYTES")
    sinks: Annotated[list[Any], NoDecode] = Field(
        default_factory=lambda: ["posthog"], validation_alias="OBS_SINKS"
    )

    @field_validator("api_key", mode="before")
    @classmethod
    def _check_key(cls, v: Any) -> Any:
        if v is None:
            return None
        v = str(v).strip()
        if not v:
            return None
        if v.startswith("phx_"):
            raise ValueError(
                "this is a personal API key (phx_…). Events must be sent with the project API key (phc_…, "
                "under Project settings → Project API key); a personal key would leak account access and "
                "PostHog rejects it for capture."
            )
        return v

    @field_validator("personal_api_key", mode="before")
    @classmethod
    def _check_personal_key(cls, v: Any) -> Any:
        if isinstance(v, SecretStr):
            v = v.get_secret_value()
        if v is None or not str(v).strip():
            return None
        v = str(v).strip()
        if v.startswith("phc_"):
            raise ValueError(
                "this is a project API key (phc_…). Local flag evaluation needs a personal API key (phx_…) "
                "or a feature flags secure key (phs_…); the project key belongs in POSTHOG_API_KEY "
                "(api_key=)."
            )
        return v

    @field_validator("host", mode="before")
    @classmethod
    def _check_host(cls, v: Any) -> Any:
        if v is None or not str(v).strip():
            return DEFAULT_HOST
        raw = str(v).strip()
        wrong, fixed = _host_problem(raw)
        if wrong is None:
            return raw.rstrip("/")
        good = _corrected(fixed)
        if good is not None:
            raise Fix(wrong, good)
        raise ValueError(wrong)

    @field_validator("identify_pii", mode="before")
    @classmethod
    def _check_pii(cls, v: Any) -> Any:
        if v is None or str(v).strip() == "":
            return "email"
        mode = str(v).strip().lower()
        if mode not in _PII_MODES:
            log.warning(
                "obs: POSTHOG_IDENTIFY_PII=%r is not one of %s; using 'email'", v, "|".join(_PII_MODES)
            )
            return "email"
        return mode

    @field_validator("script_url", mode="before")
    @classmethod
    def _check_script_url(cls, v: Any) -> Any:
        if v is None or not str(v).strip():
            return None
        raw = str(v).strip()
        if not raw.startswith(("https://", "http://", "/")):
            raise ValueError("must be an http(s) URL or a path starting with /")
        return raw

    @field_validator(
        "environment", "release", "release_channel", "deployment_env", "spool_dir", mode="before"
    )
    @classmethod
    def _blank_is_none(cls, v: Any) -> Any:
        if v is None or not str(v).strip():
            return None
        return str(v).strip()

    @field_validator("capture_mode", mode="before")
    @classmethod
    def _check_capture_mode(cls, v: Any) -> Any:
        if v is None or not str(v).strip():
            return "v0"
        mode = str(v).strip().lower()
        # posthog-python's (and posthog-go's) other names for the two protocols.
        mode = {"legacy": "v0", "analytics_v1": "v1"}.get(mode, mode)
        if mode not in ("v0", "v1"):
            raise ValueError(f"{v!r} is not a capture mode: use v0 (/batch/) or v1 (/i/v1/analytics/events)")
        return mode

    @field_validator("sinks", mode="before")
    @classmethod
    def _split_sinks(cls, v: Any) -> Any:
        if isinstance(v, str):
            items = [s.strip() for s in v.split(",") if s.strip()]
            return items or ["posthog"]
        if v is None:
            return ["posthog"]
        if isinstance(v, (list, tuple)):
            return list(v)
        raise ValueError("must be a comma-separated string or a list of sink names and Sink instances")

    @field_validator("in_app_modules", mode="before")
    @classmethod
    def _split_modules(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [m.strip() for m in v.split(",") if m.strip()]
        return [] if v is None else v

    @field_validator("in_app_modules", mode="after")
    @classmethod
    def _check_modules(cls, v: list[str]) -> list[str]:
        bad = [m for m in v if not _MODULE.match(m)]
        if bad:  # a path or a typo would never match a frame's module: say so now
            raise ValueError(f"{bad[0]!r} is not a module name (expected dotted names such as myapp,billing)")
        return v

    @field_validator("scrub_patterns", mode="before")
    @classmethod
    def _parse_patterns(cls, v: Any) -> Any:
        """A JSON list of strings, or else one plain regex (``[0-9]{16}`` is a regex, not JSON)."""
        if not isinstance(v, str):
            return [] if v is None else v
        text = v.strip()
        if not text:
            return []
        if text.startswith("["):
            try:
                decoded = json.loads(text)
            except ValueError:
                decoded = None
            if isinstance(decoded, list) and all(isinstance(p, str) for p in decoded):
                return decoded
        return [text]

    @field_validator("scrub_patterns", mode="after")
    @classmethod
    def _check_patterns(cls, v: list[str]) -> list[str]:
        from ._scrub import Scrubber

        Scrubber(False, v)  # compiles each pattern; the ValueError names the one that does not
        return v

    @field_validator("properties", mode="before")
    @classmethod
    def _parse_properties(cls, v: Any) -> Any:
        if v is None:
            return {}
        if isinstance(v, str):
            if not v.strip():
                return {}
            try:
                v = json.loads(v)
            except ValueError as e:
                raise ValueError(f'must be a JSON object such as {{"source": "api"}} ({e})') from None
            if not isinstance(v, dict):
                raise ValueError(f"must be a JSON object, not {type(v).__name__} {v!r}")
            return v
        if not isinstance(v, Mapping):
            raise ValueError("must be a dict of property name → value")
        for key in v:
            if not isinstance(key, str):
                raise ValueError(f"property names must be strings, not {key!r}")
        return dict(v)

    @field_validator("properties", mode="after")
    @classmethod
    def _check_properties(cls, v: dict[str, Any]) -> dict[str, Any]:
        from ._serialize import Problems, sanitize_properties

        for key in v:
            if not key:
                raise ValueError("a property name is empty")
            if key in _OBS_OWNED:
                raise ValueError(f"{key!r} is set by obs on every event: {_OBS_OWNED[key]}")
        problems = Problems()
        clean = sanitize_properties(v, problems)  # JSON-safe once, here, like every event's properties
        if problems.dropped:
            raise ValueError(f"cannot be sent: {'; '.join(problems.dropped)}")
        return clean

    @model_validator(mode="after")
    def _derive_environment(self) -> Settings:
        derive_environment(self)
        return self

    @property
    def enabled(self) -> bool:
        return self.api_key is not None

    def super_properties(self) -> dict[str, Any]:
        """What every event carries under its own properties: the base properties, then obs's."""
        return super_properties(self)


def load_settings(**overrides: Any) -> Settings:
    """Build Settings or raise ConfigError with every problem in one message, each naming its source."""
    fields = Settings.model_fields
    unknown = sorted(k for k in overrides if k not in fields)
    if unknown:
        raise ConfigError(f"obs.init() got unknown setting(s): {', '.join(unknown)}")
    by_alias: dict[str, Any] = {env_name(k): v for k, v in overrides.items()}
    try:
        return Settings(**by_alias)
    except ValidationError as e:
        problems = [_problem(err, overrides) for err in e.errors()]
    except SettingsError as e:  # a variable pydantic-settings decodes as JSON, and could not
        problems = [_undecodable(e, overrides)]
    raise ConfigError("obs configuration is invalid:\n  " + "\n  ".join(problems))


def _problem(err: Any, overrides: Mapping[str, Any]) -> str:
    loc = err.get("loc") or ()
    if not loc:
        return f"settings: {_message(err)}"
    names = {env_name(f): f for f in Settings.model_fields}
    field = names.get(str(loc[0]), str(loc[0]))
    message = _message(err)
    if len(loc) > 1:  # inside a list or dict: which item
        message = f"{''.join(f'[{p!r}]' for p in loc[1:])}: {message}"
    error = (err.get("ctx") or {}).get("error")
    fix = error.value if isinstance(error, Fix) else None
    if field not in Settings.model_fields:
        return f"{field}: {message}"
    return problem(field, overrides, message, fix)


# pydantic's wording → ours, for the errors a setting most often has.
_REWORDED = {
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "int_type": "must be a whole number",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "bool_parsing": "must be true or false (1/0, yes/no, on/off)",
    "bool_type": "must be true or false",
}


def _message(err: Any) -> str:
    kind = err.get("type", "")
    if kind in _REWORDED:
        return _REWORDED[kind]
    msg = str(err.get("msg", "is invalid"))
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    return msg.replace("Input should be", "must be", 1)


def _undecodable(e: SettingsError, overrides: Mapping[str, Any]) -> str:
    m = re.search(r'field "(\w+)"', str(e))
    field = m.group(1) if m else ""
    if field not in Settings.model_fields:
        return f"settings: {e}"
    cause = e.__cause__
    return problem(field, overrides, f"must be JSON ({cause})" if cause else "must be JSON")


def _host_problem(raw: str) -> tuple[str | None, str | None]:
    """(what is wrong with host ``raw``, the corrected host or None); (None, None) when it is fine."""
    import httpx  # only reached while enabling the SDK

    if any(c.isspace() for c in raw):
        compact = "".join(raw.split())
        if _corrected(compact) is not None:
            return "a host has no spaces", compact
        return f"must be an http(s) URL such as {DEFAULT_HOST} or https://us.i.posthog.com", None
    if "://" not in raw and re.match(r"([\w-]+(\.[\w-]+)+|localhost)(:\d+)?(/|\Z)", raw):
        local = raw.startswith(("localhost", "127."))  # a local PostHog or proxy rarely has TLS
        return "needs its scheme", f"{'http' if local else 'https'}://{raw}"
    try:
        url = httpx.URL(raw)
    except Exception as e:  # httpx.InvalidURL and friends
        return f"is not a URL: {e}", None
    if url.scheme not in ("http", "https") or not url.host:
        return f"must be an http(s) URL such as {DEFAULT_HOST} or https://us.i.posthog.com", None
    base = raw.split("#", 1)[0].split("?", 1)[0]
    if url.fragment or "#" in raw:
        return "a host has no fragment (#…)", base.rstrip("/")
    if url.query or "?" in raw:
        return "a host has no query (?…)", base.rstrip("/")
    path = url.path.rstrip("/")
    route = _ROUTE.search(path)
    if route:
        suffix, trimmed = route.group(0), base.rstrip("/")
        prefix = trimmed[: -len(suffix)] if trimmed.endswith(suffix) else None
        return f"ends in PostHog's route {suffix!r}: the host is the base URL, obs adds the routes", prefix
    return None, None


def _corrected(host: str | None) -> str | None:
    """``host`` with every fix `_host_problem` suggests applied in turn; None if one has no fix."""
    for _ in range(4):  # each fix removes one kind of problem: spaces, scheme, query/fragment, route
        if host is None:
            return None
        wrong, fixed = _host_problem(host)
        if wrong is None:
            return host.rstrip("/")
        host = fixed
    return None
