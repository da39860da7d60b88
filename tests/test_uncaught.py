"""`obs.init(capture_uncaught=True)`: real processes that die of an uncaught exception, a thread that dies,
and an asyncio task whose exception nobody retrieved."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from typing import Any

import obs
from obs import _uncaught
from tests.capture_server import CaptureServer

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
