"""What the viewer reads from the embedded store: pages of events, one event, facets, LLM traces and the
chart series, each as JSON-ready dicts.

Read only: the file is opened read-only, never written to. The store is SQLite in WAL mode, so the
application keeps writing while we read; every answer is built inside one read transaction (one
consistent snapshot), and events are numbered by SQLite's ``rowid``, which grows in commit order — a page
asks for what came ``after`` the last number it saw and misses nothing.

The store may not exist yet (the viewer started before the application): nothing is created, answers are
empty until the file appears. A store deleted and written anew (as ``obs demo`` does) is noticed by its
file identity and reopened; the page starts over when :meth:`Store.info`'s ``store_id`` changes.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...display import TraceTree, summary
from ...testing import KINDS, kind_of

AI_EVENTS = ("$ai_trace", "$ai_span", "$ai_generation", "$ai_embedding")
MAX_LIMIT = 1000  # events in one answer
_MAX_TRACES = 500
_MAX_POINTS = 2000  # generations drawn as points in the latency chart (the newest)
_MAX_FACETS = 200  # distinct ids offered as filter values
_MAX_GROUPS = 500
_FIRST_EXCEPTION = "json_extract(properties, '$.\"$exception_list\"[0]')"  # the one raised
_OCCURRENCES = 50  # the latest occurrences of an exception group listed with it
_MAX_MINUTES = 24 * 60


class StoreError(Exception):
    """The file at the store's path is not an obs event store (or cannot be read)."""


class BadQuery(ValueError):
    """A query parameter the viewer cannot use; the message names it."""


def _prop(name: str) -> str:
    """SQL for one property of the row (``name`` is one of our constants, never user input)."""
    return f"json_extract(properties, '$.\"{name}\"')"


@dataclass(frozen=True)
class Filters:
    """The event stream's filters; each one narrows when given. ``q`` is a case-insensitive (ASCII) text
    search in the event name, the distinct_id and the properties' JSON."""

    event: str | None = None
    kind: str | None = None
    distinct_id: str | None = None
    q: str | None = None

    def __post_init__(self) -> None:
        if self.kind is not None and self.kind not in KINDS:
            raise BadQuery(f"kind must be one of {', '.join(KINDS)}, not {self.kind!r}")


class Store:
    """The store at ``path``, read through one lazily opened connection shared by the server's threads."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._identity: tuple[int, int] | None = None
        self._lock = threading.Lock()
        self._counts: tuple[int, dict[str, int], int] | None = None  # (last id, per name, traces)

    # ---------------------------------------------------------------- connection

    def check(self) -> None:
        """Open the store if it exists, so that a wrong file is reported before the server starts."""
        with self._read():
            pass

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection | None]:
        """One read transaction on the current file, or None while there is no store."""
        with self._lock:
            conn = self._open()
            if conn is None:
                yield None
                return
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                conn.execute("COMMIT")

    def _open(self) -> sqlite3.Connection | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._close()
            return None
        identity = (st.st_dev, st.st_ino)
        if self._conn is not None and identity == self._identity:
            return self._conn
        self._close()  # a new file at the path: the old one was deleted or replaced
        # Read only, so that a store given by mistake (another application's database) is never changed,
        # not even by the schema the sink would create (obs.sinks.sqlite.connect).
        conn = None
        try:
            conn = sqlite3.connect(
                self.path.resolve().as_uri() + "?mode=ro",
                uri=True,
                check_same_thread=False,
                isolation_level=None,
            )
            conn.execute("PRAGMA query_only = ON")
            conn.execute("SELECT rowid, uuid, event, distinct_id, timestamp, properties FROM events LIMIT 0")
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            raise StoreError(f"cannot read {self.path} as an obs event store ({exc})") from None
        self._conn, self._identity, self._counts = conn, identity, None
        return conn

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn, self._identity, self._counts = None, None, None

    def close(self) -> None:
        with self._lock:
            self._close()

    # ---------------------------------------------------------------- answers

    def info(self) -> dict[str, Any]:
        """The store's path, whether it exists, its identity, the last event number and counts by kind."""
        with self._read() as conn:
            base: dict[str, Any] = {"store": str(self.path), "exists": conn is not None}
            if conn is None:
                return {**base, "store_id": None, "last_id": 0, "events": 0, "kinds": {}, "traces": 0}
            last = _last_id(conn)
            if self._counts is None or self._counts[0] != last:  # counted again only when events came
                names = dict(conn.execute("SELECT event, count(*) FROM events GROUP BY event").fetchall())
                traces = conn.execute(
                    f"SELECT count(DISTINCT {_prop('$ai_trace_id')}) FROM events"
                    f" WHERE event IN ({_marks(AI_EVENTS)})",
                    AI_EVENTS,
                ).fetchone()[0]
                self._counts = (last, names, traces)
            _, names, traces = self._counts
            assert self._identity is not None
            return {
                **base,
                "store_id": "{}:{}".format(*self._identity),
                "last_id": last,
                "events": sum(names.values()),
                "kinds": _by_kind(names.items()),
                "traces": traces,
            }

    def events(
        self,
        filters: Filters,
        *,
        after: int | None = None,
        before: int | None = None,
        limit: int = 200,
    ) -> dict[str, Any]:
        """Events matching ``filters``, oldest first. With ``after``: the first ``limit`` newer than that
        number (``more`` says whether others follow); otherwise the newest ``limit`` (older than ``before``
        when given; ``more`` says whether older ones exist). ``last_id`` is the number to ask ``after``
        next: the store's last one unless the answer was cut by ``limit``."""
        if not 1 <= limit <= MAX_LIMIT:
            raise BadQuery(f"limit must be between 1 and {MAX_LIMIT}, not {limit}")
        with self._read() as conn:
            if conn is None:
                return {"events": [], "last_id": 0, "more": False}
            where, args = _where(conn, filters)
            last = _last_id(conn)
            if after is not None:
                where.append("rowid > ?")
                args.append(after)
                order = "ASC"
            else:
                if before is not None:
                    where.append("rowid < ?")
                    args.append(before)
                order = "DESC"
            sql = (
                "SELECT rowid, uuid, event, distinct_id, timestamp, properties FROM events"
                + (" WHERE " + " AND ".join(where) if where else "")
                + f" ORDER BY rowid {order} LIMIT ?"
            )
            rows = conn.execute(sql, [*args, limit + 1]).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        if order == "DESC":
            rows.reverse()
        out = [_row(r, full=False) for r in rows]
        if after is not None and more:
            last = rows[-1][0]
        return {"events": out, "last_id": last, "more": more}

    def event(self, uuid: str) -> dict[str, Any] | None:
        """One event with all its properties, or None."""
        with self._read() as conn:
            if conn is None:
                return None
            row = conn.execute(
                "SELECT rowid, uuid, event, distinct_id, timestamp, properties FROM events WHERE uuid = ?",
                (uuid,),
            ).fetchone()
        return None if row is None else _row(row, full=True)

    def facets(self) -> dict[str, Any]:
        """Values to filter by: event names and kinds (all), distinct ids (the most frequent), with counts."""
        with self._read() as conn:
            if conn is None:
                return {"events": [], "kinds": [], "distinct_ids": []}
            names = conn.execute(
                "SELECT event, count(*) FROM events GROUP BY event ORDER BY count(*) DESC, event"
            ).fetchall()
            ids = conn.execute(
                "SELECT distinct_id, count(*) FROM events GROUP BY distinct_id"
                " ORDER BY count(*) DESC, distinct_id LIMIT ?",
                (_MAX_FACETS,),
            ).fetchall()
        kinds = _by_kind(names)
        return {
            "events": [{"name": n, "count": c} for n, c in names],
            "kinds": [{"name": k, "count": kinds.get(k, 0)} for k in KINDS],
            "distinct_ids": [{"name": n, "count": c} for n, c in ids],
        }

    def exceptions(self, limit: int = 100) -> dict[str, Any]:
        """The exceptions grouped as issues, the most recently seen first: by `$exception_fingerprint`
        when one was given, otherwise by type and the innermost in-app frame (file and function, not the
        line, so that editing the file keeps the group). Each group has its count, the distinct ids it
        happened to, first and last seen, the latest occurrence's summary and its latest occurrences."""
        if not 1 <= limit <= _MAX_GROUPS:
            raise BadQuery(f"limit must be between 1 and {_MAX_GROUPS}, not {limit}")
        with self._read() as conn:
            if conn is None:
                return {"groups": []}
            rows = conn.execute(
                "SELECT rowid, uuid, distinct_id, timestamp,"
                f" {_FIRST_EXCEPTION},"
                f" {_prop('$exception_fingerprint')}, {_prop('$exception_level')}"
                " FROM events WHERE event = '$exception' ORDER BY rowid DESC"
            ).fetchall()
        groups: dict[Any, dict[str, Any]] = {}
        users: dict[Any, set[str]] = {}
        for rowid, uuid, distinct_id, timestamp, first, fingerprint, level in rows:  # newest first
            try:
                exc = json.loads(first) if first else {}
            except ValueError:
                exc = {}
            brief = _brief("$exception", {"$exception_list": [exc], "$exception_level": level})
            key = fingerprint or json.dumps(
                [brief["type"], exc.get("module"), brief["filename"], brief["function"]]
            )
            g = groups.get(key)
            if g is None:
                g = groups[key] = {
                    "key": key,
                    **{k: v for k, v in brief.items() if k != "trace_id"},
                    "last_id": rowid,
                    "last_timestamp": timestamp,
                    "count": 0,
                    "occurrences": [],
                }
                users[key] = set()
            g["count"] += 1
            g["first_timestamp"] = timestamp
            users[key].add(distinct_id)
            if len(g["occurrences"]) < _OCCURRENCES:
                g["occurrences"].append({"uuid": uuid, "timestamp": timestamp, "distinct_id": distinct_id})
        out = list(groups.values())[:limit]
        for g in out:
            g["users"] = len(users[g["key"]])
        return {"groups": out}

    def traces(self, limit: int = 100) -> dict[str, Any]:
        """The LLM traces, newest first: name, start and end, generations, tokens, cost, errors."""
        if not 1 <= limit <= _MAX_TRACES:
            raise BadQuery(f"limit must be between 1 and {_MAX_TRACES}, not {limit}")
        gen = "event IN ('$ai_generation', '$ai_embedding')"
        sql = f"""
            SELECT tid, max(rowid), min(timestamp), max(timestamp), count(*),
                   sum(event = '$ai_generation'), sum(event = '$ai_span'),
                   sum(CASE WHEN {gen} THEN {_prop("$ai_input_tokens")} END),
                   sum(CASE WHEN {gen} THEN {_prop("$ai_output_tokens")} END),
                   sum(CASE WHEN {gen} THEN {_prop("$ai_total_cost_usd")} END),
                   max(CASE WHEN event = '$ai_trace' THEN {_prop("$ai_latency")} END),
                   max({_prop("$ai_latency")}),
                   sum(event = '$exception' OR coalesce({_prop("$ai_is_error")}, 0)),
                   max(CASE WHEN event = '$ai_trace' THEN {_prop("$ai_span_name")} END),
                   min(CASE WHEN event = '$ai_span' THEN {_prop("$ai_span_name")} END),
                   min(CASE WHEN event = '$ai_generation' THEN {_prop("$ai_model")} END),
                   max(distinct_id)
            FROM (SELECT rowid, event, timestamp, distinct_id, properties, {_prop("$ai_trace_id")} AS tid
                  FROM events WHERE event IN ({_marks((*AI_EVENTS, "$exception"))}))
            WHERE tid IS NOT NULL
            GROUP BY tid HAVING sum(event != '$exception') > 0
            ORDER BY max(rowid) DESC LIMIT ?
        """
        with self._read() as conn:
            if conn is None:
                return {"traces": []}
            rows = conn.execute(sql, (*AI_EVENTS, "$exception", limit)).fetchall()
        traces = []
        for r in rows:
            (tid, last, first_ts, last_ts, n, gens, spans, tin, tout, cost, tlat, mlat, errors) = r[:13]
            name = r[13] or r[14] or r[15] or "trace"
            traces.append(
                {
                    "trace_id": tid,
                    "name": name,
                    "distinct_id": r[16],
                    "last_id": last,
                    "first_timestamp": first_ts,
                    "last_timestamp": last_ts,
                    "events": n,
                    "generations": gens,
                    "spans": spans,
                    "input_tokens": tin,
                    "output_tokens": tout,
                    "cost_usd": cost,
                    "latency": tlat if tlat is not None else mlat,
                    "errors": errors,
                }
            )
        return {"traces": traces}

    def trace(self, trace_id: str) -> dict[str, Any] | None:
        """One trace as a tree (depth first, as :class:`obs.display.TraceTree` builds it), each node with
        its start and duration relative to the trace's start, for a waterfall; None if unknown."""
        with self._read() as conn:
            if conn is None:
                return None
            rows = conn.execute(
                "SELECT rowid, uuid, event, distinct_id, timestamp, properties FROM events"
                f" WHERE event IN ({_marks((*AI_EVENTS, '$exception'))}) AND {_prop('$ai_trace_id')} = ?"
                " ORDER BY rowid",
                (*AI_EVENTS, "$exception", trace_id),
            ).fetchall()
        events = [_row(r, full=True) for r in rows]
        if not any(e["event"] in AI_EVENTS for e in events):
            return None
        tree = TraceTree(events, trace_id)
        spans = {e["uuid"]: _span(e) for e in events}
        starts = [s for s, _ in spans.values() if s is not None]
        ends = [e for _, e in spans.values() if e is not None]
        origin = min(starts) if starts else None
        nodes = []
        for depth, event, prefix in tree.nodes():
            start, end = spans[event["uuid"]]
            nodes.append(
                {
                    **event,
                    "depth": depth,
                    "prefix": prefix,
                    "offset": None if start is None or origin is None else start - origin,
                    "duration": None if start is None or end is None else end - start,
                }
            )
        return {
            "trace_id": trace_id,
            "duration": (max(ends) - origin) if ends and origin is not None else None,
            "nodes": nodes,
        }

    def charts(self, minutes: int = 60) -> dict[str, Any]:
        """Chart series for the ``minutes`` up to now, or up to the newest event when nothing is that
        recent (an old store still shows its last hour): events per minute by kind, LLM cost per minute
        (every `$ai_generation`'s `$ai_total_cost_usd`) and the newest 2,000 generations with their
        latency."""
        if not 1 <= minutes <= _MAX_MINUTES:
            raise BadQuery(f"minutes must be between 1 and {_MAX_MINUTES}, not {minutes}")
        now = dt.datetime.now(dt.timezone.utc)
        with self._read() as conn:
            newest = None if conn is None else conn.execute("SELECT max(timestamp) FROM events").fetchone()[0]
            end = now
            newest_time = _parse(newest)
            if newest_time is not None and newest_time < now - dt.timedelta(minutes=minutes):
                end = newest_time
            end = end.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
            start = end - dt.timedelta(minutes=minutes)
            since = start.isoformat()
            buckets = [(start + dt.timedelta(minutes=i)).isoformat() for i in range(minutes)]
            per_kind: dict[str, list[int]] = {}
            spent_per_minute = [0.0] * minutes
            generations: list[dict[str, Any]] = []
            if conn is not None:
                # obs writes UTC timestamps in ISO form: the first 16 characters are the minute.
                counted = conn.execute(
                    "SELECT substr(timestamp, 1, 16), event, count(*) FROM events"
                    " WHERE timestamp >= ? GROUP BY 1, 2",
                    (since,),
                ).fetchall()
                index = {b[:16]: i for i, b in enumerate(buckets)}
                for minute, name, n in counted:
                    i = index.get(minute)
                    if i is not None:
                        series = per_kind.setdefault(kind_of({"event": name}), [0] * minutes)
                        series[i] += n
                spent = conn.execute(
                    f"SELECT substr(timestamp, 1, 16), sum({_prop('$ai_total_cost_usd')}) FROM events"
                    " WHERE event = '$ai_generation' AND timestamp >= ? GROUP BY 1",
                    (since,),
                ).fetchall()
                for minute, usd in spent:
                    i = index.get(minute)
                    if i is not None and isinstance(usd, (int, float)):
                        spent_per_minute[i] += usd
                rows = conn.execute(
                    f"SELECT uuid, timestamp, {_prop('$ai_model')}, {_prop('$ai_total_cost_usd')},"
                    f" {_prop('$ai_latency')}, {_prop('$ai_input_tokens')}, {_prop('$ai_output_tokens')},"
                    f" {_prop('$ai_trace_id')}"
                    " FROM events WHERE event = '$ai_generation' AND timestamp >= ?"
                    " ORDER BY timestamp DESC LIMIT ?",
                    (since, _MAX_POINTS),
                ).fetchall()
                for uuid, ts, model, cost, latency, tin, tout, tid in reversed(rows):
                    generations.append(
                        {
                            "uuid": uuid,
                            "timestamp": ts,
                            "model": model,
                            "cost_usd": cost,
                            "latency": latency,
                            "input_tokens": tin,
                            "output_tokens": tout,
                            "trace_id": tid,
                        }
                    )
        return {
            "start": start.isoformat(),
            "end": end.isoformat(),
            "minutes": buckets,
            "events_per_minute": {k: per_kind[k] for k in KINDS if k in per_kind},
            "cost_per_minute": spent_per_minute,
            "generations": generations,
        }


# ------------------------------------------------------------------------------------------- helpers


def _marks(values: tuple[str, ...]) -> str:
    return ", ".join("?" * len(values))


def _last_id(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT coalesce(max(rowid), 0) FROM events").fetchone()[0])


def _by_kind(names: Iterable[tuple[str, int]]) -> dict[str, int]:
    """Event counts by name → by kind."""
    kinds: dict[str, int] = {}
    for name, n in names:
        kind = kind_of({"event": name})
        kinds[kind] = kinds.get(kind, 0) + n
    return kinds


def _where(conn: sqlite3.Connection, f: Filters) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    args: list[Any] = []
    if f.event is not None:
        where.append("event = ?")
        args.append(f.event)
    if f.kind is not None:
        # The kind is told by the name: the store's names of that kind (an index lookup, no table scan).
        distinct = conn.execute("SELECT DISTINCT event FROM events").fetchall()
        names = [n for (n,) in distinct if kind_of({"event": n}) == f.kind]
        where.append(f"event IN ({_marks(tuple(names))})" if names else "0")
        args.extend(names)
    if f.distinct_id is not None:
        where.append("distinct_id = ?")
        args.append(f.distinct_id)
    if f.q:
        where.append("instr(lower(event || ' ' || distinct_id || ' ' || properties), lower(?)) > 0")
        args.append(f.q)
    return where, args


def _row(r: tuple[Any, ...], *, full: bool) -> dict[str, Any]:
    """One event as the API gives it: with its properties (``full``), or with a one-line summary and the
    few fields a list shows."""
    rowid, uuid, name, distinct_id, timestamp, properties = r
    try:
        props = json.loads(properties)
    except ValueError:
        props = {}
    if not isinstance(props, dict):
        props = {}
    e: dict[str, Any] = {
        "id": rowid,
        "uuid": uuid,
        "event": name,
        "kind": kind_of({"event": name}),
        "distinct_id": distinct_id,
        "timestamp": timestamp,
    }
    if full:
        e["properties"] = props
    e["summary"] = summary({"event": name, "properties": props})
    e["brief"] = _brief(name, props)
    return e


def _brief(name: str, p: Mapping[str, Any]) -> dict[str, Any]:
    """The fields a list row shows beside the summary, per kind."""
    if name == "$exception":
        first = _first(p.get("$exception_list"))
        frames = _first_dict(first.get("stacktrace")).get("frames")
        frames = frames if isinstance(frames, list) else []
        in_app = [f for f in frames if isinstance(f, dict) and f.get("in_app")]
        top = (in_app or [f for f in frames if isinstance(f, dict)] or [{}])[-1]
        mechanism = _first_dict(first.get("mechanism"))
        return {
            "type": first.get("type"),
            "value": first.get("value"),
            "level": p.get("$exception_level"),
            "handled": mechanism.get("handled"),
            "function": top.get("function"),
            "filename": top.get("filename"),
            "lineno": top.get("lineno"),
            "trace_id": p.get("$ai_trace_id"),
        }
    if name in AI_EVENTS:
        return {
            "trace_id": p.get("$ai_trace_id"),
            "name": p.get("$ai_span_name"),
            "model": p.get("$ai_model"),
            "input_tokens": p.get("$ai_input_tokens", p.get("$ai_trace_input_tokens")),
            "output_tokens": p.get("$ai_output_tokens", p.get("$ai_trace_output_tokens")),
            "cost_usd": p.get("$ai_total_cost_usd", p.get("$ai_trace_cost_usd")),
            "latency": p.get("$ai_latency"),
            "is_error": p.get("$ai_is_error"),
        }
    return {}


def _first(v: Any) -> dict[str, Any]:
    return v[0] if isinstance(v, list) and v and isinstance(v[0], dict) else {}


def _first_dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _parse(v: Any) -> dt.datetime | None:
    if not isinstance(v, str):
        return None
    try:
        t = dt.datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.timezone.utc)


def _span(e: Mapping[str, Any]) -> tuple[float | None, float | None]:
    """When an event's work started and ended, in seconds: it is captured when it ends, after its
    `$ai_latency`."""
    t = _parse(e["timestamp"])
    if t is None:
        return None, None
    end = t.timestamp()
    return end - (_number(e["properties"].get("$ai_latency")) or 0.0), end
