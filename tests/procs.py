"""Python code run in a fresh interpreter, for tests of exit, signals, fork and crashes."""

from __future__ import annotations

import os
import re
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


# Code to put in front of a script: its first write to stderr is preceded by a line saying how many events
# obs had delivered at that moment ("sent before the first output: N"). For a script whose client sends
# only when flushed, N tells whether a hook flushed before printing the traceback.
STDERR_PROBE = """
import sys
import obs

class _FirstWrite:
    def __init__(self, real):
        self.real, self.seen = real, False

    def write(self, text):
        if not self.seen:
            self.seen = True
            self.real.write(f"sent before the first output: {obs.get_client().stats()['sent']}\\n")
        return self.real.write(text)

    def __getattr__(self, name):
        return getattr(self.real, name)

sys.stderr = _FirstWrite(sys.stderr)
"""


def sent_before_output(stderr: str) -> tuple[int, str]:
    """From the stderr of a script run after `STDERR_PROBE`: the count it wrote, and the rest of stderr."""
    first, _, rest = stderr.partition("\n")
    m = re.fullmatch(r"sent before the first output: (\d+)", first)
    assert m, stderr
    return int(m[1]), rest


def shown(stderr: str) -> str:
    """stderr as a user reads it, less obs's own log lines and memory addresses: to compare a run with obs
    and one without."""
    lines = [line for line in stderr.splitlines() if not line.startswith("obs:")]
    return re.sub(r"0x[0-9a-fA-F]+", "0x…", "\n".join(lines))
