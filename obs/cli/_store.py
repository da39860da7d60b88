"""Reading stored events while another process writes them: the SQLite store and JSONL files, read-only.

- :class:`StoreReader` opens an obs event store (``obs.sinks.sqlite``) read-only, so looking never creates,
  migrates or locks anything; WAL lets it read while the app writes. New rows are found by ``rowid``,
  which grows with each insert (the store never deletes), so following misses nothing and repeats nothing
  even when a batch brings events with older timestamps.
- :class:`JsonlReader` reads a JSONL file (``obs.sinks.jsonl``) and then the lines appended since; a line
  still being written is kept until its newline arrives; a file that shrank was replaced and is read again.
- :class:`Filter` says which events to show; it narrows the SQL query and checks each event exactly.

Both readers hand out wire events (``event``, ``distinct_id``, ``properties``, ``timestamp``, ``uuid``).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..testing import kind_of
from ._render import parse_time

Event = dict[str, Any]
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class SourceError(Exception):
    """A store or file that cannot be read; the message says which and why."""


def parse_since(value: str, now: dt.datetime | None = None) -> dt.datetime:
    """``30s``, ``10m``, ``2h``, ``1d``, ``1w`` (that long ago) or an ISO 8601 date or time (naive: local
    time) as an aware datetime; ValueError with a readable message otherwise."""
    m = _DURATION.match(value)
    if m:
        now = now or dt.datetime.now(dt.timezone.utc)
        return now - dt.timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])
    try:
        t = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{value!r} is neither a duration (30s, 10m, 2h, 1d, 1w) nor an ISO time (2024-05-01T12:00)"
        ) from None
    return t if t.tzinfo is not None else t.astimezone()  # naive: the user's local time


@dataclass
class Filter:
    """Which events to show: every given condition must hold (names and kinds: any of those given)."""

    events: Sequence[str] = ()
    kinds: Sequence[str] = ()
    distinct_id: str | None = None
    since: dt.datetime | None = None

    def matches(self, e: Mapping[str, Any]) -> bool:
        if self.events and e.get("event") not in self.events:
            return False
        if self.kinds and (not isinstance(e.get("event"), str) or kind_of(e) not in self.kinds):
            return False
        if self.distinct_id is not None and str(e.get("distinct_id")) != self.distinct_id:
            return False
        if self.since is not None:
            t = parse_time(e.get("timestamp"))
            return t is not None and t >= self.since
        return True


@dataclass
class StoreReader:
    """An obs SQLite store, read-only. :meth:`recent` for what is there, :meth:`new` for what came since."""

    path: Path
    _conn: sqlite3.Connection | None = field(default=None, init=False, repr=False)
    last_rowid: int = field(default=0, init=False)

    def open(self) -> StoreReader:
        if not self.path.is_file():
            raise SourceError(
                f"no event store at {self.path}: obs writes one with OBS_SINKS=sqlite (or sqlite:PATH); "
                "point --store at it"
            )
        try:
            conn = sqlite3.connect(f"file:{_uri_path(self.path)}?mode=ro", uri=True, isolation_level=None)
            conn.execute("PRAGMA busy_timeout = 2000")  # a writer's checkpoint can hold the file briefly
            conn.execute("SELECT uuid, event, distinct_id, timestamp, properties FROM events LIMIT 0")
        except sqlite3.Error as e:
            raise SourceError(f"{self.path} is not an obs event store ({e})") from None
        self._conn = conn
        return self

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def count(self) -> tuple[int, str | None]:
        """(events stored, the latest event's timestamp)."""
        n, last = self._query("SELECT count(*), max(timestamp) FROM events", ())[0]
        return int(n), last

    def recent(self, flt: Filter, limit: int | None) -> list[Event]:
        """The matching events, oldest first (only the last ``limit`` if given); what is added after this
        call is what :meth:`new` returns."""
        (top,) = self._query("SELECT coalesce(max(rowid), 0) FROM events", ())[0]
        self.last_rowid = int(top)
        where, args = self._where(flt)
        sql = f"SELECT uuid, event, distinct_id, timestamp, properties FROM events WHERE rowid <= ?{where}"
        sql += " ORDER BY timestamp DESC, rowid DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        rows = self._query(sql, (self.last_rowid, *args))
        return [e for e in map(_event, reversed(rows)) if flt.matches(e)]

    def new(self, flt: Filter) -> list[Event]:
        """The matching events added since the last call (or :meth:`recent`), in the order they came."""
        (top,) = self._query("SELECT coalesce(max(rowid), 0) FROM events", ())[0]
        if top <= self.last_rowid:
            return []
        where, args = self._where(flt)
        rows = self._query(
            "SELECT uuid, event, distinct_id, timestamp, properties FROM events"
            f" WHERE rowid > ? AND rowid <= ?{where} ORDER BY rowid",
            (self.last_rowid, top, *args),
        )
        self.last_rowid = int(top)  # rows up to here are seen, shown or not: the next look starts after
        return [e for e in map(_event, rows) if flt.matches(e)]

    def _where(self, flt: Filter) -> tuple[str, list[Any]]:
        """SQL conditions that narrow the rows; :meth:`Filter.matches` still decides each event."""
        sql, args = "", []
        if flt.events:
            sql += f" AND event IN ({_marks(flt.events)})"
            args += list(flt.events)
        if flt.kinds:
            fixed = _fixed_names()
            wanted = [name for name, kind in fixed.items() if kind in flt.kinds]
            either = [f"event IN ({_marks(wanted)})"] if wanted else []
            args += wanted
            if "custom" in flt.kinds:  # a custom event is one of any other name
                either.append(f"event NOT IN ({_marks(fixed)})")
                args += list(fixed)
            sql += f" AND ({' OR '.join(either)})" if either else " AND 0"
        if flt.distinct_id is not None:
            sql += " AND distinct_id = ?"
            args.append(flt.distinct_id)
        if flt.since is not None:
            # Stored timestamps are ISO strings in UTC, so they compare as text; to the second, so that
            # nothing of the first second is missed (matches() checks exactly).
            sql += " AND timestamp >= ?"
            args.append(flt.since.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"))
        return sql, args

    def _query(self, sql: str, args: Sequence[Any]) -> list[Any]:
        if self._conn is None:
            raise SourceError(f"{self.path} is not open")
        try:
            return self._conn.execute(sql, args).fetchall()
        except sqlite3.Error as e:
            raise SourceError(f"reading {self.path} failed ({e})") from None


@dataclass
class JsonlReader:
    """A JSONL file of wire events, read from the start and then as it grows."""

    path: Path
    unreadable: int = 0  # lines that were not a JSON object: counted, and said once at the end
    _pos: int = field(default=0, init=False)
    _partial: bytes = field(default=b"", init=False, repr=False)

    def open(self) -> JsonlReader:
        if not self.path.is_file():
            raise SourceError(f"no JSONL file at {self.path}")
        return self

    def read(self, flt: Filter, final: bool = False) -> list[Event]:
        """The matching events written since the last call (everything, the first time). A last line
        without its newline waits for it, unless ``final`` (nothing more will be read)."""
        try:
            with self.path.open("rb") as fh:
                fh.seek(0, 2)
                if fh.tell() < self._pos:  # truncated or replaced: start again
                    self._pos, self._partial = 0, b""
                fh.seek(self._pos)
                data = fh.read()
                self._pos = fh.tell()
        except OSError as e:
            raise SourceError(f"reading {self.path} failed ({e})") from None
        *lines, self._partial = (self._partial + data).split(b"\n")
        if final:
            lines.append(self._partial)
            self._partial = b""
        out = []
        for line in lines:
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError:
                event = None
            if not isinstance(event, dict):
                self.unreadable += 1
                continue
            if flt.matches(event):
                out.append(event)
        return out


def _fixed_names() -> dict[str, str]:
    """Event name → kind for the kinds whose events have a fixed name (every kind but ``custom``)."""
    from ..events import EVENT_KINDS

    names = {}
    for model in EVENT_KINDS.values():
        for name in getattr(model.model_fields["name"].annotation, "__args__", ()):
            names[name] = kind_of({"event": name})
    return names


def _marks(items: Sequence[Any] | Mapping[Any, Any]) -> str:
    return ",".join("?" * len(items))


def _event(row: Sequence[Any]) -> Event:
    uuid, name, distinct_id, timestamp, properties = row
    try:
        props = json.loads(properties)
    except ValueError:
        props = {"$obs_unreadable_properties": properties}
    return {
        "event": name,
        "distinct_id": distinct_id,
        "properties": props,
        "timestamp": timestamp,
        "uuid": uuid,
    }


def _uri_path(path: Path) -> str:
    """``path`` for a ``file:`` URI: ``?`` and ``#`` would end the path part."""
    return str(path.resolve()).replace("%", "%25").replace("?", "%3f").replace("#", "%23")


def by_time(events: Sequence[Event]) -> list[Event]:
    """Events from several sources in timestamp order (unreadable timestamps last, in arrival order)."""
    far = dt.datetime.max.replace(tzinfo=dt.timezone.utc)
    return sorted(events, key=lambda e: parse_time(e.get("timestamp")) or far)
