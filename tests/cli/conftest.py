"""The `obs` command run as users run it: a subprocess, against files a real obs process wrote."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.procs import ROOT

# An app instrumented with obs: one event of most kinds, with an exception raised in a function of its own
# (so its top in-app frame and source line are known) and a trace holding a span and a generation.
APP = """\
import datetime as dt
import os

import obs


def checkout(cart):
    raise ValueError(f"empty cart {cart}")


obs.init()
old = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=2)
obs.capture("old_event", {"n": 1}, distinct_id="user-3", timestamp=old)
obs.capture("signed_up", {"plan": "pro"}, distinct_id="user-1")
obs.capture("page_viewed", {"path": "/\\x1b[31mred"}, distinct_id="user-2")
obs.identify("user-1", {"email": "ada@example.com"})
try:
    checkout("c-1")
except ValueError:
    obs.capture_exception(distinct_id="user-1")
with obs.trace("answer", distinct_id="user-1"):
    with obs.span("retrieve"):
        pass
    with obs.trace_generation("openai", "gpt-4o-mini") as gen:
        gen.set(input_tokens=12, output_tokens=30)
assert obs.flush(10)
"""
APP_EVENTS = [
    "old_event",
    "signed_up",
    "page_viewed",
    "$identify",
    "$exception",
    "$ai_span",
    "$ai_generation",
    "$ai_trace",
]
RAISE_LINE = APP.splitlines().index('    raise ValueError(f"empty cart {cart}")') + 1


def base_env(**env: str) -> dict[str, str]:
    """A clean environment: no obs variable of the developer's, UTC, and a wide terminal for rich."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),
        "COLUMNS": "200",
        "TZ": "UTC",
        **env,
    }


def obs_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "obs", *args]


def run_obs(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        obs_cmd(*args), capture_output=True, text=True, env=base_env(**(env or {})), cwd=cwd, timeout=timeout
    )


def run_app(directory: Path, sinks: str, code: str = APP) -> None:
    """Run ``code`` as a real obs app in ``directory`` with ``OBS_SINKS=sinks``."""
    script = directory / "app.py"
    script.write_text(code)
    proc = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env=base_env(POSTHOG_API_KEY="phc_test", OBS_SINKS=sinks),
        cwd=directory,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory where the app wrote `.obs/events.db` (the default store) and `events.jsonl`."""
    directory = tmp_path_factory.mktemp("app")
    run_app(directory, "sqlite,jsonl:events.jsonl")
    return directory


class Lines:
    """A running `obs` process whose stdout is read line by line as it comes, for --follow."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self.proc = subprocess.Popen(
            obs_cmd(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=base_env(**(env or {})),
            cwd=cwd,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))

    def take(self, n: int, timeout: float = 20) -> list[str]:
        """The next ``n`` lines; fails saying what came if they do not come in time."""
        got: list[str] = []
        deadline = time.monotonic() + timeout
        while len(got) < n:
            try:
                got.append(self._lines.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                err = self.proc.stderr.read() if self.proc.poll() is not None and self.proc.stderr else ""
                raise AssertionError(f"expected {n} lines, got {len(got)}: {got}; stderr: {err}") from None
        return got

    def pending(self, wait: float = 0.5) -> list[str]:
        """Lines that arrive within ``wait`` seconds (none is expected: checks nothing extra came)."""
        time.sleep(wait)
        out = []
        while not self._lines.empty():
            out.append(self._lines.get_nowait())
        return out

    def stop(self) -> tuple[int, str]:
        """SIGINT, as Ctrl-C sends; (exit status, stderr)."""
        if self.proc.poll() is None:
            self.proc.send_signal(2)
        try:
            self.proc.wait(timeout=20)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        self._reader.join(5)
        assert self.proc.stderr is not None
        return self.proc.returncode, self.proc.stderr.read()


@pytest.fixture
def running() -> Iterator[list[Lines]]:
    """Processes started by a test; each one still running at the end is stopped."""
    started: list[Lines] = []
    yield started
    for p in started:
        if p.proc.poll() is None:
            p.stop()
