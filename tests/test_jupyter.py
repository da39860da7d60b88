"""obs in a real Jupyter kernel (ipykernel through jupyter_client), sending to the local capture server:
uncaught cell errors, the kernel's running loop, re-init, and delivery at shutdown and restart."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager, start_new_kernel

from tests.capture_server import CaptureServer

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Cell:
    """What one executed cell produced."""

    status: str
    stdout: str = ""
    results: list[str] = field(default_factory=list)  # text/plain of execute_result and display_data
    errors: list[dict[str, Any]] = field(default_factory=list)  # ename, evalue, traceback

    @property
    def result(self) -> str:
        return self.results[-1] if self.results else ""


class Kernel:
    """A python3 kernel of this interpreter, started in the repository root."""

    def __init__(self) -> None:
        self.km: KernelManager
        self.kc: BlockingKernelClient
        self.km, self.kc = start_new_kernel(kernel_name="python3", cwd=str(ROOT), startup_timeout=60)

    def run(self, code: str, timeout: float = 30, *, interrupt_after: float | None = None) -> Cell:
        cell = Cell(status="")

        def output(msg: dict[str, Any]) -> None:
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream" and content["name"] == "stdout":
                cell.stdout += content["text"]
            elif kind in ("execute_result", "display_data"):
                cell.results.append(content["data"].get("text/plain", ""))
            elif kind == "error":
                cell.errors.append(content)

        if interrupt_after is not None:
            import threading

            threading.Timer(interrupt_after, self.km.interrupt_kernel).start()
        reply = self.kc.execute_interactive(textwrap.dedent(code), timeout=timeout, output_hook=output)
        cell.status = reply["content"]["status"]
        return cell

    def ok(self, code: str, timeout: float = 30) -> Cell:
        cell = self.run(code, timeout)
        assert cell.status == "ok", cell.errors
        return cell

    def close(self) -> None:
        self.kc.stop_channels()
        if self.km.is_alive():
            self.km.shutdown_kernel(now=True)


@pytest.fixture
def kernel() -> Iterator[Kernel]:
    k = Kernel()
    try:
        yield k
    finally:
        k.close()


def _init(server: CaptureServer, **extra: Any) -> str:
    # Nothing but a flush (or the exit flush) delivers: a batch never fills and the interval is long.
    args = ", ".join(f"{k}={v!r}" for k, v in extra.items())
    return (
        f"import obs\nobs.init(api_key='phc_kernel', host={server.host_url!r}, flush_at=1000,"
        f" flush_interval=60, {args})"
    )


def _exceptions(server: CaptureServer) -> list[dict[str, Any]]:
    return [e["properties"] for e in server.events() if e["event"] == "$exception"]


def test_a_cell_error_is_captured_and_shown_as_usual(kernel: Kernel, server: CaptureServer) -> None:
    kernel.ok(_init(server, capture_uncaught=True))
    failed = kernel.run(
        """
        def divide():
            raise ValueError("cell failed")
        divide()
        """
    )
    assert failed.status == "error"
    (error,) = failed.errors
    assert error["ename"] == "ValueError" and error["evalue"] == "cell failed"
    assert any("divide()" in line for line in error["traceback"])  # IPython's own traceback, unchanged
    # Not errors of the code: Ctrl-C (raised, and a real interrupt of a running cell), a typo in a cell.
    assert kernel.run("raise KeyboardInterrupt").errors[0]["ename"] == "KeyboardInterrupt"
    interrupted = kernel.run("import time; time.sleep(30)", interrupt_after=1.0)
    assert interrupted.errors[0]["ename"] == "KeyboardInterrupt"
    assert kernel.run("x = (1,").errors[0]["ename"] == "SyntaxError"
    # A SyntaxError raised by running code is a failure of the code, and is sent.
    assert kernel.run("compile('y = (2,', '<generated>', 'exec')").errors[0]["ename"] == "SyntaxError"
    assert kernel.ok("obs.flush(5)").result == "True"  # the kernel lives on; the loop thread can flush

    props, generated = _exceptions(server)
    assert generated["$exception_list"][0]["type"] == "SyntaxError"
    assert generated["$exception_source"] == "python.ipython"
    assert props["$exception_source"] == "python.ipython"
    assert props["$exception_level"] == "error"  # not fatal: the kernel survives
    entry = props["$exception_list"][0]
    assert entry["type"] == "ValueError" and entry["value"] == "cell failed"
    assert entry["mechanism"]["type"] == "onuncaughtexception" and entry["mechanism"]["handled"] is False
    assert entry["stacktrace"]["frames"][-1]["function"] == "divide"


def test_a_custom_handler_registered_before_is_chained_and_restored(
    kernel: Kernel, server: CaptureServer
) -> None:
    kernel.ok(
        """
        def mine(shell, etype, value, tb, tb_offset=None):
            print("mine saw", etype.__name__)
        get_ipython().set_custom_exc((ZeroDivisionError,), mine)
        theirs = get_ipython().CustomTB
        """
    )
    kernel.ok(_init(server, capture_uncaught=True))
    assert kernel.run("1 / 0").stdout == "mine saw ZeroDivisionError\n"
    assert kernel.run("raise LookupError('shown')").errors[0]["evalue"] == "shown"
    kernel.ok("obs.flush(5)")
    types = [p["$exception_list"][0]["type"] for p in _exceptions(server)]
    assert types == ["ZeroDivisionError", "LookupError"]

    kernel.ok("obs.shutdown()")
    restored = kernel.ok("get_ipython().CustomTB is theirs, get_ipython().custom_exceptions").result
    assert restored == "(True, (ZeroDivisionError,))"
    assert kernel.run("raise LookupError('after shutdown')").errors[0]["evalue"] == "after shutdown"
    assert len(_exceptions(server)) == 2


def test_without_capture_uncaught_cells_errors_are_not_sent(kernel: Kernel, server: CaptureServer) -> None:
    kernel.ok(_init(server))
    assert kernel.run("raise ValueError('not sent')").errors[0]["ename"] == "ValueError"
    assert kernel.ok("get_ipython().custom_exceptions, obs.flush(5)").result == "((), True)"
    assert _exceptions(server) == []


def test_decorators_top_level_await_and_re_init_in_the_kernel_loop(
    kernel: Kernel, server: CaptureServer
) -> None:
    kernel.ok(_init(server, environment="first"))
    kernel.ok(
        """
        import asyncio

        @obs.track("report_exported")
        def export(fmt):
            return fmt

        @obs.capture_errors(reraise=False, default="fallback")
        async def fetch(url):
            await asyncio.sleep(0.01)
            raise ConnectionError(url)

        @obs.trace("answer")
        async def answer():
            await asyncio.sleep(0)
            return "42"
        """
    )
    # The kernel's own loop is running: a top-level await, then an awaited flush that never blocks it.
    cell = kernel.ok(
        """
        running = asyncio.get_running_loop().is_running()
        results = (export("csv"), await fetch("db.internal"), await answer())
        running, results, await obs.aflush(5)
        """
    )
    assert cell.result == "(True, ('csv', 'fallback', '42'), True)"
    kernel.ok(_init(server, environment="second"))  # a later cell configures obs anew
    assert kernel.ok("obs.capture('after_reinit', distinct_id='u'); obs.flush(5)").result == "True"

    got = sorted((e["event"], e["properties"]["environment"]) for e in server.events())
    assert got == [
        ("$ai_trace", "first"),
        ("$exception", "first"),
        ("after_reinit", "second"),
        ("report_exported", "first"),
    ]


@pytest.mark.parametrize("how", ["shutdown", "restart"])
def test_the_last_cell_events_arrive_when_the_kernel_stops(server: CaptureServer, how: str) -> None:
    kernel = Kernel()
    try:
        kernel.ok(_init(server, capture_uncaught=True))
        kernel.ok("obs.capture('last_cell', {'n': 1}, distinct_id='u')")
        assert kernel.run("raise ValueError('just before the end')").status == "error"
        assert server.events() == []  # nothing flushed yet: the interval is a minute
        if how == "shutdown":
            kernel.km.shutdown_kernel(now=False)  # a shutdown_request: the kernel process exits normally
        else:
            kernel.km.restart_kernel(now=False)
            # A request sent before the new kernel listens can be lost (seen under CI load): wait for it.
            kernel.kc.wait_for_ready(timeout=60)
            assert kernel.ok("'obs' in globals()").result == "False"  # a fresh kernel
    finally:
        kernel.close()
    got = sorted(e["event"] for e in server.events())
    assert got == ["$exception", "last_cell"]
