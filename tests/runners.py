"""Ways to run an async test body: asyncio, trio, and anyio on each (flag checks must work on all)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import trio


def _asyncio_run(main: Callable[[], Awaitable[Any]]) -> Any:
    async def run() -> Any:
        return await main()

    return asyncio.run(run())


# The async functions must work on each: anyio on trio sets sniffio's contextvar to "trio", which a
# request started in a copy of the caller's context would carry onto obs's asyncio loop.
RUNNERS: dict[str, Callable[[Callable[[], Awaitable[Any]]], Any]] = {
    "asyncio": _asyncio_run,
    "trio": trio.run,
    "anyio-trio": lambda main: anyio.run(main, backend="trio"),
    "anyio-asyncio": lambda main: anyio.run(main, backend="asyncio"),
}
