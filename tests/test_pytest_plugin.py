"""obs's pytest plugin as its users get it: loaded by entry point, cheap to load, its fixtures and failure
output in a project of its own, and in a fresh virtualenv that only installed obs (a wheel of this tree)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.procs import ROOT, run_py

# A user's test module: flags set per test, events asserted, sync and async (anyio comes with obs).
USER_TESTS = """
import pytest

import obs


def checkout(user_id):
    with obs.context(distinct_id=user_id):
        total = 36 if obs.get_feature_flag("pricing") == "test" else 40
        obs.capture("checkout_completed", {"total": total, "items": 2})
        return total


def test_flags_and_events(obs_events, obs_flags):
    obs_flags.set("pricing", "test", payload={"discount": 0.1})
    assert checkout("u1") == 36
    obs_events.assert_captured("checkout_completed", "u1", total=36)
    obs_events.assert_captured("$feature_flag_called", "u1", properties={"$feature_flag_response": "test"})
    print("obs imported from", obs.__file__)


@pytest.mark.anyio
async def test_async(obs_events, obs_flags):
    obs_flags.set("beta", True, distinct_id="u2")
    assert await obs.afeature_enabled("beta", "u2")
    assert not await obs.afeature_enabled("beta", "u3")
    obs_events.one("$feature_flag_called", "u2")


@pytest.mark.obs(identify_pii="full")
def test_marker(obs_events):
    obs.identify("u1", {"name": "Ada"})
    obs_events.one("$identify", properties={"$set": {"name": "Ada"}})
"""


def test_loading_the_plugin_imports_nothing_heavy_and_starts_nothing() -> None:
    out = run_py(
        """
        import sys, threading
        import obs.pytest_plugin, obs._api
        heavy = [m for m in ('httpx', 'anyio', 'pydantic', 'posthog', 'obs.testing') if m in sys.modules]
        assert not heavy, heavy
        assert threading.active_count() == 1, threading.enumerate()
        assert obs._current.client is None
        print('ok')
        """,
        env={},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_fixtures_and_failures_in_a_users_project(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_user=USER_TESTS
        + """

def test_a_failure_says_what_was_captured(obs_events):
    checkout("u1")
    obs_events.assert_captured("checkout_completed", "u1", total=36)


def test_the_client_before_the_test_is_back():
    assert obs._current.client is None
"""
    )
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=5, failed=1)
    result.stdout.fnmatch_lines(
        [
            '*obs_events.assert_captured("checkout_completed", "u1", total=36)',
            "E  *AssertionError: no 'checkout_completed' event with distinct_id='u1', total=36 was captured.",
            "E  * The closest, #1 'checkout_completed', differs in:",
            "E  *     total: expected 36, got 40",
            "E  * Captured 1 event(s):",
            "E  *   #1 'checkout_completed' distinct_id='u1'  total=40 items=2",
        ]
    )
    assert "obs/testing.py:" not in result.stdout.str()  # the helper's own frames are hidden


def _run(
    cmd: list[str], what: str, timeout: float = 120, **kwargs: object
) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)  # type: ignore[call-overload]
    if out.returncode != 0:
        pytest.fail(
            f"could not {what} (exit {out.returncode}): {' '.join(cmd)}\n"
            f"--- stdout\n{out.stdout[-3000:]}\n--- stderr\n{out.stderr[-3000:]}",
            pytrace=False,
        )
    return out  # type: ignore[no-any-return]


def test_a_fresh_project_that_only_installs_obs_gets_the_plugin(tmp_path: Path) -> None:
    started = time.monotonic()
    # A wheel of this tree, built from a copy (a build in the tree would leave build/ behind).
    src = tmp_path / "src"
    shutil.copytree(ROOT / "obs", src / "obs", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    dist = tmp_path / "dist"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    _run([*pip, "wheel", "--quiet", "--no-deps", "-w", str(dist), str(src)], "build a wheel of obs")
    (wheel,) = dist.glob("obs-*.whl")

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], "create a virtualenv")
    python = venv / "bin" / "python"
    _run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheel), "pytest"],
        "install obs and pytest into the fresh virtualenv",
    )

    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text('[tool.pytest.ini_options]\naddopts = "--strict-markers"\n')
    (project / "test_app.py").write_text(USER_TESTS)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
    }  # no PYTHONPATH, no obs config
    out = subprocess.run(
        [str(python), "-m", "pytest", "-v", "-s", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=project,
        env=env,
    )
    assert out.returncode == 0, f"pytest failed in the fresh project:\n{out.stdout}\n{out.stderr}"
    lines = out.stdout.splitlines()
    plugins = next((line for line in lines if line.startswith("plugins:")), "")
    assert "obs-0.1.0" in plugins, out.stdout  # loaded through the pytest11 entry point, nothing else
    assert "3 passed" in lines[-1], out.stdout
    assert f"obs imported from {venv}/lib/" in out.stdout  # the installed wheel, not this tree
    assert time.monotonic() - started < 90


def _examples(text: str) -> list[tuple[str, str | None]]:
    """Each ```python block of a page, with the ```text block right after it (its expected output)."""
    found = re.finditer(r"```python\n(.*?)```\n(?:\s*```text\n(.*?)```)?", text, re.S)
    return [(m.group(1), m.group(2)) for m in found]


def test_the_examples_in_docs_testing_md_run(pytester: pytest.Pytester) -> None:
    examples = _examples((ROOT / "docs" / "testing.md").read_text())
    assert len(examples) >= 6
    tests, failing, shown = 0, 0, []
    for i, (code, output) in enumerate(examples):
        if "def test_" not in code:  # a script: it runs and asserts on its own
            result = pytester.runpython(pytester.makepyfile(**{f"example_{i}": code}))
            assert result.ret == 0, f"example {i} failed:\n{code}\n{result.stdout.str()}{result.stderr.str()}"
            continue
        pytester.makepyfile(**{f"test_example_{i}": code})
        if output is None:
            tests += code.count("\ndef test_") + code.count("\nasync def test_")
        else:  # a failure shown in the docs: that test fails, with exactly that message
            failing += 1
            shown += [line.replace("E       ", "E  *", 1) for line in output.splitlines()]
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()  # anyio runs the async example on each backend installed
    assert outcomes.get("failed", 0) == failing and outcomes.get("passed", 0) >= tests, outcomes
    assert set(outcomes) <= {"passed", "failed", "warnings"}, outcomes  # nothing skipped, no errors
    result.stdout.fnmatch_lines(shown)
