"""Shared helpers for the benchmark scripts (not a benchmark itself).

- ``REPO``: the repository root, put on ``sys.path`` so ``obs`` and ``tests`` import from the checkout.
- ``clean_env()``: drop ``POSTHOG_*`` / ``OBS_*`` settings so neither SDK is configured by the environment.
- ``ServerProcess``: ``tests/capture_server.py`` (or, with ``script=FLAGS_SERVER``, ``tests/flags_server.py``)
  in a separate process (URL on stdout; a line on stdin asks for its count so far — events accepted, or
  ``/flags`` requests; closing stdin stops it).
- ``machine()``: the Python / package versions and CPU count printed by every script.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SERVER = REPO / "tests" / "capture_server.py"
FLAGS_SERVER = REPO / "tests" / "flags_server.py"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

_ENV_PREFIXES = ("POSTHOG_", "OBS_", "LOCAL_DEV_MODE", "RELEASE_CHANNEL")

# http.server leaves Nagle's algorithm on for accepted sockets unless the handler sets
# disable_nagle_algorithm, and BaseHTTPRequestHandler writes the response headers and body in two send()
# calls: the body then waits for the client's delayed ACK, ~40 ms per request on Linux, for every SDK alike.
# tests/capture_server.py had that stall up to 6cc8fb6 (fixed in fac9dbf). The harness starts the server with
# TCP_NODELAY forced on (a no-op for a server that sets it itself); --server-as-is runs the file unchanged.
_NODELAY_BOOT = (
    "import runpy, socketserver, sys; "
    "socketserver.StreamRequestHandler.disable_nagle_algorithm = True; "
    "sys.argv = [{path!r}, *sys.argv[1:]]; "
    "runpy.run_path({path!r}, run_name='__main__')"
)


def clean_env() -> dict[str, str]:
    """Remove obs / PostHog settings from this process's environment; returns the cleaned environment."""
    for k in list(os.environ):
        if k.startswith(_ENV_PREFIXES):
            del os.environ[k]
    return dict(os.environ)


class ServerProcess:
    """A test server (``tests/capture_server.py`` unless ``script`` names another that prints its URL and
    stops when stdin closes) in its own process, so it never competes with the SDK for the GIL."""

    def __init__(self, *, as_is: bool = False, script: Path = SERVER, args: Sequence[str] = ()) -> None:
        if as_is:
            cmd = [sys.executable, str(script), *args]
        else:
            cmd = [sys.executable, "-c", _NODELAY_BOOT.format(path=str(script)), *args]
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=str(REPO), env=clean_env()
        )
        assert self._proc.stdout is not None
        self.url = self._proc.stdout.readline().strip()
        if not self.url.startswith("http://"):
            self.close()
            raise RuntimeError(f"{script.name} did not start (printed {self.url!r})")

    def count(self) -> int:
        """Events the server has accepted (answered 2xx) so far."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write("?\n")
        self._proc.stdin.flush()
        return int(self._proc.stdout.readline())

    def settled_count(self, expected: int, timeout: float = 5.0) -> int:
        """The count once it reaches ``expected`` or stops moving.

        The server counts a request after writing its response, so right after the SDK returns from shutdown
        the last batch may not be counted yet; this wait is not part of any timing.
        """
        deadline = time.monotonic() + timeout
        last, still_since = -1, time.monotonic()
        while True:
            n = self.count()
            if n >= expected:
                return n
            now = time.monotonic()
            if n != last:
                last, still_since = n, now
            elif now - still_since > 0.5 or now > deadline:
                return n
            time.sleep(0.02)

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine() -> str:
    """One line: CPU count, Python version and the versions of the packages being compared."""
    pkgs = ", ".join(
        f"{name} {_version(name)}" for name in ("obs", "posthog", "httpx", "anyio", "pydantic", "requests")
    )
    return (
        f"{os.cpu_count()} CPU(s), {platform.platform(terse=True)}, "
        f"Python {platform.python_version()} ({sys.executable}); {pkgs}"
    )


def median(xs: list[float]) -> float:
    return statistics.median(xs)


WARM_UP = 2  # events an SDK sends before a CPU-per-event clock starts


def warm_up(
    send_one: Callable[[], object], flush: Callable[[], object], idle: Callable[[float], object]
) -> None:
    """Steady state before timing: two events, each flushed, a second apart. obs sends the first without its
    worker (as a short process does), starts the worker OBS_FLUSH_INTERVAL (0.5 s) after init and sends the
    second through it and httpx; other SDKs start exporters and threads lazily too. ``idle`` waits (an
    asyncio peer keeps its loop running meanwhile)."""
    for _ in range(WARM_UP):
        send_one()
        flush()
        idle(1.0)
