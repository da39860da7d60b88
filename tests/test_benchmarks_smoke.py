"""benchmarks/peers.py still runs: a `--quick` run of obs and posthog-python (both in the dev extra; the other
peers come from the bench extra and are left to `make bench`). It asserts that the run completes, every event
reached the local collector and the table has a figure in every column, never how fast anything was."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT / "benchmarks" / "peers.py"
COLUMNS = 6  # producer, CPU per delivered event, cold start, decorator success / exception, memory


def _row(out: str, label: str) -> list[str]:
    rows = [line for line in out.splitlines() if line.startswith(f"| {label} |")]
    assert len(rows) == 1, f"no single table row for {label!r} in:\n{out}"
    return [cell.strip() for cell in rows[0].strip("|").split("|")[1:]]


def test_peers_quick_obs_and_posthog() -> None:
    proc = subprocess.run(
        [sys.executable, str(PEERS), "--quick", "--peers", "obs,posthog"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, f"peers.py --quick failed:\n{proc.stdout}\n{proc.stderr}"
    out = proc.stdout
    for label in ("obs", "posthog-python"):
        cells = _row(out, label)
        assert len(cells) == COLUMNS, cells
        # Every measurement produced a number (n/a would mean a peer could not be measured).
        assert all(re.match(r"^-?[\d,]+(\.\d+)?( \([\d.]+×\))?$", c) for c in cells), cells
    # posthog-python's figures carry their ratio to obs; obs's own row does not.
    assert all("×)" in c for c in _row(out, "posthog-python"))
    assert not any("×" in c for c in _row(out, "obs"))
    assert "delivered in the CPU runs: obs 1,000/1,000, posthog-python 1,000/1,000" in out
    assert "LOSS" not in out and "refused" not in out


def test_a_missing_peer_stops_the_run_with_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(PEERS.parent))
    import peers

    monkeypatch.setitem(peers.MODULE, "sentry", "no_such_module_for_peers_py")
    with pytest.raises(SystemExit) as exc:
        peers.check_installed(["obs", "sentry"])
    assert "not installed: sentry-sdk" in str(exc.value)
    assert "pip install -e '.[bench]'" in str(exc.value)
