"""ConsoleSink: one readable line per event, for local development."""

from __future__ import annotations

import json
import sys
from typing import IO, Any

from ..events import SDK_PROPERTIES
from ._base import Batch


def format_event(e: dict[str, Any]) -> str:
    props = {k: v for k, v in e.get("properties", {}).items() if k not in SDK_PROPERTIES}
    ts = str(e.get("timestamp", ""))[11:23]
    body = json.dumps(props, ensure_ascii=False, default=str, sort_keys=True)
    return f"[obs] {ts} {e.get('event')} distinct_id={e.get('distinct_id')} {body}"


class ConsoleSink:
    """Prints each event as ``[obs] HH:MM:SS.mmm name distinct_id=… {properties}`` (stderr by default)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream

    async def send(self, batch: Batch) -> None:
        out = self._stream or sys.stderr
        out.write("".join(format_event(e) + "\n" for e in batch))
        out.flush()

    async def aclose(self) -> None:
        return None
