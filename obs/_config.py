"""All configuration: one pydantic-settings model, read from the environment plus keyword overrides.

``POSTHOG_API_KEY`` is the only on/off switch. Misconfiguration that would silently lose data (a personal
key, a host that is not an http(s) URL, a bad number) raises :class:`ConfigError` at init with one clear
message; a merely unknown identify mode falls back to ``email`` with one warning.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

log = logging.getLogger("obs")

IdentifyPII = Literal["none", "id", "email", "full"]
_PII_MODES = ("none", "id", "email", "full")
DEFAULT_HOST = "https://eu.i.posthog.com"


class ConfigError(ValueError):
    """Raised by :func:`obs.init` for configuration that cannot work."""


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
    scrub_patterns: list[str] = Field(default_factory=list, validation_alias="OBS_SCRUB_PATTERNS")
    in_app_modules: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias="OBS_IN_APP_MODULES"
    )

    # Feature flags (docs/flags.md). The personal/secure key is a SecretStr: never in a repr or a log line.
    personal_api_key: SecretStr | None = Field(None, validation_alias="POSTHOG_PERSONAL_API_KEY")
    flags_cache_ttl: float = Field(30.0, ge=0, validation_alias="OBS_FLAGS_CACHE_TTL")
    flags_timeout: float = Field(3.0, gt=0, validation_alias="OBS_FLAGS_TIMEOUT")
    flags_poll_interval: float = Field(30.0, gt=0, validation_alias="OBS_FLAGS_POLL_INTERVAL")

    # Super-properties on every event; see `_derive_environment` for the fallback chain.
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
                "POSTHOG_API_KEY holds a personal API key (phx_…). Events must be sent with the project "
                "API key (phc_…, under Project settings → Project API key); a personal key would leak "
                "account access and PostHog rejects it for capture."
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
                "POSTHOG_PERSONAL_API_KEY holds a project API key (phc_…). Local flag evaluation needs a "
                "personal API key (phx_…) or a feature flags secure key (phs_…); the project key belongs "
                "in POSTHOG_API_KEY."
            )
        return v

    @field_validator("host", mode="before")
    @classmethod
    def _check_host(cls, v: Any) -> Any:
        if v is None or not str(v).strip():
            return DEFAULT_HOST
        import httpx  # only reached while enabling the SDK

        raw = str(v).strip()
        try:
            url = httpx.URL(raw)
        except Exception as e:  # httpx.InvalidURL and friends
            raise ValueError(f"POSTHOG_HOST {raw!r} is not a URL: {e}") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(
                f"POSTHOG_HOST {raw!r} must be an http(s) URL such as {DEFAULT_HOST} or https://us.i.posthog.com"
            )
        return raw.rstrip("/")

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
            raise ValueError(f"POSTHOG_SCRIPT_URL {raw!r} must be an http(s) URL or a path starting with /")
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
        return list(v) if not isinstance(v, list) else v

    @field_validator("in_app_modules", mode="before")
    @classmethod
    def _split_modules(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [m.strip() for m in v.split(",") if m.strip()]
        return [] if v is None else v

    @field_validator("scrub_patterns", mode="after")
    @classmethod
    def _check_patterns(cls, v: list[str]) -> list[str]:
        from ._scrub import Scrubber

        try:
            Scrubber(False, v)  # compiles each pattern, naming the one that does not
        except ValueError as e:
            raise ValueError(f"OBS_SCRUB_PATTERNS: {e}") from None
        return v

    @model_validator(mode="after")
    def _derive_environment(self) -> Settings:
        if self.environment is None:
            if self.local_dev_mode:
                self.environment = "local"
            else:
                self.environment = self.release_channel or self.deployment_env or "unknown"
        if self.release is None:
            self.release = self.release_channel
        return self

    @property
    def enabled(self) -> bool:
        return self.api_key is not None

    def super_properties(self) -> dict[str, Any]:
        props: dict[str, Any] = {"environment": self.environment}
        if self.release is not None:
            props["release"] = self.release
        if self.disable_geoip:
            props["$geoip_disable"] = True
        if self.is_server:
            props["$is_server"] = True
        return props


def load_settings(**overrides: Any) -> Settings:
    """Build Settings or raise ConfigError with every problem in one message."""
    fields = Settings.model_fields
    unknown = sorted(k for k in overrides if k not in fields)
    if unknown:
        raise ConfigError(f"obs.init() got unknown setting(s): {', '.join(unknown)}")
    try:
        by_alias: dict[str, Any] = {str(fields[k].validation_alias or k): v for k, v in overrides.items()}
        return Settings(**by_alias)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            where = ".".join(str(p) for p in err["loc"]) or "settings"
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {msg}")
        raise ConfigError("obs configuration is invalid:\n  " + "\n  ".join(problems)) from None
