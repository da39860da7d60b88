"""`obs schema`: the JSON Schema of every event kind, and of each one."""

from __future__ import annotations

import json

import pytest

from obs.events import json_schema
from obs.testing import KINDS
from tests.cli.conftest import run_obs


def test_all_kinds() -> None:
    proc = run_obs("schema")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == json_schema()
    assert proc.stdout.startswith("{\n  ")  # pretty: indented


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind(kind: str) -> None:
    proc = run_obs("schema", kind)
    assert proc.returncode == 0, proc.stderr
    schema = json.loads(proc.stdout)
    assert schema == json_schema()[kind]
    assert schema["type"] == "object"
    assert {"distinct_id", "timestamp", "uuid"} <= set(schema["properties"])


def test_the_kinds_are_the_kinds_tail_filters_on() -> None:
    assert sorted(json_schema()) == sorted(KINDS)


def test_an_unknown_kind_lists_the_kinds_and_exits_2() -> None:
    proc = run_obs("schema", "error")
    assert proc.returncode == 2
    assert proc.stdout == ""
    message = " ".join(proc.stderr.replace("│", " ").split())
    assert "Invalid value for 'KIND': 'error' is not an event kind; the kinds are" in message
    assert all(kind in message for kind in KINDS)
