"""The `obs` command itself: the installed script, `python -m obs`, help with examples, usage errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.conftest import base_env, run_obs


def test_the_installed_script_and_python_m_obs_are_the_same_command() -> None:
    script = Path(sys.executable).with_name("obs")
    assert script.is_file(), f"no {script}: install obs into this environment (pip install -e '.[dev]')"
    by_script = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, env=base_env(), timeout=60
    )
    by_module = run_obs("--help")
    assert by_script.returncode == by_module.returncode == 0
    assert by_script.stdout == by_module.stdout
    assert "Usage: obs [OPTIONS] COMMAND [ARGS]..." in by_module.stdout


@pytest.mark.parametrize(
    ("command", "examples"),
    [
        ("status", ["obs status --offline", "obs status --json"]),
        ("tail", ["obs tail -f", "obs tail -k exception -s 1h", "--json | jq"]),
        ("schema", ["obs schema exception"]),
    ],
)
def test_help_with_examples(command: str, examples: list[str]) -> None:
    for flag in ("--help", "-h"):
        proc = run_obs(command, flag)
        assert proc.returncode == 0, proc.stderr
        assert f"Usage: obs {command} [OPTIONS]" in proc.stdout
        assert "Examples" in proc.stdout
        for example in examples:
            assert example in proc.stdout


def test_help_lists_the_commands() -> None:
    proc = run_obs("--help")
    for command in ("status", "tail", "schema", "ui", "demo"):
        assert f"│ {command} " in proc.stdout


def test_an_unknown_command_exits_2() -> None:
    proc = run_obs("stats")
    assert proc.returncode == 2
    assert "No such command 'stats'" in proc.stderr


def test_without_the_cli_extra_one_line_says_what_to_install() -> None:
    code = "import sys; sys.modules['rich'] = None; from obs.cli import main; main()"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=base_env(), timeout=60
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "obs: the command needs the cli extra (rich is missing): pip install 'obs[cli]'"
    ]
