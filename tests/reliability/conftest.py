"""Shared pieces of the fault-injection suite: subprocesses, the accounting invariant, the fault table.

Every test here reaches the capture server by name (`server.host_url`, `http://localhost:PORT`) unless it
says why not: real PostHog hosts are names, and the exit path once failed only for names.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.procs import ROOT, run_py

__all__ = ["ROOT", "assert_accounted", "outcomes", "run_py"]
_TABLE: list[tuple[str, str, str]] = []


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
