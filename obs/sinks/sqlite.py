"""SqliteSink: the embedded local store. One `events` table keyed by uuid, so replaying a batch is idempotent.

Writes run in a worker thread (never on the event loop). :func:`read_events` loads what was stored, for
the demo, notebooks and offline analysis.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

import anyio
from pydantic_core import to_json

from ..display import EventList
from ._base import Batch

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    uuid        TEXT PRIMARY KEY,
    event       TEXT NOT NULL,
    distinct_id TEXT NOT NULL,
    timestamp   TEXT NOT NULL,
    properties  TEXT NOT NULL,
    route       TEXT NOT NULL DEFAULT 'batch'
);
CREATE INDEX IF NOT EXISTS events_event_timestamp ON events (event, timestamp);
"""

DEFAULT_PATH = ".obs/events.db"


def connect(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """Open (creating when needed) an obs event store."""
    p = Path(path)
    if str(p) != ":memory:":
        p.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(p), check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(SCHEMA)
    return conn


class SqliteSink:
    """Stores wire events in the SQLite database at ``path`` (default ``.obs/events.db``)."""

    def __init__(self, path: str | os.PathLike[str] = DEFAULT_PATH) -> None:
        self.path = str(path)
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._limiter = anyio.CapacityLimiter(1)

    def _write(self, rows: list[tuple[Any, ...]]) -> None:
        with self._lock:
            if self._conn is None:
                self._conn = connect(self.path)
            with self._conn:  # one transaction per batch
                self._conn.execute("BEGIN")
                self._conn.executemany(
                    "INSERT OR IGNORE INTO events (uuid, event, distinct_id, timestamp, properties, route)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    rows,
                )

    async def send(self, batch: Batch) -> None:
        rows = [
            (
                e["uuid"],
                e["event"],
                e["distinct_id"],
                e["timestamp"],
                to_json(e["properties"], inf_nan_mode="null").decode(),
                batch.route,
            )
            for e in batch
        ]
        await anyio.to_thread.run_sync(self._write, rows, limiter=self._limiter)

    async def aclose(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def read_events(path: str | os.PathLike[str] = DEFAULT_PATH, event: str | None = None) -> EventList:
    """The stored wire events, oldest first, optionally only those named ``event``; an
    :class:`obs.display.EventList` (a list of dicts that shows as a table in Jupyter)."""
    conn = connect(path)
    try:
        sql = "SELECT uuid, event, distinct_id, timestamp, properties FROM events"
        args: tuple[str, ...] = ()
        if event is not None:
            sql += " WHERE event = ?"
            args = (event,)
        rows = conn.execute(sql + " ORDER BY timestamp, uuid", args).fetchall()
    finally:
        conn.close()
    return EventList(
        {"uuid": u, "event": ev, "distinct_id": d, "timestamp": ts, "properties": json.loads(p)}
        for u, ev, d, ts, p in rows
    )
