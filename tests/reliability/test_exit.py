"""The exit flush: short programs against a host reached by name, uncaught exceptions, shutdown timeouts."""

from __future__ import annotations

import time

import pytest

from tests.capture_server import CaptureServer, Reply
from tests.reliability.conftest import run_py

KEY = {"POSTHOG_API_KEY": "phc_exit"}


@pytest.mark.parametrize("gzip", ["0", "1"])
def test_capture_then_exit_delivers_through_a_hostname(server: CaptureServer, gzip: str) -> None:
    # The default host is a name; at interpreter exit the lookup used to need a thread Python refused.
    out = run_py(
        """
        import obs
        obs.capture("e", {"n": 1}, distinct_id="u")
        """,
        {**KEY, "POSTHOG_HOST": server.host_url, "OBS_GZIP": gzip},
    )
    assert out.returncode == 0, out.stderr
    assert server.wait_for_events(1, timeout=5), out.stderr
    (req,) = server.accepted
    assert req.headers.get("content-encoding") == ("gzip" if gzip == "1" else None)
    assert [e["event"] for e in req.events] == ["e"]
    assert "obs:" not in out.stderr  # nothing to report


def test_a_typer_command_that_exits_at_once_delivers_its_events(server: CaptureServer) -> None:
    out = run_py(
        """
        import typer
        import obs

        app = typer.Typer()

        @app.command()
        def hello(name: str) -> None:
            obs.capture("cli_hello", {"name": name}, distinct_id="cli-user")
            print(f"hello {name}")
            raise typer.Exit(3)

        app()
        """.replace("app()", "app(['world'])"),
        {**KEY, "POSTHOG_HOST": server.host_url},
    )
    assert out.returncode == 3, out.stderr
    assert out.stdout == "hello world\n"
    assert server.wait_for_events(1, timeout=5), out.stderr
    assert [(e["event"], e["properties"]["name"]) for e in server.events()] == [("cli_hello", "world")]


def test_many_events_and_a_threaded_producer_before_exit(server: CaptureServer) -> None:
    out = run_py(
        """
        import threading
        import obs
        t = threading.Thread(target=lambda: [obs.capture("t", {"i": i}, distinct_id="u") for i in range(500)])
        t.start(); t.join()
        for i in range(2_000):
            obs.capture("m", {"i": i}, distinct_id="u")
        """,
        {**KEY, "POSTHOG_HOST": server.host_url, "OBS_GZIP": "1"},
    )
    assert out.returncode == 0, out.stderr
    assert server.wait_for_events(2_500, timeout=10)
    assert len({e["uuid"] for e in server.events()}) == 2_500


def test_uncaught_exception_against_a_hanging_endpoint_waits_one_timeout_traceback_first(
    server: CaptureServer,
) -> None:
    server.default = Reply(hang=True, delay=20)
    started = time.monotonic()
    out = run_py(
        """
        import sys, time
        import obs
        obs.init(capture_uncaught=True)
        obs.capture("before", distinct_id="u")
        sys.stderr.write(f"raised-at {time.monotonic()}\\n"); sys.stderr.flush()
        raise RuntimeError("boom")
        """,
        {**KEY, "POSTHOG_HOST": server.host_url, "OBS_SHUTDOWN_TIMEOUT": "2", "OBS_TIMEOUT": "30"},
        timeout=30,
    )
    elapsed = time.monotonic() - started
    assert out.returncode == 1
    assert elapsed < 2 + 2.5, f"waited {elapsed:.1f}s: more than one OBS_SHUTDOWN_TIMEOUT (2s)"
    err = out.stderr
    # The traceback is printed before obs waits for the endpoint, and the loss is said in one line.
    assert err.index("RuntimeError: boom") < err.index("obs: shutdown timed out")
    lines = [ln for ln in err.splitlines() if ln.startswith("obs: shutdown timed out")]
    assert len(lines) == 1
    assert "2 event(s) not delivered" in lines[0]  # the event and the $exception
    assert "OBS_SPOOL_DIR" in lines[0] and "OBS_SHUTDOWN_TIMEOUT" in lines[0]


def test_exit_timeout_reports_what_was_not_delivered_and_stays_bounded(server: CaptureServer) -> None:
    server.default = Reply(hang=True, delay=30)
    started = time.monotonic()
    out = run_py(
        """
        import obs
        for i in range(5_000):
            obs.capture("x", {"i": i}, distinct_id="u")
        """,
        {**KEY, "POSTHOG_HOST": server.host_url, "OBS_SHUTDOWN_TIMEOUT": "1", "OBS_TIMEOUT": "10"},
    )
    assert out.returncode == 0, out.stderr
    assert time.monotonic() - started < 8
    (line,) = [ln for ln in out.stderr.splitlines() if "shutdown timed out" in ln]
    assert "5000 event(s) not delivered" in line, line
    assert "Raise OBS_SHUTDOWN_TIMEOUT, or set OBS_SPOOL_DIR" in line
