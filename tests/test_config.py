"""Every setting, its environment variable, default and validation rule."""

from __future__ import annotations

import logging
import subprocess
import sys

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


@pytest.mark.parametrize("host", ["ftp://example.com", "not a url", "http://", "example.com"])
def test_bad_host_is_refused(host: str) -> None:
    with pytest.raises(obs.ConfigError, match="POSTHOG_HOST"):
        obs.init(api_key="phc_x", host=host)


def test_several_problems_reported_together() -> None:
    with pytest.raises(obs.ConfigError) as e:
        load_settings(api_key="phx_1", host="ftp://x", flush_at=0)
    text = str(e.value)
    assert "api_key" in text.lower() or "POSTHOG_API_KEY" in text
    assert "POSTHOG_HOST" in text and "OBS_FLUSH_AT" in text


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
