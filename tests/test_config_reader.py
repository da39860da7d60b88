"""The pydantic-free reader on the enable path agrees with the Settings model, field by field.

`read_config` may answer only what `Settings` would answer for the same environment and keywords; for
everything else it must defer (None), so that the model accepts the value or raises the one ConfigError.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import pytest

import obs
from obs._config import Settings, load_settings
from obs._config_reader import FIELDS, Secret, read_config
from tests.test_config import CASES

# Raw values tried for every setting: from the environment (strings) and as keywords (anything).
ENV_VALUES = [
    "",
    " ",
    "0",
    "1",
    "-1",
    "7",
    "100",
    "1023",
    "1024",
    "65536",
    " 5 ",
    "1.5",
    "0.0",
    "-0.5",
    "1e3",
    "1_000",
    "inf",
    "nan",
    "true",
    "False",
    "YES",
    "off",
    "maybe",
    "abc",
    " x ",
    "phc_k",
    " phc_k ",
    "phx_k",
    "phs_k",
    "http://localhost:8000",
    "https://us.i.posthog.com/",
    "https://eu.i.posthog.com",
    "http://127.0.0.1:9/",
    "https://proxy.example.com/ph",
    "https://x.com/batch/",
    "https://x.com/i/v0/e",
    "ftp://x",
    "localhost:8000",
    "us.i.posthog.com",
    "https://[::1]:8000",
    "https://a.com:99999",
    "https://a.com?x=1",
    "https://a b.com",
    "https://user@a.com",
    "/static/a.js",
    "v0",
    "V1",
    "legacy",
    "analytics_v1",
    "posthog",
    "posthog, console",
    "memory,",
    "kafka",
    "myapp,billing",
    "my-app",
    "src/myapp",
    '["a+", "b"]',
    "[0-9]{16}",
    "(unclosed",
    '{"a": 1}',
    '{"environment": 1}',
    '{"": 1}',
    '{"a": NaN}',
    "[1]",
    "{",
    "none",
    "ID",
    "Full",
]
KEYWORD_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    5,
    2048,
    5.0,
    -1,
    1.5,
    math.nan,
    math.inf,
    "",
    "x",
    "  y  ",
    "phc_k",
    "phx_k",
    "http://localhost:8000/",
    "https://x.com/batch",
    ["a"],
    ("a",),
    ["posthog"],
    [],
    ["x", 1],
    {"a": 1},
    {1: 2},
    {"": 1},
    {"$lib": "x"},
    {},
    b"x",
    Secret("phs_k"),
    ["my.app"],
    ["(x"],
]


def _value(v: Any) -> Any:
    get = getattr(v, "get_secret_value", None)
    return ("secret", get()) if callable(get) else v


def _agrees(overrides: dict[str, Any]) -> bool:
    """Whether the reader answered (True) or deferred (False); when it answers, the model agrees."""
    config = read_config(overrides)
    if config is None:
        return False
    model = load_settings(**overrides)  # the reader accepted it: the model must too, and identically
    for name in Settings.model_fields:
        mine, theirs = _value(getattr(config, name)), _value(getattr(model, name))
        assert (mine, type(mine)) == (theirs, type(theirs)), (name, overrides, mine, theirs)
    assert config.enabled == model.enabled
    assert config.super_properties() == model.super_properties()
    return True


def test_the_table_is_the_model() -> None:
    assert list(FIELDS) == list(Settings.model_fields)
    for name, field in Settings.model_fields.items():
        variable, _parse, default, bound = FIELDS[name]
        assert variable == field.validation_alias, name
        assert default == field.get_default(call_default_factory=True), name
        ge = next((m.ge for m in field.metadata if getattr(m, "ge", None) is not None), None)
        gt = next((m.gt for m in field.metadata if getattr(m, "gt", None) is not None), None)
        assert bound == ((ge, gt) if (ge, gt) != (None, None) else None), name


def test_defaults_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in FIELDS:
        monkeypatch.delenv(FIELDS[name][0], raising=False)
    assert _agrees({})
    assert _agrees({"api_key": "phc_x"})


@pytest.mark.parametrize("name", list(FIELDS))
def test_every_value_the_reader_takes_the_model_takes_alike(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    variable = FIELDS[name][0]
    answered = 0
    for raw in ENV_VALUES:
        monkeypatch.setenv(variable, raw)
        try:
            answered += _agrees({})
        except obs.ConfigError as e:  # the model refuses what the reader took
            raise AssertionError(f"{variable}={raw!r}: the reader took it, the model said {e}") from None
    monkeypatch.delenv(variable)
    for value in KEYWORD_VALUES:
        try:
            answered += _agrees({name: value})
        except obs.ConfigError as e:
            raise AssertionError(f"{name}={value!r}: the reader took it, the model said {e}") from None
    assert answered, f"the reader deferred every value of {name}: the table does not read it"
    # Warnings (an unknown identify mode) come from the model only: the reader never answers those.
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "reader" in r.getMessage()]


@pytest.mark.parametrize(("name", "source", "value"), CASES, ids=[f"{n}-{s}" for n, s, _ in CASES])
def test_every_invalid_value_is_left_to_the_model(
    monkeypatch: pytest.MonkeyPatch, name: str, source: str, value: object
) -> None:
    overrides: dict[str, object] = {"api_key": "phc_x", "sinks": ["memory"]}
    overrides.pop(name, None)
    if source == "keyword":
        overrides[name] = value
    else:
        monkeypatch.setenv(FIELDS[name][0], str(value))
    if name == "sinks":  # a well-formed list naming an unknown sink: refused when the sinks are built
        assert read_config(overrides) is not None
        return
    assert read_config(overrides) is None
    with pytest.raises(obs.ConfigError) as by_model:
        load_settings(**overrides)
    with pytest.raises(obs.ConfigError) as by_init:
        obs.init(**overrides)
    assert str(by_init.value) == str(by_model.value)


def test_an_unknown_keyword_is_left_to_the_model() -> None:
    assert read_config({"api_key": "phc_x", "flush_every": 3}) is None
    with pytest.raises(obs.ConfigError, match="unknown setting"):
        obs.init(api_key="phc_x", flush_every=3)


def test_an_unknown_identify_mode_still_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    assert read_config({"api_key": "phc_x", "identify_pii": "everything"}) is None
    with caplog.at_level(logging.WARNING, logger="obs"):
        client = obs.init(api_key="phc_x", identify_pii="everything", sinks=["memory"])
    assert client.settings is not None and client.settings.identify_pii == "email"
    assert [r.getMessage() for r in caplog.records if "POSTHOG_IDENTIFY_PII" in r.getMessage()]


def test_a_secret_stays_out_of_reprs() -> None:
    config = read_config({"api_key": "phc_x", "personal_api_key": "phs_secret"})
    assert config is not None and config.personal_api_key is not None
    assert config.personal_api_key.get_secret_value() == "phs_secret"
    assert "phs_secret" not in repr(config) and "phs_secret" not in str(config.model_dump())
