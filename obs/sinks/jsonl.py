"""JsonlSink: appends one JSON wire event per line to a file, written off the event loop."""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

import anyio
from pydantic_core import to_json

from ._base import Batch


class JsonlSink:
    """Appends events to ``path`` as JSON Lines (the parent folder is created)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fh: IO[bytes] | None = None
        self._limiter = anyio.CapacityLimiter(1)

    def _write(self, lines: bytes) -> None:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "ab")  # noqa: SIM115 - kept open across batches
        self._fh.write(lines)
        self._fh.flush()

    async def send(self, batch: Batch) -> None:
        lines = b"".join(to_json(e, inf_nan_mode="null") + b"\n" for e in batch)
        await anyio.to_thread.run_sync(self._write, lines, limiter=self._limiter)

    async def aclose(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
