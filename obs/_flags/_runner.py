"""The flags' private asyncio loop on a daemon thread, and awaiting its answers from any event loop.

Every caller (sync code, any thread, asyncio or trio) submits remote evaluations here, so they share one
``httpx.AsyncClient`` and its connections, and the caller's contextvars (which may name another async
library) never reach it.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import contextvars
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from .._log import log

T = TypeVar("T")


class Runner:
    """A private asyncio loop on a daemon thread. Every caller (sync code, any thread, any event loop)
    submits remote evaluations here, so they share one ``httpx.AsyncClient`` and its connections."""

    def __init__(self) -> None:
        import asyncio

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="obs-flags", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        import asyncio

        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        import asyncio

        # Started in an empty context, not a copy of the caller's: under `anyio.run(..., backend="trio")`
        # that copy says "trio" to sniffio, and httpx on this asyncio loop would then call trio.
        return contextvars.Context().run(asyncio.run_coroutine_threadsafe, coro, self.loop)

    def close(self, cleanup: Coroutine[Any, Any, Any], timeout: float) -> None:
        try:
            self.submit(cleanup).result(timeout)
        except Exception as e:
            log.debug("obs: feature flags: closing the HTTP client failed: %r", e)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout)
        if not self.thread.is_alive():
            self.loop.close()


async def await_off_asyncio(future: concurrent.futures.Future[T], budget: float) -> T:
    """Await the private loop's ``future`` from trio: its done-callback wakes this task through trio's
    token (never blocking the private loop); another loop waits for it in a worker thread."""
    try:
        import trio

        token = trio.lowlevel.current_trio_token()
    except (ImportError, RuntimeError):  # not trio either
        import anyio

        return await anyio.to_thread.run_sync(future.result, budget, abandon_on_cancel=True)
    done = trio.Event()

    def wake(_: Any) -> None:
        with contextlib.suppress(trio.RunFinishedError):  # the trio run ended meanwhile: nobody waits
            token.run_sync_soon(done.set)

    future.add_done_callback(wake)
    try:
        await done.wait()
    except BaseException:  # cancelled: give up on it (a shared evaluation goes on for the others)
        future.cancel()
        raise
    return future.result()


def close_unstarted(coro: Coroutine[Any, Any, Any]) -> None:
    coro.close()  # never started: closed, so that Python does not warn it was never awaited
