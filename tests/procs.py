"""Python code run in a fresh interpreter, for tests of exit, signals, fork and crashes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_py(
    code: str, env: dict[str, str], timeout: float = 60, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter with only ``env`` (plus PATH and the repo on PYTHONPATH)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=_env(env),
        timeout=timeout,
        cwd=cwd,
    )


def start_py(code: str, env: dict[str, str], cwd: Path | None = None) -> subprocess.Popen[str]:
    """`run_py`, started and not waited for: for a test that reads its output as it comes, or signals it."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(env),
        cwd=cwd,
    )


def _env(env: dict[str, str]) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT), **env}
