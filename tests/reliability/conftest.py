"""Shared pieces of the fault-injection suite: subprocesses, the accounting invariant, the fault table.

Every test here reaches the capture server by name (`server.host_url`, `http://localhost:PORT`) unless it
says why not: real PostHog hosts are names, and the exit path once failed only for names.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
_TABLE: list[tuple[str, str, str]] = []


def run_py(
    code: str, env: dict[str, str], timeout: float = 60, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter with only ``env`` (plus PATH and the repo on PYTHONPATH)."""
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT), **env}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=cwd,
    )


def outcomes(stats: dict[str, Any]) -> int:
    """Events that reached an end: sent, spooled or dropped for any reason."""
    return stats["sent"] + stats["spooled"] + sum(v for k, v in stats.items() if k.startswith("dropped_"))


def assert_accounted(stats: dict[str, Any]) -> None:
    """The invariant of docs/reliability.md: captured = sent + spooled + dropped (by reason) + in flight."""
    assert stats["captured"] == outcomes(stats) + stats["in_flight"], {
        k: v for k, v in stats.items() if v and not k.startswith("flag")
    }


@pytest.fixture
def fault_table() -> Iterator[list[tuple[str, str, str]]]:
    """Rows (fault, what the client did, outcome), printed after the run; docs/reliability.md quotes them."""
    yield _TABLE


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _TABLE:
        terminalreporter.section("fault table (docs/reliability.md)")
        for row in _TABLE:
            terminalreporter.write_line(" | ".join(row))
