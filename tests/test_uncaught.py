"""`obs.init(capture_uncaught=True)`: real processes that die of an uncaught exception, a thread that dies,
and an asyncio task whose exception nobody retrieved."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from typing import Any

import pytest

import obs
from obs import _uncaught
from tests.capture_server import CaptureServer
from tests.procs import STDERR_PROBE, run_py, sent_before_output, shown

PRELUDE = """
import os, sys, threading, asyncio
import obs
# Nothing but an explicit flush delivers: a batch never fills and the interval is long.
obs.init(api_key="phc_uncaught", host={url!r}, capture_uncaught=True, flush_at=1000, flush_interval=60)
"""


def _run(server: CaptureServer, body: str) -> subprocess.CompletedProcess[str]:
    code = PRELUDE.format(url=server.url) + textwrap.dedent(body)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=_repo()
    )


def _repo() -> str:
    import pathlib

    return str(pathlib.Path(__file__).resolve().parent.parent)


def _exceptions(server: CaptureServer) -> list[dict[str, Any]]:
    return [e for e in server.events() if e["event"] == "$exception"]


def test_sys_excepthook_captures_flushes_and_chains(server: CaptureServer) -> None:
    # The previous hook ends the process with os._exit: no atexit, so only the hook's own flush delivers.
    proc = _run(
        server,
        """
        def previous(t, v, tb):
            print("previous hook saw", t.__name__, flush=True)
            os._exit(3)
        # installed before obs's: obs.init ran first here, so re-install obs's hook over it
        from obs import _uncaught
        _uncaught.uninstall(); sys.excepthook = previous; _uncaught.install()
        def main():
            raise ValueError("fatal at top level")
        main()
        """,
    )
    assert proc.returncode == 3, proc.stderr
    assert "previous hook saw ValueError" in proc.stdout
    (event,) = _exceptions(server)
    props = event["properties"]
    assert props["$exception_level"] == "fatal"
    assert props["$exception_source"] == "python.sys_excepthook"
    entry = props["$exception_list"][0]
    assert entry["type"] == "ValueError" and entry["value"] == "fatal at top level"
    assert entry["mechanism"]["handled"] is False
    assert entry["mechanism"]["type"] == "onuncaughtexception"
    assert entry["stacktrace"]["frames"][-1]["function"] == "main"


def test_default_hook_still_prints_the_traceback(server: CaptureServer) -> None:
    proc = _run(server, "raise KeyError('printed')")
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "KeyError: 'printed'" in proc.stderr
    assert [e["properties"]["$exception_list"][0]["type"] for e in _exceptions(server)] == ["KeyError"]


def test_keyboard_interrupt_is_not_captured(server: CaptureServer) -> None:
    proc = _run(server, "raise KeyboardInterrupt")
    assert proc.returncode != 0
    assert _exceptions(server) == []


def test_thread_excepthook_captures_and_chains(server: CaptureServer) -> None:
    proc = _run(
        server,
        """
        seen = []
        from obs import _uncaught
        _uncaught.uninstall()
        threading.excepthook = lambda args: seen.append(args.exc_type.__name__)
        _uncaught.install()
        def work():
            raise RuntimeError("thread died")
        t = threading.Thread(target=work, name="worker-7")
        t.start(); t.join()
        print("chained:", seen, flush=True)
        os._exit(0)  # no atexit: the thread hook's flush must have delivered
        """,
    )
    assert proc.returncode == 0, proc.stderr
    assert "chained: ['RuntimeError']" in proc.stdout
    (event,) = _exceptions(server)
    props = event["properties"]
    assert props["$exception_source"] == "python.threading_excepthook"
    assert props["thread_name"] == "worker-7"
    assert props["$exception_list"][0]["value"] == "thread died"


def test_asyncio_unretrieved_task_exception(server: CaptureServer) -> None:
    proc = _run(
        server,
        """
        import gc
        async def failing():
            raise LookupError("nobody awaited me")
        async def main():
            task = asyncio.get_running_loop().create_task(failing())
            await asyncio.sleep(0.01)
            del task
            gc.collect()
        asyncio.run(main())
        """,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Task exception was never retrieved" in proc.stderr  # the default handler still ran
    (event,) = _exceptions(server)
    props = event["properties"]
    assert props["$exception_source"] == "python.asyncio"
    assert props["asyncio_message"] == "Task exception was never retrieved"
    assert props["$exception_list"][0]["type"] == "LookupError"


def test_hooks_only_when_asked_and_removed_on_shutdown() -> None:
    original = (sys.excepthook, threading.excepthook)
    obs.init(api_key="phc_h", sinks=["memory"])
    assert (sys.excepthook, threading.excepthook) == original and not _uncaught.installed()
    obs.init(api_key="phc_h", sinks=["memory"], capture_uncaught=True)
    assert sys.excepthook is _uncaught._sys_hook
    assert threading.excepthook is _uncaught._threading_hook
    obs.shutdown()
    assert (sys.excepthook, threading.excepthook) == original and not _uncaught.installed()


def test_a_hook_installed_after_ours_is_left_alone() -> None:
    obs.init(api_key="phc_h", sinks=["memory"], capture_uncaught=True)

    def theirs(*args: Any) -> None:
        pass

    sys.excepthook = theirs
    try:
        obs.shutdown()
        assert sys.excepthook is theirs
    finally:
        sys.excepthook = sys.__excepthook__


def test_disabled_sdk_installs_nothing() -> None:
    original = sys.excepthook
    obs.init(capture_uncaught=True)  # no API key: off
    assert sys.excepthook is original and not _uncaught.installed()


def test_a_running_loops_own_handler_is_chained_and_restored() -> None:
    import asyncio

    from obs.sinks import MemorySink

    sink = MemorySink()
    seen: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()

        def theirs(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            seen.append(context["message"])

        loop.set_exception_handler(theirs)
        obs.init(api_key="phc_h", sinks=[sink], capture_uncaught=True)
        loop.call_exception_handler({"message": "callback failed", "exception": OSError("disk")})
        assert await obs.aflush(5)
        await obs.ashutdown(5)
        assert loop.get_exception_handler() is theirs

    asyncio.run(main())
    assert seen == ["callback failed"]
    (event,) = [e for e in sink.events if e["event"] == "$exception"]
    assert event["properties"]["asyncio_message"] == "callback failed"
    assert event["properties"]["$exception_list"][0]["type"] == "OSError"


# ---------------------------------------------------------------- Typer and click apps

# A Typer app that is not instrumented: only capture_uncaught sees its errors. ORDER says where obs.init runs:
# before `import typer`, after the app is made, or inside the app's callback, once Typer installed its hook.
TYPER_APP = """
import os
import obs
ORDER = os.environ.get("ORDER", "")

def setup():
    if os.environ.get("WITH_OBS") == "1":
        obs.init(host=os.environ["CAPTURE_HOST"], capture_uncaught=True, flush_at=1000, flush_interval=60)

if ORDER == "before-import":
    setup()
import typer
app = typer.Typer()
if ORDER == "after-app":
    setup()

@app.callback()
def root():
    if ORDER == "in-callback":
        setup()

@app.command()
def crash():
    obs.capture("crashing")
    raise ValueError("crashed")

@app.command()
def leave():
    raise typer.Exit(4)

app(prog_name="mycli")
"""

CLICK_APP = """
import os, sys
import click
import obs
if os.environ.get("WITH_OBS") == "1":
    obs.init(host=os.environ["CAPTURE_HOST"], capture_uncaught=True, flush_at=1000, flush_interval=60)

@click.command()
@click.argument("what")
def cli(what):
    if what == "crash":
        raise ValueError("crashed")
    if what == "usage":
        raise click.UsageError("wrong")
    if what == "abort":
        raise click.Abort()

# Not standalone: click's own exceptions reach the top of the program, and Python's hook.
cli.main(sys.argv[1:], prog_name="mycli", standalone_mode=os.environ.get("STANDALONE") == "1")
"""


def _cli(server: CaptureServer, app: str, args: list[str], probe: bool = False, **env: str) -> Any:
    """Run ``app`` with obs, and again without: the same exit code and stderr; the run with obs."""
    code = f"import sys\nsys.argv = ['mycli', *{args!r}]\n{app}"
    on = run_py(
        (STDERR_PROBE if probe else "") + code,
        {"WITH_OBS": "1", "POSTHOG_API_KEY": "phc_cli", "CAPTURE_HOST": server.host_url, **env},
    )
    if probe:
        sent, stderr = sent_before_output(on.stderr)
        on = subprocess.CompletedProcess(on.args, on.returncode, on.stdout, stderr)
        on.sent_before_output = sent  # type: ignore[attr-defined]
    off = run_py("\n" * STDERR_PROBE.count("\n") + code if probe else code, env)  # the same line numbers
    assert (on.returncode, shown(on.stderr)) == (off.returncode, shown(off.stderr)), on.stderr
    return on


@pytest.mark.parametrize("order", ["before-import", "after-app", "in-callback"])
def test_a_typer_apps_uncaught_error_is_sent_once_before_typer_prints_it(
    server: CaptureServer, order: str
) -> None:
    proc = _cli(server, TYPER_APP, ["crash"], probe=True, ORDER=order)
    assert proc.returncode == 1 and "ValueError: crashed" in proc.stderr
    assert proc.sent_before_output == 2  # the error and the event before it, delivered before Typer printed
    assert sorted(e["event"] for e in server.events()) == ["$exception", "crashing"]
    props = _exceptions(server)[0]["properties"]
    assert props["$exception_level"] == "fatal"
    assert props["$exception_list"][0]["mechanism"]["handled"] is False


def test_typers_standard_traceback_is_not_sent_twice(server: CaptureServer) -> None:
    # Typer then calls the hook it found at import, which is obs's (obs.init ran first).
    proc = _cli(server, TYPER_APP, ["crash"], ORDER="before-import", TYPER_STANDARD_TRACEBACK="1")
    assert "Traceback (most recent call last)" in proc.stderr
    assert len(_exceptions(server)) == 1


def test_typer_exit_is_not_sent_by_the_hooks(server: CaptureServer) -> None:
    proc = _cli(server, TYPER_APP, ["leave"], ORDER="before-import")
    assert proc.returncode == 4
    assert server.events() == []


def test_typers_hook_is_given_back_on_shutdown() -> None:
    import typer.main

    theirs = typer.main.except_hook
    obs.init(api_key="phc_h", sinks=["memory"], capture_uncaught=True)
    assert typer.main.except_hook is not theirs
    obs.shutdown()
    assert typer.main.except_hook is theirs


def test_typer_imported_later_is_hooked_and_given_back() -> None:
    proc = run_py(
        """
        import sys
        import obs
        obs.init(api_key="phc_h", sinks=["memory"], capture_uncaught=True)
        import typer.main
        assert typer.main.except_hook.__module__ == "obs._uncaught", typer.main.except_hook
        assert type(typer.main.__loader__).__module__ != "obs._uncaught"  # the module keeps its loader
        obs.shutdown()
        assert typer.main.except_hook.__module__ == "typer.main"
        assert not [f for f in sys.meta_path if type(f).__module__ == "obs._uncaught"]
        print("ok")
        """,
        {},
    )
    assert proc.stdout == "ok\n", proc.stderr


def test_a_click_apps_uncaught_error_is_sent(server: CaptureServer) -> None:
    proc = _cli(server, CLICK_APP, ["crash"], STANDALONE="1")
    assert proc.returncode == 1 and "ValueError: crashed" in proc.stderr
    (event,) = _exceptions(server)
    assert event["properties"]["$exception_source"] == "python.sys_excepthook"


@pytest.mark.parametrize("what", ["usage", "abort"])
def test_click_usage_errors_and_aborts_reaching_the_top_are_not_sent(
    server: CaptureServer, what: str
) -> None:
    proc = _cli(server, CLICK_APP, [what])  # not standalone: the exception ends the program
    assert proc.returncode == 1 and "Traceback" in proc.stderr
    assert server.events() == []


def test_the_hooks_and_capture_errors_need_neither_click_nor_typer() -> None:
    proc = run_py(
        """
        import sys
        sys.modules["click"] = sys.modules["typer"] = None  # importing either fails
        import obs
        obs.init(api_key="phc_h", sinks=["memory"], capture_uncaught=True)

        @obs.capture_errors
        def fail():
            raise ValueError("x")

        try:
            fail()
        except ValueError:
            pass
        assert obs.flush(5)
        sink = obs.get_client()._sinks[0]
        print([e["event"] for e in sink.events])
        """,
        {},
    )
    assert proc.stdout == "['$exception']\n", proc.stderr
