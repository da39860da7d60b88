"""Every setting, its environment variable, default and validation rule."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import typing

import pytest

import obs
from obs._client import Client, DisabledClient
from obs._config import DEFAULT_HOST, load_settings
from tests.capture_server import CaptureServer


def test_defaults() -> None:
    s = load_settings(api_key="phc_x")
    assert s.host == DEFAULT_HOST == "https://eu.i.posthog.com"
    assert s.identify_pii == "email"
    assert s.replay is True
    assert s.replay_mask_selector is None
    assert s.llm_payloads is False
    assert s.llm_payload_max_chars == 30_000
    assert s.debug is False
    assert (s.flush_at, s.flush_interval, s.max_queue_size, s.max_retries) == (100, 0.5, 100_000, 10)
    assert (s.retry_budget, s.spool_dir, s.spool_max_bytes) == (30.0, None, 100 * 1024 * 1024)
    assert (s.gzip, s.timeout) == (False, 10.0)
    assert s.sinks == ["posthog"]
    assert s.environment == "unknown" and s.release is None
    assert s.disable_geoip is True and s.is_server is True


@pytest.mark.parametrize(
    ("env", "raw", "field", "expected"),
    [
        ("POSTHOG_HOST", "https://us.i.posthog.com/", "host", "https://us.i.posthog.com"),
        ("POSTHOG_REPLAY", "false", "replay", False),
        ("POSTHOG_REPLAY_MASK_SELECTOR", ".secret", "replay_mask_selector", ".secret"),
        ("POSTHOG_LLM_PAYLOADS", "1", "llm_payloads", True),
        ("POSTHOG_LLM_PAYLOAD_MAX_CHARS", "123", "llm_payload_max_chars", 123),
        ("POSTHOG_DEBUG", "true", "debug", True),
        ("OBS_FLUSH_AT", "7", "flush_at", 7),
        ("OBS_FLUSH_INTERVAL", "2.5", "flush_interval", 2.5),
        ("OBS_MAX_QUEUE_SIZE", "55", "max_queue_size", 55),
        ("OBS_MAX_RETRIES", "0", "max_retries", 0),
        ("OBS_GZIP", "1", "gzip", True),
        ("OBS_TIMEOUT", "1.5", "timeout", 1.5),
        ("OBS_RETRY_BACKOFF", "0.1", "retry_backoff", 0.1),
        ("OBS_RETRY_MAX_DELAY", "4", "retry_max_delay", 4.0),
        ("OBS_SHUTDOWN_TIMEOUT", "3", "shutdown_timeout", 3.0),
        ("OBS_MAX_BATCH_BYTES", "2048", "max_batch_bytes", 2048),
        ("OBS_MAX_EVENT_BYTES", "4096", "max_event_bytes", 4096),
        (
            "OBS_SINKS",
            "posthog, console ,sqlite:.obs/x.db",
            "sinks",
            ["posthog", "console", "sqlite:.obs/x.db"],
        ),
        ("OBS_DISABLE_GEOIP", "false", "disable_geoip", False),
        ("OBS_IS_SERVER", "0", "is_server", False),
    ],
)
def test_each_env_var(
    monkeypatch: pytest.MonkeyPatch, env: str, raw: str, field: str, expected: object
) -> None:
    monkeypatch.setenv(env, raw)
    assert getattr(load_settings(api_key="phc_x"), field) == expected
    assert getattr(load_settings(api_key="phc_x", **{field: expected}), field) == expected


def test_keyword_overrides_win_over_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBS_FLUSH_AT", "7")
    monkeypatch.setenv("POSTHOG_HOST", "https://us.i.posthog.com")
    s = load_settings(api_key="phc_x", flush_at=3, host="http://127.0.0.1:9999/")
    assert s.flush_at == 3
    assert s.host == "http://127.0.0.1:9999"


def test_unprefixed_env_vars_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    # HOST, DEBUG, TIMEOUT … are common in other tools' environments; only POSTHOG_*/OBS_* count.
    monkeypatch.setenv("HOST", "ftp://nope")
    monkeypatch.setenv("DEBUG", "1")
    monkeypatch.setenv("API_KEY", "phc_other")
    s = load_settings()
    assert (s.host, s.debug, s.api_key) == (DEFAULT_HOST, False, None)


@pytest.mark.parametrize("blank", [None, "", "   "])
def test_no_key_means_fully_off(monkeypatch: pytest.MonkeyPatch, blank: str | None) -> None:
    if blank is not None:
        monkeypatch.setenv("POSTHOG_API_KEY", blank)
    client = obs.init()
    assert isinstance(client, DisabledClient) and not client.enabled
    assert obs.capture("x") is None
    assert obs.capture_ai("$ai_generation") is None
    assert obs.identify("u") is None
    assert obs.flush(1) is True


def test_disabled_mode_starts_no_thread_and_imports_no_network_code() -> None:
    code = (
        "import sys, threading, obs\n"
        "obs.capture('x'); obs.identify('u', {'a': 1}); obs.flush(); obs.shutdown()\n"
        "assert threading.active_count() == 1, threading.enumerate()\n"
        "heavy = [m for m in ('httpx', 'anyio', 'pydantic', 'posthog') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "print('ok')\n"
    )
    env = {"PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_disabled_mode_sends_no_request(server: CaptureServer) -> None:
    code = (
        "import obs\n"
        "for i in range(100): obs.capture('x', {'i': i}, distinct_id='u')\n"
        "obs.capture_ai('$ai_generation'); obs.flush(); obs.shutdown()\n"
    )
    env = {"PATH": "/usr/bin:/bin", "POSTHOG_HOST": server.url, "OBS_FLUSH_AT": "1"}  # a host, but no key
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert not server.wait_for_requests(1, timeout=0.5)
    assert server.received == []
    # The same program with a key does reach this server: the silence above is the SDK being off.
    env["POSTHOG_API_KEY"] = "phc_on"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert server.wait_for_events(101, timeout=5)


def test_key_in_env_turns_it_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTHOG_API_KEY", "phc_env")
    monkeypatch.setenv("OBS_SINKS", "memory")
    client = obs.init()
    assert isinstance(client, Client) and client.settings.api_key == "phc_env"
    assert isinstance(obs.capture("x"), str)


def test_personal_key_is_refused_with_a_clear_error() -> None:
    with pytest.raises(obs.ConfigError) as e:
        obs.init(api_key="phx_personal123")
    msg = str(e.value)
    assert "personal API key" in msg and "phc_" in msg


def test_lazy_init_with_bad_config_logs_once_and_stays_off(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("POSTHOG_API_KEY", "phx_personal123")
    with caplog.at_level(logging.ERROR, logger="obs"):
        assert obs.capture("a") is None  # never raises into the caller
        assert obs.capture("b") is None
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "personal API key" in errors[0].getMessage()
    assert isinstance(obs.get_client(), DisabledClient)


@pytest.mark.parametrize("host", ["ftp://example.com", "not a url", "http://", "https://"])
def test_bad_host_is_refused(monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    with pytest.raises(obs.ConfigError, match=re.escape(f"host={host!r}: must be an http(s) URL")):
        obs.init(api_key="phc_x", host=host)
    monkeypatch.setenv("POSTHOG_HOST", host)
    with pytest.raises(obs.ConfigError, match=re.escape(f"POSTHOG_HOST={host!r}: must be an http(s) URL")):
        obs.init(api_key="phc_x")


@pytest.mark.parametrize(
    ("host", "why", "fixed"),
    [
        ("https://us.i.posthog.com/batch/", "ends in PostHog's route '/batch'", "https://us.i.posthog.com"),
        ("https://us.i.posthog.com/i/v0/e/", "ends in PostHog's route '/i/v0/e'", "https://us.i.posthog.com"),
        (
            "https://eu.i.posthog.com/capture",
            "ends in PostHog's route '/capture'",
            "https://eu.i.posthog.com",
        ),
        (
            "https://example.com/ingest/flags/",
            "ends in PostHog's route '/flags'",
            "https://example.com/ingest",
        ),
        ("https://us.i.posthog .com", "a host has no spaces", "https://us.i.posthog.com"),
        ("https://us.i.posthog.com/?token=1", "a host has no query", "https://us.i.posthog.com"),
        ("https://us.i.posthog.com#eu", "a host has no fragment", "https://us.i.posthog.com"),
        ("us.i.posthog.com", "needs its scheme", "https://us.i.posthog.com"),
        ("localhost:8010", "needs its scheme", "http://localhost:8010"),
        ("us.i.posthog.com/batch/", "needs its scheme", "https://us.i.posthog.com"),  # both fixes
        ("https://us.i. posthog.com/batch/?x=1", "a host has no spaces", "https://us.i.posthog.com"),
    ],
)
def test_a_fixable_host_is_refused_with_the_fix(
    monkeypatch: pytest.MonkeyPatch, host: str, why: str, fixed: str
) -> None:
    with pytest.raises(obs.ConfigError) as e:
        obs.init(api_key="phc_x", host=host)
    line = str(e.value).splitlines()[1].strip()
    assert line.startswith(f"host={host!r}: {why}") and line.endswith(f"; use host={fixed!r}")
    monkeypatch.setenv("POSTHOG_HOST", host)
    with pytest.raises(obs.ConfigError) as e:
        obs.init(api_key="phc_x")
    line = str(e.value).splitlines()[1].strip()
    assert line.startswith(f"POSTHOG_HOST={host!r}: {why}") and line.endswith(f"; use POSTHOG_HOST={fixed!r}")
    # The suggested value is accepted as it is.
    assert load_settings(api_key="phc_x", host=fixed).host == fixed


@pytest.mark.parametrize(
    "host",
    ["https://posthog.example.com/ingest", "http://127.0.0.1:8010/", "https://e", "https://x.com/events"],
)
def test_a_path_prefix_is_a_host(host: str) -> None:
    # Behind a reverse proxy PostHog can live under a path; only PostHog's own routes are refused.
    assert load_settings(api_key="phc_x", host=host).host == host.rstrip("/")


def test_several_problems_reported_together(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBS_FLUSH_INTERVAL", "-1")
    with pytest.raises(obs.ConfigError) as e:
        load_settings(api_key="phx_1", host="ftp://x", flush_at=0)
    lines = [line.strip() for line in str(e.value).splitlines()[1:]]
    assert len(lines) == 4
    assert lines[0].startswith("api_key='phx_…': this is a personal API key")  # a key is never echoed
    assert lines[1].startswith("host='ftp://x': must be an http(s) URL")
    assert "OBS_FLUSH_INTERVAL='-1': must be greater than 0" in lines
    assert "flush_at=0: must be greater than or equal to 1" in lines


def test_unknown_setting_and_unknown_sink_are_refused() -> None:
    with pytest.raises(obs.ConfigError, match="unknown setting"):
        obs.init(api_key="phc_x", flushat=3)
    with pytest.raises(obs.ConfigError, match="unknown sink"):
        obs.init(api_key="phc_x", sinks=["kafka"])


@pytest.mark.parametrize("mode", ["none", "id", "email", "full", "EMAIL", " full "])
def test_identify_modes(mode: str) -> None:
    assert load_settings(identify_pii=mode).identify_pii == mode.strip().lower()


def test_unknown_identify_mode_falls_back_to_email_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("POSTHOG_IDENTIFY_PII", "everything")
    with caplog.at_level(logging.WARNING, logger="obs"):
        s = load_settings(api_key="phc_x")
    assert s.identify_pii == "email"
    warnings = [r for r in caplog.records if "POSTHOG_IDENTIFY_PII" in r.getMessage()]
    assert len(warnings) == 1


@pytest.mark.parametrize(
    ("env", "environment", "release"),
    [
        ({}, "unknown", None),
        ({"OBS_DEPLOYMENT_ENV": "staging"}, "staging", None),
        ({"OBS_DEPLOYMENT_ENV": "staging", "RELEASE_CHANNEL": "beta"}, "beta", "beta"),
        ({"RELEASE_CHANNEL": "beta", "LOCAL_DEV_MODE": "1"}, "local", "beta"),
        ({"POSTHOG_ENVIRONMENT": "prod", "LOCAL_DEV_MODE": "1", "RELEASE_CHANNEL": "beta"}, "prod", "beta"),
        ({"OBS_RELEASE": "1.2.3", "RELEASE_CHANNEL": "beta"}, "beta", "1.2.3"),
        ({"OBS_RELEASE": "1.2.3"}, "unknown", "1.2.3"),
        ({"LOCAL_DEV_MODE": "0", "OBS_DEPLOYMENT_ENV": "ci"}, "ci", None),
    ],
)
def test_environment_and_release_rules(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], environment: str, release: str | None
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    s = load_settings(api_key="phc_x")
    assert (s.environment, s.release) == (environment, release)
    props = s.super_properties()
    assert props["environment"] == environment
    assert ("release" in props) == (release is not None)  # absent, never null


def test_super_properties_on_the_wire(monkeypatch: pytest.MonkeyPatch) -> None:
    from obs.sinks import MemorySink

    monkeypatch.setenv("RELEASE_CHANNEL", "canary")
    sink = MemorySink()
    obs.init(api_key="phc_x", sinks=[sink])
    obs.capture("a", distinct_id="u")
    obs.capture("b", {"environment": "override"}, distinct_id="u")
    assert obs.flush(5)
    a, b = sink.events
    assert a["properties"]["environment"] == "canary" and a["properties"]["release"] == "canary"
    assert b["properties"]["environment"] == "override"  # the caller's own property wins


def test_geoip_and_server_flags_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    from obs.sinks import MemorySink

    monkeypatch.setenv("OBS_DISABLE_GEOIP", "0")
    monkeypatch.setenv("OBS_IS_SERVER", "false")
    sink = MemorySink()
    obs.init(api_key="phc_x", sinks=[sink])
    obs.capture("cli_ran", distinct_id="u")
    assert obs.flush(5)
    props = sink.events[0]["properties"]
    assert "$geoip_disable" not in props and "$is_server" not in props


def test_init_is_idempotent_and_replaces_on_new_overrides() -> None:
    from obs.sinks import MemorySink

    first = obs.init(api_key="phc_x", sinks=["memory"])
    assert obs.init(api_key="phc_x", sinks=["memory"]) is first
    assert obs.get_client() is first
    sink = MemorySink()
    second = obs.init(api_key="phc_x", sinks=[sink])
    assert second is not first and obs.get_client() is second
    assert first._closed  # the old client was flushed and stopped


def test_init_picks_up_a_changed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # e.g. the first capture ran before a .env file was loaded: init() again must see the new key.
    assert obs.capture("early") is None
    assert isinstance(obs.get_client(), DisabledClient)
    monkeypatch.setenv("POSTHOG_API_KEY", "phc_late")
    monkeypatch.setenv("OBS_SINKS", "memory")
    client = obs.init()
    assert isinstance(client, Client) and obs.capture("late") is not None
    assert obs.init() is client  # unchanged environment: the same client


def test_debug_turns_on_debug_logging() -> None:
    obs.init(api_key="phc_x", sinks=["memory"], debug=True)
    assert logging.getLogger("obs").isEnabledFor(logging.DEBUG)
    logging.getLogger("obs").setLevel(logging.NOTSET)


# ---------------------------------------------------------------- every field, both ways

# Fields that accept every value, and how (checked below, so an entry cannot hide a missing rule).
ACCEPTS_ANYTHING = {
    "identify_pii": "email",  # an unknown mode falls back to 'email' with a warning (documented)
    "environment": "5",  # free text: a keyword is taken as str()
    "release": "5",
    "release_channel": "5",
    "deployment_env": "5",
    "spool_dir": "5",
}
# Fields whose validator, not their type, says what is invalid: (as a keyword, as the variable).
BY_VALIDATOR: dict[str, tuple[object, str]] = {
    "api_key": ("phx_personal_secret", "phx_personal_secret"),
    "personal_api_key": ("phc_project", "phc_project"),
    "host": ("ftp://example.com", "https://us.i.posthog.com/batch/"),
    "script_url": ("ftp://cdn.example.com/array.js", "cdn.example.com/array.js"),
    "scrub_patterns": (["ticket-\\d+", "(unclosed"], "(unclosed"),
    "in_app_modules": ("src/myapp", "my-app"),
    "sinks": ("kafka", "kafka"),
    "properties": ([("source", "api")], '["source", "api"]'),
}


def _invalid(name: str) -> list[tuple[str, object]]:
    """("keyword" | "env", value) pairs that ``name`` must refuse, from its validator or its type."""
    if name in BY_VALIDATOR:
        keyword, env = BY_VALIDATOR[name]
        return [("keyword", keyword), ("env", env)]
    field = obs.Settings.model_fields[name]
    annotation = field.annotation
    if annotation is bool:
        return [("keyword", "maybe"), ("env", "maybe")]
    if annotation in (int, float):
        bad: list[tuple[str, object]] = [("env", "many")]
        for rule in field.metadata:
            floor = getattr(rule, "ge", None)
            if floor is not None:
                bad += [("keyword", floor - 1), ("env", str(floor - 1))]
            floor = getattr(rule, "gt", None)
            if floor is not None:
                bad += [("keyword", floor - 1), ("env", str(floor - 1))]
        return bad or [("keyword", "many"), ("env", "many")]
    if typing.get_origin(annotation) is typing.Literal:
        return [("keyword", "bogus"), ("env", "bogus")]
    if str in typing.get_args(annotation) or annotation is str:
        return [("keyword", 123)]  # every string is a valid value; a number is not one
    raise AssertionError(f"no invalid value known for setting {name!r}: add it to BY_VALIDATOR")


CASES = [
    (n, source, v)
    for n in obs.Settings.model_fields
    if n not in ACCEPTS_ANYTHING
    for source, v in _invalid(n)
]


def _shown(name: str, value: object) -> str:
    if name.endswith("api_key"):
        return repr(str(value)[:4] + "…")  # a key shows only its prefix
    return repr(value)


def test_every_setting_is_covered_both_ways() -> None:
    for name in obs.Settings.model_fields:
        sources = {source for n, source, _ in CASES if n == name}
        assert name in ACCEPTS_ANYTHING or "keyword" in sources, name
        # From the environment every value is a string: only free text has no invalid one.
        text_only = str in typing.get_args(obs.Settings.model_fields[name].annotation)
        assert name in ACCEPTS_ANYTHING or "env" in sources or text_only, name


@pytest.mark.parametrize(("name", "source", "value"), CASES, ids=[f"{n}-{s}" for n, s, _ in CASES])
def test_an_invalid_value_is_one_config_error_naming_what_was_written(
    monkeypatch: pytest.MonkeyPatch, name: str, source: str, value: object
) -> None:
    base: dict[str, object] = {"api_key": "phc_x", "sinks": ["memory"]}
    base.pop(name, None)
    if source == "keyword":
        base[name] = value
        written = f"{name}={_shown(name, value)}: "
    else:
        assert isinstance(value, str)
        env = str(obs.Settings.model_fields[name].validation_alias)
        monkeypatch.setenv(env, value)
        written = f"{env}={_shown(name, value)}: "
    with pytest.raises(obs.ConfigError) as e:
        obs.init(**base)
    assert type(e.value) is obs.ConfigError
    # No pydantic error behind it either: a traceback shows the one message.
    assert e.value.__cause__ is None and (e.value.__context__ is None or e.value.__suppress_context__)
    lines = str(e.value).splitlines()
    assert lines[0] == "obs configuration is invalid:"
    assert [line.strip() for line in lines[1:] if line.strip().startswith(written)], str(e.value)
    if name.endswith("api_key"):
        assert str(value) not in str(e.value)  # the key itself is never in the message
    assert obs._current.client is None  # a refused configuration leaves no client behind


@pytest.mark.parametrize("name", sorted(ACCEPTS_ANYTHING))
def test_free_settings_accept_anything(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    assert getattr(load_settings(**{name: 5}), name) == ACCEPTS_ANYTHING[name]
    monkeypatch.setenv(str(obs.Settings.model_fields[name].validation_alias), "5")
    assert getattr(load_settings(), name) == ACCEPTS_ANYTHING[name]


@pytest.mark.parametrize("name", sorted(obs.Settings.model_fields))
def test_no_keyword_value_makes_init_raise_anything_but_config_error(name: str) -> None:
    # Whatever a caller passes, init either takes it or explains it: never a pydantic or other error.
    class Odd:
        def __repr__(self) -> str:
            return "<odd>"

    for value in (Odd(), [Odd()], {1: Odd()}, float("nan"), b"\xff", "\x00"):
        kw: dict[str, object] = {"api_key": "phc_x", "sinks": ["memory"], name: value}
        try:
            obs.init(**kw)
        except obs.ConfigError as e:
            assert f"{name}=" in str(e)
        finally:
            obs.shutdown()
            obs._current.client = None


def test_a_variable_pydantic_settings_would_decode_is_a_config_error_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A field of another type that pydantic-settings decodes as JSON (none today): its SettingsError is
    # translated like any other problem, naming the variable.
    from pydantic_settings import SettingsError

    from obs import _config

    err = SettingsError('error parsing value for field "flush_at" from source "EnvSettingsSource"')
    err.__cause__ = ValueError("Expecting value: line 1 column 1 (char 0)")
    monkeypatch.setenv("OBS_FLUSH_AT", "{")
    assert (
        _config._undecodable(err, {})
        == "OBS_FLUSH_AT='{': must be JSON (Expecting value: line 1 column 1 (char 0))"
    )
    assert _config._undecodable(err, {"flush_at": "{"}).startswith("flush_at='{': must be JSON")


# ---------------------------------------------------------------- OBS_SCRUB_PATTERNS


@pytest.mark.parametrize(
    ("raw", "patterns"),
    [
        ("ticket-\\d+", ["ticket-\\d+"]),  # one plain regex
        ('["ticket-\\\\d+", "(?i)iban=(?P<secret>\\\\w+)"]', ["ticket-\\d+", "(?i)iban=(?P<secret>\\w+)"]),
        ("[0-9]{16}", ["[0-9]{16}"]),  # starts like JSON, but is a regex
        ("[1, 2]", ["[1, 2]"]),  # JSON, but not a list of strings: a regex (a character class)
        ("  ", []),
    ],
)
def test_scrub_patterns_take_a_regex_or_a_json_list(
    monkeypatch: pytest.MonkeyPatch, raw: str, patterns: list[str]
) -> None:
    monkeypatch.setenv("OBS_SCRUB_PATTERNS", raw)
    assert load_settings(api_key="phc_x").scrub_patterns == patterns
    assert load_settings(api_key="phc_x", scrub_patterns=raw).scrub_patterns == patterns


def test_a_plain_regex_pattern_scrubs_exception_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    from obs.sinks import MemorySink

    monkeypatch.setenv("OBS_SCRUB_PATTERNS", "ticket-\\d+")
    sink = MemorySink()
    obs.init(api_key="phc_x", sinks=[sink])
    obs.capture_exception(ValueError("lost ticket-4711 today"), distinct_id="u")
    assert obs.flush(5)
    (event,) = sink.events
    assert event["properties"]["$exception_list"][0]["value"] == "lost [redacted] today"


def test_an_invalid_pattern_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBS_SCRUB_PATTERNS", '["fine", "ticket-(\\\\d+"]')
    with pytest.raises(obs.ConfigError) as e:
        obs.init(api_key="phc_x", sinks=["memory"])
    assert "invalid scrub pattern 'ticket-(\\\\d+'" in str(e.value)
    assert str(e.value).splitlines()[1].strip().startswith('OBS_SCRUB_PATTERNS=\'["fine"')


# ---------------------------------------------------------------- OBS_PROPERTIES: base properties


def test_base_properties_from_the_variable_or_the_keyword(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBS_PROPERTIES", '{"source": "chat_copilot", "tier": 2}')
    assert load_settings(api_key="phc_x").properties == {"source": "chat_copilot", "tier": 2}
    assert load_settings(api_key="phc_x", properties={"source": "batch"}).properties == {"source": "batch"}
    monkeypatch.setenv("OBS_PROPERTIES", " ")
    assert load_settings(api_key="phc_x").properties == {}


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("source=chat", "must be a JSON object such as"),
        ('{"source": "chat"', "must be a JSON object such as"),
        ('["source", "chat"]', "must be a JSON object, not list"),
        ('"chat"', "must be a JSON object, not str"),
        (
            '{"environment": "prod"}',
            "'environment' is set by obs on every event: set it with POSTHOG_ENVIRONMENT",
        ),
        ('{"$lib": "mine"}', "'$lib' is set by obs on every event"),
        ('{"": 1}', "a property name is empty"),
    ],
)
def test_bad_base_properties_are_refused(monkeypatch: pytest.MonkeyPatch, raw: str, why: str) -> None:
    monkeypatch.setenv("OBS_PROPERTIES", raw)
    with pytest.raises(obs.ConfigError) as e:
        obs.init(api_key="phc_x", sinks=["memory"])
    assert str(e.value).splitlines()[1].strip().startswith(f"OBS_PROPERTIES={raw!r}: {why}")


def test_base_properties_keyword_must_be_a_mapping_of_sendable_values() -> None:
    with pytest.raises(obs.ConfigError, match=re.escape("properties=['source']: must be a dict")):
        obs.init(api_key="phc_x", sinks=["memory"], properties=["source"])
    refused = "properties={1: 'x'}: property names must be strings, not 1"
    with pytest.raises(obs.ConfigError, match=re.escape(refused)):
        obs.init(api_key="phc_x", sinks=["memory"], properties={1: "x"})
    loop: dict[str, object] = {}
    loop["self"] = loop
    with pytest.raises(obs.ConfigError, match=r"properties=.*: cannot be sent: "):
        obs.init(api_key="phc_x", sinks=["memory"], properties={"loop": loop})


def test_base_properties_reach_every_event_kind_under_everything_else(
    monkeypatch: pytest.MonkeyPatch, server: CaptureServer
) -> None:
    import datetime as dt

    monkeypatch.setenv("OBS_RELEASE", "2026.11.3")
    base = {
        "source": "chat_copilot",
        "team": "search",
        "release": "base-release",  # obs's release wins
        "deployed": dt.datetime(2026, 1, 2, tzinfo=dt.timezone.utc),  # made JSON-safe, like any property
    }
    obs.init(api_key="phc_x", host=server.url, properties=base, flush_at=1)
    obs.capture("searched", {"team": "billing"}, distinct_id="u")  # the event's own property wins
    obs.identify("u", {"plan": "pro"})
    obs.group_identify("company", "acme", {"seats": 3})
    obs.capture_exception(ValueError("boom"), distinct_id="u")
    with (
        obs.trace("chat", distinct_id="u"),
        obs.span("retrieve"),
        obs.trace_generation("openai", "gpt-4o-mini") as gen,
    ):
        gen.set(input_tokens=3, output_tokens=1)
    obs.capture_ai("$ai_embedding", {"$ai_model": "text-embedding-3-small"}, distinct_id="u")
    assert obs.flush(10)
    events = {e["event"]: e["properties"] for e in server.events()}
    kinds = {
        "searched",
        "$identify",
        "$groupidentify",
        "$exception",
        "$ai_trace",
        "$ai_span",
        "$ai_generation",
    }
    assert kinds | {"$ai_embedding"} <= set(events)
    for name, props in events.items():
        assert props["source"] == "chat_copilot", name
        assert props["deployed"] == "2026-01-02T00:00:00+00:00", name
        assert props["release"] == "2026.11.3" and props["environment"] == "unknown", name
        assert props["team"] == ("billing" if name == "searched" else "search"), name


def test_base_properties_from_the_environment_reach_the_server(
    monkeypatch: pytest.MonkeyPatch, server: CaptureServer
) -> None:
    monkeypatch.setenv("OBS_PROPERTIES", '{"source": "chat_copilot", "release": "from-base"}')
    obs.init(api_key="phc_x", host=server.url)
    obs.capture("opened", distinct_id="u")
    assert obs.flush(10)
    (event,) = server.events()
    assert event["properties"]["source"] == "chat_copilot"
    assert event["properties"]["release"] == "from-base"  # no release configured: the base one stands
