"""The durable spool's storage: batches PostHog has not acknowledged yet, kept in SQLite on local disk.

This module owns the file and nothing else: what is in it, who may resend which batch, how big it may
grow, and what happens when the disk misbehaves. When to spool and when to resend is the PostHog
sink's business.

- One file, ``<directory>/spool.db`` (WAL journal), one row per batch: its encoded events newline-joined
  in one blob, exactly as given (uuid and timestamp untouched, so PostHog dedupes a resend).
- Several processes may share the directory (pre-fork web workers). A sender *claims* rows before
  resending them; a claim is a token unique to one process (and one fork of it) plus a time, and a claim
  older than ``claim_ttl`` is free to take again, so a crashed sender's batches are not stuck forever.
- ``max_bytes`` caps the payload bytes kept; going over evicts the oldest batches, counted and logged.
- Nothing here raises into the caller: a spool that cannot be opened (corrupt file, unwritable place) is
  reported once and from then on every method is a no-op; an error mid-way is counted, reported at most
  every few minutes, and the call returns its empty value.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import secrets
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple, TypeVar

from .._log import warn_every
from .._stats import Stats

FILENAME = "spool.db"
SCHEMA_VERSION = 1
BUSY_TIMEOUT = 5.0  # seconds a writer waits for another process's transaction before giving up
_WAL_LIMIT = 8 * 1024 * 1024  # the -wal file is truncated back to this after a checkpoint
_ERROR_INTERVAL = 600.0  # a failure that keeps happening is logged again at most this often
_EVICT_INTERVAL = 60.0
_CHUNK = 500  # ids per IN (...) list, far below SQLite's limit on bound parameters

_T = TypeVar("_T")
# Counters this module bumps (listed in obs._stats.FIELDS): spool_writes, spool_evicted, spool_errors.

# MIGRATIONS[v] takes a file at user_version v to v + 1, inside one IMMEDIATE transaction.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        # AUTOINCREMENT: an id is never reused, so a sender acting on an id it read earlier (delete after
        # a 2xx that raced an eviction) can never hit another batch. The small columns come first and
        # the blob last, so scans for claims and eviction never read a blob's overflow pages.
        """CREATE TABLE batches (
            id          INTEGER PRIMARY KEY AUTOINCREMENT,
            route       TEXT    NOT NULL,
            count       INTEGER NOT NULL,
            bytes       INTEGER NOT NULL,
            created_at  REAL    NOT NULL,
            attempts    INTEGER NOT NULL DEFAULT 0,
            claimed_by  TEXT,
            claimed_at  REAL,
            events      BLOB    NOT NULL
        )""",
        # Running totals kept by triggers, so pending() and the cap check cost one row, not a scan.
        """CREATE TABLE totals (
            id     INTEGER PRIMARY KEY CHECK (id = 1),
            events INTEGER NOT NULL,
            bytes  INTEGER NOT NULL
        )""",
        "INSERT INTO totals (id, events, bytes) VALUES (1, 0, 0)",
        # Ids start at the file's creation time in microseconds, so a file deleted and recreated under
        # a running sender never hands out an id that sender still holds from the old one.
        "INSERT INTO sqlite_sequence (name, seq)"
        " VALUES ('batches', CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER))",
        """CREATE TRIGGER batches_insert AFTER INSERT ON batches BEGIN
            UPDATE totals SET events = events + NEW.count, bytes = bytes + NEW.bytes WHERE id = 1;
        END""",
        """CREATE TRIGGER batches_delete AFTER DELETE ON batches BEGIN
            UPDATE totals SET events = events - OLD.count, bytes = bytes - OLD.bytes WHERE id = 1;
        END""",
    ),
)

_CLAIM = (
    "UPDATE batches SET claimed_by = ?, claimed_at = ?, attempts = attempts + 1"
    " WHERE id IN (SELECT id FROM batches WHERE claimed_by IS NULL OR claimed_at < ? ORDER BY id LIMIT ?)"
    " RETURNING id, route, attempts, count, events"
)
# Eviction victims: first rows nobody is working on (unclaimed or claim expired), then live claims.
_VICTIMS = (
    "SELECT id, count, bytes FROM batches"
    " WHERE id != ? AND (claimed_by IS NULL OR claimed_at < ?) ORDER BY id",
    "SELECT id, count, bytes FROM batches WHERE id != ? AND claimed_at >= ? ORDER BY id",
)


class SpooledBatch(NamedTuple):
    """A claimed batch: resend ``events`` to ``route``, then :meth:`Spool.delete` (2xx) or release it."""

    id: int
    route: str  # "batch" or "ai"
    events: list[bytes]  # each one JSON-encoded event, byte for byte as it was put
    attempts: int  # how many times it was claimed before this claim (a put with claim=True counts)


class _Unusable(Exception):
    """The file is a SQLite database this version of obs must not touch."""


class Spool:
    """Batches kept on disk in ``directory`` until PostHog acknowledges them; safe across threads,
    processes and forks.

    ``max_bytes`` caps the events' bytes (the SQLite file itself is somewhat larger: page overhead,
    the -wal file, and free pages kept for reuse). ``claim_ttl`` is how long a claim holds without
    :meth:`touch` before another sender may take the batch.

    Calls block for the SQLite work (well under a millisecond for a typical batch) and, when another
    process is writing, up to ``BUSY_TIMEOUT``: call them from a worker thread, not an event loop.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        max_bytes: int = 100 * 1024 * 1024,
        claim_ttl: float = 60.0,
        stats: Stats | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.path = self.directory / FILENAME
        self.max_bytes = max_bytes
        self.claim_ttl = claim_ttl
        self.stats = stats or Stats()
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._file_id: tuple[int, int] | None = None  # (st_dev, st_ino) of the file _conn has open
        self._opened = False  # once the file worked, a later failure to reopen it is transient
        self._broken = False
        self._closed = False
        self._pid = os.getpid()
        self._token = _new_token()
        self._log_key = f"spool-error:{id(self)}:{self.path}"
        self._evicted_total = 0
        _live.add(self)
        with self._lock:
            self._connection()  # open now: a bad directory is reported at init, not at the first outage

    @property
    def broken(self) -> bool:
        """True once the spool was found unusable: every method is then a no-op."""
        return self._broken

    # ------------------------------------------------------------------------------------------ API

    def put(self, route: str, events: Sequence[bytes], *, claim: bool = False) -> int | None:
        """Store one batch; its row id, or None when it was not stored (nothing to store, or the spool
        cannot be written). ``claim=True``: the row is born claimed by this process, which is still
        retrying it, so no other sender resends it meanwhile."""
        if not events:
            return None
        blob = b"\n".join(events)
        # to_json never emits a raw newline (JSON escapes them inside strings); anything else would be
        # split into the wrong events on the way out.
        if blob.count(b"\n") != len(events) - 1:
            raise ValueError("spooled events must be compact JSON without raw newlines")
        now = time.time()
        evicted = (0, 0, 0)
        with self._locked():
            conn = self._connection()
            if conn is None:
                return None
            try:
                conn.execute("BEGIN IMMEDIATE")
                cur = conn.execute(
                    "INSERT INTO batches (route, count, bytes, created_at, attempts, claimed_by, claimed_at,"
                    " events) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        route,
                        len(events),
                        len(blob),
                        now,
                        1 if claim else 0,
                        self._token if claim else None,
                        now if claim else None,
                        blob,
                    ),
                )
                row_id = cur.lastrowid
                assert row_id is not None
                evicted = self._evict(conn, row_id, now)
                conn.execute("COMMIT")
            except sqlite3.Error as e:
                self._failed(conn, "storing a batch", e)
                return None
            if evicted[1]:
                self._evicted_total += evicted[1]
        self.stats.incr("spool_writes", len(events))
        if evicted[1]:
            self._report_eviction(*evicted)
        return row_id

    def claim(self, limit: int = 16) -> list[SpooledBatch]:
        """Claim up to ``limit`` batches nobody holds (or whose claim expired), oldest first."""
        if limit <= 0:
            return []
        now = time.time()
        with self._locked():
            conn = self._connection()
            if conn is None:
                return []
            try:
                # IMMEDIATE takes the write lock before reading, so two processes cannot both see a row
                # as free: the second one waits (busy_timeout) and then sees it claimed.
                conn.execute("BEGIN IMMEDIATE")
                _free_dead_claims(conn, self._token)
                rows = conn.execute(_CLAIM, (self._token, now, now - self.claim_ttl, limit)).fetchall()
                conn.execute("COMMIT")
            except sqlite3.Error as e:
                self._failed(conn, "claiming batches", e)
                return []
        rows.sort()  # RETURNING promises no order
        return [
            SpooledBatch(row_id, route, bytes(blob).split(b"\n") if count else [], attempts - 1)
            for row_id, route, attempts, count, blob in rows
        ]

    def touch(self, ids: Iterable[int]) -> None:
        """Renew our claims on ``ids`` (a resend that takes long); claims we lost are left alone."""
        self._update(
            "UPDATE batches SET claimed_at = ? WHERE claimed_by = ? AND id IN ({})",
            (time.time(), self._token),
            ids,
            "renewing claims",
        )

    def delete(self, ids: Iterable[int]) -> None:
        """Forget the batches ``ids`` we hold (PostHog answered 2xx). One whose claim expired and was
        taken by another sender is left to that sender: it resends, and PostHog drops the duplicate."""
        self._update(
            "DELETE FROM batches WHERE claimed_by = ? AND id IN ({})",
            (self._token,),
            ids,
            "deleting sent batches",
        )

    def release(self, ids: Iterable[int]) -> None:
        """Give up our claims on ``ids`` and keep the rows, for the next claim (ours or another's)."""
        self._update(
            "UPDATE batches SET claimed_by = NULL, claimed_at = NULL WHERE claimed_by = ? AND id IN ({})",
            (self._token,),
            ids,
            "releasing claims",
        )

    def pending(self) -> tuple[int, int]:
        """(events, bytes) stored, whoever holds them; (0, 0) when the spool is unusable."""
        with self._locked():
            conn = self._connection()
            if conn is None:
                return (0, 0)
            try:
                events, size = conn.execute("SELECT events, bytes FROM totals WHERE id = 1").fetchone()
            except sqlite3.Error as e:
                self._failed(conn, "reading the totals", e)
                return (0, 0)
        return (int(events), int(size))

    def close(self) -> None:
        """Close the file; the spool is a no-op afterwards. Rows (and claims, until they expire) stay."""
        with self._locked():
            self._closed = True
            self._drop()
        _live.discard(self)

    # ------------------------------------------------------------------------------------ internals

    def _locked(self) -> threading.Lock:
        if self._pid != os.getpid():
            # Forked without os.fork's hooks (a C extension calling fork()): the inherited lock may be
            # held by a thread that does not exist here, and the connection is the parent's.
            with _reset_lock:
                if self._pid != os.getpid():
                    self._after_fork()
        return self._lock

    def _connection(self) -> sqlite3.Connection | None:
        """The open connection (opened on first use, after a fork or after an I/O error); None when the
        spool is closed or unusable. Called with the lock held."""
        if self._broken or self._closed:
            return None
        if self._conn is not None and _file_id(self.path) != self._file_id:
            # SQLite keeps writing to a file deleted under it (a tmp cleaner, a redeploy wiping the
            # directory), and those batches would vanish at exit; a new file at least keeps what follows.
            warn_every(
                self._log_key + ":moved",
                _ERROR_INTERVAL,
                "obs: spool %s was removed or replaced while in use; starting a new one",
                self.path,
            )
            self._drop()
        if self._conn is None:
            try:
                self._conn = _open(self.path)
                self._file_id = _file_id(self.path)
            except (sqlite3.Error, OSError, _Unusable) as e:
                # Busy (other processes kept it locked past the timeout) or, once it has worked, an I/O
                # error: try again on the next call. Anything else will not get better by itself.
                if (isinstance(e, sqlite3.Error) and _is_busy(e)) or (
                    self._opened and isinstance(e, (sqlite3.OperationalError, OSError))
                ):
                    self._report(f"reopening {self.path}", e)
                else:
                    self._disable(e)
                return None
            self._opened = True
        return self._conn

    def _update(self, sql: str, args: tuple[object, ...], ids: Iterable[int], what: str) -> None:
        id_list = list(ids)
        if not id_list:
            return
        with self._locked():
            conn = self._connection()
            if conn is None:
                return
            try:
                conn.execute("BEGIN IMMEDIATE")
                for chunk in _chunks(id_list):
                    conn.execute(sql.format(",".join("?" * len(chunk))), (*args, *chunk))
                conn.execute("COMMIT")
            except sqlite3.Error as e:
                self._failed(conn, what, e)

    def _evict(self, conn: sqlite3.Connection, keep: int, now: float) -> tuple[int, int, int]:
        """Delete the oldest batches but ``keep`` until the payload fits ``max_bytes``; (batches, events,
        bytes) evicted. Runs inside put's transaction."""
        (total,) = conn.execute("SELECT bytes FROM totals WHERE id = 1").fetchone()
        excess = int(total) - self.max_bytes
        if excess <= 0:
            return (0, 0, 0)
        victims: list[int] = []
        events = freed = 0
        for sql in _VICTIMS:
            cur = conn.execute(sql, (keep, now - self.claim_ttl))
            try:
                for row_id, count, size in cur:
                    victims.append(row_id)
                    events += count
                    freed += size
                    if freed >= excess:
                        break
            finally:
                cur.close()  # finish the read before deleting from the same table
            if freed >= excess:
                break
        for chunk in _chunks(victims):
            conn.execute(f"DELETE FROM batches WHERE id IN ({','.join('?' * len(chunk))})", chunk)
        return (len(victims), events, freed)

    def _report_eviction(self, batches: int, events: int, size: int) -> None:
        self.stats.incr("spool_evicted", events)
        warn_every(
            f"spool-evicted:{self.path}",
            _EVICT_INTERVAL,
            "obs: spool %s is over its %d-byte cap (OBS_SPOOL_MAX_BYTES): evicted the oldest %d event(s) "
            "(%d batch(es), %d bytes); %d event(s) evicted by this process so far",
            self.path,
            self.max_bytes,
            events,
            batches,
            size,
            self._evicted_total,
        )

    def _failed(self, conn: sqlite3.Connection, what: str, e: sqlite3.Error) -> None:
        """An operation failed: roll back, then either disable the spool (the file is not a database we
        can trust) or count and report it and reopen on the next call (disk full, I/O error, busy)."""
        with contextlib.suppress(sqlite3.Error):
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        if not isinstance(e, sqlite3.OperationalError):
            self._disable(e)
            return
        self._report(what, e)
        # A fresh connection recovers from a deleted directory or a transient I/O error; waiting on a
        # lock says nothing is wrong with this one.
        if not _is_busy(e):
            self._drop()

    def _report(self, what: str, e: BaseException) -> None:
        self.stats.incr("spool_errors")
        warn_every(
            self._log_key,
            _ERROR_INTERVAL,
            "obs: spool %s: %s failed (%s: %s); undelivered events are not kept on disk until it works "
            "again (check free space and that the directory is writable)",
            self.path,
            what,
            type(e).__name__,
            e,
            level=logging.ERROR,
        )

    def _disable(self, e: BaseException) -> None:
        self._broken = True
        self._drop()
        self.stats.incr("spool_errors")
        warn_every(
            self._log_key,
            _ERROR_INTERVAL,
            "obs: spool disabled, %s is not usable (%s: %s); undelivered events will not be kept on disk. "
            "Point OBS_SPOOL_DIR at a writable directory, or move this file away to start a fresh spool",
            self.path,
            type(e).__name__,
            e,
            level=logging.ERROR,
        )

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    # ----------------------------------------------------------------------------------------- fork

    def _before_fork(self) -> threading.Lock:
        # SQLite must not see a connection cross a fork (its POSIX locks belong to the parent, and the
        # child closing it could checkpoint and delete a WAL the parent is using). So the parent closes
        # it here, with the lock held so no call is half way, and both sides reopen it on next use.
        lock = self._locked()
        lock.acquire()
        self._drop()
        return lock

    def _after_fork(self) -> None:
        """In a child: a fresh lock, claim token and connection. A connection still here came through a
        fork that skipped the hooks; it is the parent's, so it is kept referenced, never closed or used."""
        self._lock = threading.Lock()
        if self._conn is not None:
            _orphans.append(self._conn)
        self._conn = None
        self._pid = os.getpid()
        self._token = _new_token()


def _open(path: Path) -> sqlite3.Connection:
    """Open (creating when needed) the spool file, in WAL mode, at the current schema."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: transactions are the explicit BEGIN IMMEDIATE / COMMIT below, never implicit.
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
        # WAL: senders in other processes read while one writes. synchronous=NORMAL in WAL survives a
        # killed process (the OS has the pages); only a power cut can lose the last commits.
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute(f"PRAGMA journal_size_limit = {_WAL_LIMIT}")
        deadline = time.monotonic() + BUSY_TIMEOUT
        while True:
            try:
                conn.execute("PRAGMA journal_mode = WAL").fetchone()
                _migrate(conn)
                break
            except sqlite3.OperationalError as e:
                # Switching a new file to WAL answers "locked" at once, without waiting on busy_timeout,
                # while another process is creating it too (pre-fork workers starting together).
                if not _is_busy(e) or time.monotonic() > deadline:
                    raise
                time.sleep(random.uniform(0.001, 0.01))
    except BaseException:
        conn.close()
        raise
    return conn


def _migrate(conn: sqlite3.Connection) -> None:
    version = _user_version(conn)
    if version == SCHEMA_VERSION:
        return
    if version > SCHEMA_VERSION:
        raise _Unusable(f"written by a newer obs (schema version {version}, this obs knows {SCHEMA_VERSION})")
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = _user_version(conn)  # another process may have migrated while we waited for the lock
        for step in MIGRATIONS[version:]:
            for sql in step:
                conn.execute(sql)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _is_busy(e: sqlite3.Error) -> bool:
    code = getattr(e, "sqlite_errorcode", None)  # Python 3.11+
    if code is None:
        return "locked" in str(e)
    return code & 0xFF in (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED and their extended codes


def _free_dead_claims(conn: sqlite3.Connection, ours: str) -> None:
    """Claims of senders whose process is gone (SIGKILL, crash) are void at once, not after claim_ttl.

    The pid in a token is only meaningful on this host: a spool directory is shared by the processes of
    one machine (docs/reliability.md). A pid reused since is taken as alive; its claim expires with the TTL.
    """
    holders = conn.execute(
        "SELECT DISTINCT claimed_by FROM batches WHERE claimed_by IS NOT NULL AND claimed_by != ?", (ours,)
    ).fetchall()
    dead = [h for (h,) in holders if not _alive(h)]
    for chunk in _chunks(dead):
        marks = ",".join("?" * len(chunk))
        conn.execute(
            f"UPDATE batches SET claimed_by = NULL, claimed_at = NULL WHERE claimed_by IN ({marks})", chunk
        )


def _alive(token: str) -> bool:
    try:
        os.kill(int(token.split("-", 1)[0]), 0)
    except ProcessLookupError:
        return False
    except (ValueError, OSError):
        return True  # not our token format, or not ours to signal: alive as far as we can tell
    return True


def _new_token() -> str:
    # pid for a human reading the file; the random part because pids are reused and a fork keeps them
    # apart only once the child has its own token.
    return f"{os.getpid()}-{secrets.token_hex(8)}"


def _chunks(items: list[_T]) -> Iterator[list[_T]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


_live: weakref.WeakSet[Spool] = weakref.WeakSet()
_reset_lock = threading.Lock()
# Connections inherited through a fork that bypassed os.fork's hooks: referenced forever, because
# garbage-collecting one would close it, and closing it in the child can damage the parent's WAL.
_orphans: list[sqlite3.Connection] = []
# Locks taken by _before_fork, released on the parent's side (the child replaces them).
_held: list[threading.Lock] = []


def _before_fork() -> None:
    for spool in list(_live):
        _held.append(spool._before_fork())


def _after_fork_in_parent() -> None:
    while _held:
        _held.pop().release()


def _after_fork_in_child() -> None:
    global _reset_lock
    _reset_lock = threading.Lock()
    _held.clear()
    for spool in list(_live):
        spool._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
    )
