"""JsonlSink: appends one JSON wire event per line to a file, written off the event loop."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO

import anyio

from ._base import Batch


class JsonlSink:
    """Appends events to ``path`` as JSON Lines (the parent folder is created)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fh: IO[str] | None = None
        self._limiter = anyio.CapacityLimiter(1)

    def _write(self, lines: str) -> None:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open across batches
        self._fh.write(lines)
        self._fh.flush()

    async def send(self, batch: Batch) -> None:
        lines = "".join(json.dumps(e, ensure_ascii=False, separators=(",", ":")) + "\n" for e in batch)
        await anyio.to_thread.run_sync(self._write, lines, limiter=self._limiter)

    async def aclose(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
