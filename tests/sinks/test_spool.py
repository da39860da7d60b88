"""The durable spool's storage (obs/sinks/_spool.py): real SQLite files, real processes sharing them."""

from __future__ import annotations

import json
import logging
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic_core import to_json

from obs._stats import Stats
from obs.sinks import _spool
from obs.sinks._spool import FILENAME, Spool, SpooledBatch


def _event(i: int, tag: str = "e", pad: int = 0) -> bytes:
    """One event encoded the way the PostHog sink encodes it."""
    return to_json(
        {
            "event": "clicked",
            "distinct_id": f"user-{i % 7}",
            "properties": {"i": i, "text": "héllo ✓\nnext line", "pad": "x" * pad},
            "timestamp": f"2024-05-01T12:{i // 60 % 60:02d}:{i % 60:02d}.{i:06d}+00:00",
            "uuid": f"0190a1b2-c3d4-7e5f-8a6b-{tag}{i:0{12 - len(tag)}d}",
        }
    )


def _stat(stats: Stats, name: str) -> int:
    return int(getattr(stats, name, 0))


class Clock:
    """Stands in for the time module inside _spool, so claim expiry is tested without sleeping."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def time(self) -> float:
        return self.now

    def __getattr__(self, name: str) -> Any:  # monotonic, sleep: the real ones
        return getattr(time, name)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(_spool, "time", c)
    return c


def _errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "obs" and r.levelno >= logging.ERROR]


def _ids(directory: Path) -> list[int]:
    conn = sqlite3.connect(directory / FILENAME)
    try:
        return [i for (i,) in conn.execute("SELECT id FROM batches ORDER BY id")]
    finally:
        conn.close()


def _integrity(directory: Path) -> str:
    conn = sqlite3.connect(directory / FILENAME)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


# --------------------------------------------------------------------------------- child processes

CHILD = r"""
import ctypes, json, os, sys, time
from pathlib import Path
from obs._stats import Stats
from obs.sinks import _spool
from obs.sinks._spool import Spool

mode, args = sys.argv[1], json.loads(sys.argv[2])
stats = Stats()

def say(obj):
    print(json.dumps(obj), flush=True)

def barrier():
    say("ready")
    go, deadline = Path(args["go"]), time.monotonic() + 10
    while not go.exists():
        if time.monotonic() > deadline:
            sys.exit("no go signal")
        time.sleep(0.001)

def event(tag, i, j):
    return json.dumps({"uuid": f"{tag}-{i}-{j}", "timestamp": "2024-05-01T12:00:00+00:00"},
                      separators=(",", ":")).encode()

if mode == "claim":  # claim until nothing is left, report every id claimed
    spool = Spool(args["dir"], stats=stats)
    barrier()
    ids, deadline = [], time.monotonic() + 10
    for _ in range(args["rounds"]):
        got = spool.claim(args["limit"])
        if not got or time.monotonic() > deadline:
            break
        ids += [b.id for b in got]
        time.sleep(0.0002)  # let a slower starter in, so the claims really interleave
    say({"ids": ids, "errors": stats.spool_errors})
elif mode == "put":  # open a spool nobody created yet, at the same moment as the others, and fill it
    barrier()
    spool = Spool(args["dir"], stats=stats)
    ids = [spool.put("batch", [event(args["tag"], i, j) for j in range(args["events"])])
           for i in range(args["batches"])]
    say({"ids": ids, "errors": stats.spool_errors})
elif mode == "hold":  # claim everything, then wait to be killed
    spool = Spool(args["dir"], stats=stats)
    got = spool.claim(1000)
    say({"ids": [b.id for b in got], "at": time.time()})
    time.sleep(30)
elif mode == "churn":  # write as fast as possible, report each committed batch, until killed
    spool = Spool(args["dir"], stats=stats)
    for i in range(args["max"]):
        say(spool.put("batch", [event("churn", i, j) for j in range(args["events"])]))
    time.sleep(30)
elif mode == "fork":  # fork with or without os.fork's hooks; both sides keep using the spool
    spool = Spool(args["dir"], stats=stats)
    first = spool.put("batch", [event("parent", 0, 0)])
    token = spool._token
    r, w = os.pipe()
    pid = os.fork() if args["hooks"] else ctypes.PyDLL(None).fork()
    if pid == 0:
        code = 1
        try:
            second = spool.put("batch", [event("child", 0, 0)])
            got = spool.claim()
            spool.delete([second])
            os.write(w, json.dumps({
                "second": second, "claimed": [b.id for b in got], "errors": stats.spool_errors,
                "new_token": spool._token not in (None, token), "orphans": len(_spool._orphans),
                "pending": spool.pending(),
            }).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    child = json.loads(os.read(r, 65536))
    _, status = os.waitpid(pid, 0)
    third = spool.put("batch", [event("parent", 1, 0)])
    say({"first": first, "third": third, "child": child, "status": status, "pending": spool.pending(),
         "claimed": [b.id for b in spool.claim()], "errors": stats.spool_errors,
         "orphans": len(_spool._orphans)})
"""


class Child:
    """A Python process running CHILD; its stdout lines are JSON, read on a thread with timeouts."""

    def __init__(self, mode: str, **args: Any) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, mode, json.dumps(args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def read(self, timeout: float = 10.0) -> Any:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no output from the child within {timeout}s") from None
        if line is None:
            self.proc.wait(5)
            assert self.proc.stderr is not None
            raise AssertionError(f"child exited {self.proc.returncode}: {self.proc.stderr.read()}")
        return json.loads(line)

    def rest(self) -> list[Any]:
        """Every line still to come, once the process has ended."""
        self._reader.join(10)
        out = []
        while (line := self.lines.get_nowait()) is not None:
            out.append(json.loads(line))
        return out

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


@pytest.fixture
def children() -> Iterator[list[Child]]:
    started: list[Child] = []
    yield started
    for c in started:
        c.kill()
        for stream in (c.proc.stdout, c.proc.stderr):
            if stream is not None:
                stream.close()


def _start_together(children: list[Child], go: Path) -> None:
    for c in children:
        assert c.read() == "ready"
    go.touch()


# ------------------------------------------------------------------------------------------ basics


def test_roundtrip_keeps_events_byte_identical_oldest_first(tmp_path: Path) -> None:
    stats = Stats()
    spool = Spool(tmp_path / "spool", stats=stats)
    batches = [[_event(i * 10 + j) for j in range(n)] for i, n in enumerate((3, 1, 5))]
    ids = [spool.put("batch", b) for b in batches]
    ai = spool.put("ai", [_event(99, tag="ai")])
    assert all(isinstance(i, int) for i in (*ids, ai))
    assert ids == sorted(ids) and ai is not None and ai > ids[-1]
    size = sum(len(b"\n".join(b)) for b in batches) + len(_event(99, tag="ai"))
    assert spool.pending() == (10, size)
    assert _stat(stats, "spool_writes") == 10

    got = spool.claim(limit=3)  # the oldest three, in order
    assert [b.id for b in got] == ids
    assert [b.events for b in got] == batches  # same bytes: uuid, timestamp, escapes untouched
    assert all(b.route == "batch" and b.attempts == 0 for b in got)
    assert spool.claim(limit=3) == [SpooledBatch(ai, "ai", [_event(99, tag="ai")], 0)]
    assert spool.claim() == []  # everything is held (by us), nothing expired
    assert spool.pending() == (10, size)  # claims do not hide rows from pending()

    spool.delete([ids[0], ai])
    spool.release([ids[1]])
    assert spool.pending() == (10 - 3 - 1, size - len(b"\n".join(batches[0])) - len(_event(99, tag="ai")))
    again = spool.claim()
    assert [(b.id, b.events, b.attempts) for b in again] == [(ids[1], batches[1], 1)]
    spool.delete([ids[1], ids[2]])
    assert spool.pending() == (0, 0)
    assert spool.claim() == []
    assert _stat(stats, "spool_errors") == 0
    spool.close()
    assert spool.put("batch", [_event(1)]) is None  # closed: a no-op


def test_rows_survive_reopening_and_ids_are_never_reused(tmp_path: Path) -> None:
    first = Spool(tmp_path)
    a = first.put("batch", [_event(1)])
    b = first.put("batch", [_event(2)])
    assert a is not None and b is not None
    first.claim(1)
    first.delete([b])  # b is not claimed by us: kept
    first.delete([a])
    first.close()

    second = Spool(tmp_path)
    c = second.put("batch", [_event(3)])
    assert c is not None and c > b  # a deleted id is never handed out again
    assert [x.id for x in second.claim()] == [b, c]
    assert second.pending() == (2, len(_event(2)) + len(_event(3)))


def test_put_rejects_what_it_could_not_give_back(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    assert spool.put("batch", []) is None
    with pytest.raises(ValueError, match="newlines"):
        spool.put("batch", [b'{"a":\n1}'])
    assert spool.pending() == (0, 0)


def test_claims_expire_unless_touched(tmp_path: Path, clock: Clock) -> None:
    a = Spool(tmp_path, claim_ttl=30)
    b = Spool(tmp_path, claim_ttl=30)  # another sender: its own claim token
    held = a.put("batch", [_event(1)], claim=True)  # born claimed by a, which is still retrying it
    free = a.put("batch", [_event(2)])
    assert [x.id for x in b.claim()] == [free]
    b.delete([free])

    clock.now += 20
    a.touch([held])
    clock.now += 20  # 40 s after the put, 20 s after the touch
    assert b.claim() == []
    b.release([held])  # not b's claim: nothing happens
    b.delete([held])
    assert a.pending()[0] == 1

    clock.now += 11  # 31 s after a's touch: expired
    assert [(x.id, x.attempts) for x in b.claim()] == [(held, 1)]  # a's put counted as a claim
    a.delete([held])  # a lost it to b: b resends it and deletes it, a cannot
    a.release([held])
    a.touch([held])
    assert a.pending()[0] == 1
    clock.now += 20
    assert a.claim() == []  # a's touch did not renew b's claim
    clock.now += 11
    assert [(x.id, x.attempts) for x in a.claim()] == [(held, 2)]


def test_put_is_one_cheap_transaction(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    batch = [_event(i, pad=300) for i in range(100)]
    times = []
    for _ in range(200):
        t = time.perf_counter()
        assert spool.put("batch", batch) is not None
        times.append(time.perf_counter() - t)
    times.sort()
    # Measured around 0.15 ms; this bound only catches a per-event row or an fsync per put.
    assert times[len(times) // 2] < 0.002
    conn = sqlite3.connect(tmp_path / FILENAME)
    try:
        assert conn.execute("SELECT count(*) FROM batches").fetchone() == (200,)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("PRAGMA user_version").fetchone() == (_spool.SCHEMA_VERSION,)
    finally:
        conn.close()


def test_threads_share_one_spool(tmp_path: Path) -> None:
    stats = Stats()
    spool = Spool(tmp_path, stats=stats)
    results: list[int | None] = []

    def work(t: int) -> None:
        for i in range(50):
            results.append(spool.put("batch", [_event(t * 100 + i)]))
            spool.claim(2)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(results) == 200 and None not in results and len(set(results)) == 200
    assert spool.pending()[0] == 200
    assert _stat(stats, "spool_errors") == 0


# --------------------------------------------------------------------------------------------- cap


def test_cap_evicts_oldest_unclaimed_first_and_never_the_new_row(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    batch = [_event(i, pad=100) for i in range(10)]
    size = len(b"\n".join(batch))
    stats = Stats()
    spool = Spool(tmp_path, max_bytes=10 * size, stats=stats)
    with caplog.at_level(logging.WARNING, logger="obs"):
        ids = [spool.put("batch", batch) for _ in range(15)]
        assert None not in ids
        assert spool.pending() == (100, 10 * size)
        assert _stat(stats, "spool_evicted") == 50  # the events of the five oldest batches
        assert [b.id for b in spool.claim(limit=100)] == ids[5:]

        # Rows a sender is working on go last: the oldest unclaimed row is evicted, not the oldest row.
        spool.release(ids[6:8])
        newest = spool.put("batch", batch)
        assert newest is not None
        assert _ids(tmp_path) == [ids[5], *ids[7:], newest]

        # A batch over the whole cap evicts everything else, live claims last, and is still kept.
        big = [_event(i, pad=100) for i in range(150)]
        huge = spool.put("batch", big)
    assert huge is not None and _ids(tmp_path) == [huge]
    assert spool.pending() == (150, len(b"\n".join(big)))
    assert _stat(stats, "spool_evicted") == 50 + 10 + 100
    warnings = [r.getMessage() for r in caplog.records if "evicted" in r.getMessage()]
    assert len(warnings) == 1  # rate-limited
    assert "evicted the oldest 10 event(s) (1 batch(es)" in warnings[0]
    assert f"{10 * size}-byte cap" in warnings[0]


# --------------------------------------------------------------------------------- broken storage


@pytest.mark.parametrize(
    "content",
    [bytes(range(256)) * 64, b"id,name\n1,not a database\n" * 200],
    ids=["garbage", "text-file"],
)
def test_corrupt_file_is_reported_once_and_left_alone(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / FILENAME).write_bytes(content)
    stats = Stats()
    with caplog.at_level(logging.DEBUG, logger="obs"):
        spool = Spool(tmp_path, stats=stats)
        assert spool.broken
        assert spool.put("batch", [_event(1)]) is None
        assert spool.put("ai", [_event(2)], claim=True) is None
        assert spool.claim() == []
        assert spool.pending() == (0, 0)
        spool.touch([1])
        spool.delete([1])
        spool.release([1])
        spool.close()
    errors = _errors(caplog)
    assert len(errors) == 1
    assert str(tmp_path / FILENAME) in errors[0].getMessage()
    assert "move this file away" in errors[0].getMessage()
    assert _stat(stats, "spool_errors") == 1
    assert _stat(stats, "spool_writes") == 0
    assert (tmp_path / FILENAME).read_bytes() == content  # the user's file is not touched


def _under_a_file(tmp: Path) -> Path:
    (tmp / "file").write_text("x")
    return tmp / "file" / "spool"


def _db_is_a_directory(tmp: Path) -> Path:
    (tmp / "spool" / FILENAME).mkdir(parents=True)
    return tmp / "spool"


def _dir_is_a_file(tmp: Path) -> Path:
    (tmp / "spool").write_text("x")
    return tmp / "spool"


@pytest.mark.parametrize("where", [_under_a_file, _db_is_a_directory, _dir_is_a_file])
def test_unwritable_location_is_reported_once(
    tmp_path: Path, where: Any, caplog: pytest.LogCaptureFixture
) -> None:
    directory = where(tmp_path)
    stats = Stats()
    with caplog.at_level(logging.DEBUG, logger="obs"):
        spool = Spool(directory, stats=stats)
        for _ in range(3):
            assert spool.put("batch", [_event(1)]) is None
            assert spool.claim() == []
        assert spool.pending() == (0, 0)
        spool.delete([1])
    errors = _errors(caplog)
    assert len(errors) == 1 and str(directory) in errors[0].getMessage()
    assert "OBS_SPOOL_DIR" in errors[0].getMessage()
    assert _stat(stats, "spool_errors") == 1


def test_corruption_found_mid_way_disables_the_spool(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = Spool(tmp_path)
    for i in range(50):
        spool.put("batch", [_event(i, pad=2000)] * 5)
    spool.close()  # the last connection checkpoints the WAL into the file
    path = tmp_path / FILENAME
    with path.open("r+b") as f:  # keep the header page, scramble the tables
        f.seek(4096)
        f.write(b"\xde\xad" * (path.stat().st_size // 2))
    stats = Stats()
    with caplog.at_level(logging.DEBUG, logger="obs"):
        again = Spool(tmp_path, stats=stats)
        assert not again.broken  # the header still says it is our spool
        assert again.put("batch", [_event(1)]) is None
        assert again.broken
        assert again.claim() == [] and again.pending() == (0, 0)
    assert len(_errors(caplog)) == 1 and "malformed" in _errors(caplog)[0].getMessage()
    assert _stat(stats, "spool_errors") == 1


def test_file_written_by_a_newer_version_is_not_touched(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    Spool(tmp_path).close()
    conn = sqlite3.connect(tmp_path / FILENAME)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with caplog.at_level(logging.DEBUG, logger="obs"):
        spool = Spool(tmp_path)
        assert spool.broken and spool.put("batch", [_event(1)]) is None
    assert len(_errors(caplog)) == 1 and "newer obs" in _errors(caplog)[0].getMessage()


def test_a_deleted_spool_file_is_recreated(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    directory = tmp_path / "spool"
    spool = Spool(directory)
    old = spool.put("batch", [_event(1)])
    for p in directory.iterdir():  # a tmp cleaner, or a redeploy wiping the directory
        p.unlink()
    directory.rmdir()
    with caplog.at_level(logging.WARNING, logger="obs"):
        new = spool.put("batch", [_event(2)])
    assert new is not None and old is not None and new != old
    assert (directory / FILENAME).exists()
    assert Spool(directory).pending() == (1, len(_event(2)))  # written to the new file, not the ghost
    assert any("removed or replaced" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------------------------- processes


def test_processes_claiming_at_once_never_share_a_row(tmp_path: Path, children: list[Child]) -> None:
    spool = Spool(tmp_path)
    ids = [spool.put("batch", [_event(i)]) for i in range(2000)]
    go = tmp_path / "go"
    children += [Child("claim", dir=str(tmp_path), limit=3, rounds=2000, go=str(go)) for _ in range(3)]
    _start_together(children, go)
    results = [c.read() for c in children]
    claimed = [i for r in results for i in r["ids"]]
    assert sorted(claimed) == ids  # every row claimed exactly once, none twice
    assert all(r["errors"] == 0 for r in results)
    assert sum(1 for r in results if r["ids"]) >= 2  # they really did run side by side
    assert spool.claim() == []


def test_processes_putting_at_once_lose_nothing(tmp_path: Path, children: list[Child]) -> None:
    directory = tmp_path / "not" / "created" / "yet"
    go = tmp_path / "go"
    children += [
        Child("put", dir=str(directory), tag=f"p{n}", batches=50, events=10, go=str(go)) for n in range(4)
    ]
    _start_together(children, go)
    results = [c.read() for c in children]
    assert all(r["errors"] == 0 and None not in r["ids"] and len(r["ids"]) == 50 for r in results)
    assert len({i for r in results for i in r["ids"]}) == 200
    spool = Spool(directory)
    assert spool.pending()[0] == 4 * 50 * 10
    uuids = {json.loads(e)["uuid"] for b in spool.claim(limit=1000) for e in b.events}
    assert uuids == {f"p{n}-{i}-{j}" for n in range(4) for i in range(50) for j in range(10)}
    assert _integrity(directory) == "ok"


def test_a_killed_senders_claims_are_free_at_once(tmp_path: Path, children: list[Child]) -> None:
    spool = Spool(tmp_path, claim_ttl=60)
    ids = [spool.put("batch", [_event(i)]) for i in range(3)]
    holder = Child("hold", dir=str(tmp_path))
    children.append(holder)
    held = holder.read()
    assert held["ids"] == ids
    holder.kill()
    assert holder.proc.returncode == -signal.SIGKILL
    got = spool.claim()  # its process is gone: no need to wait for claim_ttl (60 s)
    assert [(b.id, b.attempts) for b in got] == [(i, 1) for i in ids]
    assert [b.events for b in got] == [[_event(i)] for i in range(3)]


def test_killed_during_heavy_writes_the_next_process_reads_everything_committed(
    tmp_path: Path, children: list[Child]
) -> None:
    writer = Child("churn", dir=str(tmp_path), events=20, max=100_000)
    children.append(writer)
    committed = [writer.read() for _ in range(300)]
    writer.kill()  # mid-stream: it is still writing as fast as it can
    committed += writer.rest()  # each line was printed after its put committed
    assert all(isinstance(i, int) for i in committed)
    wal = tmp_path / (FILENAME + "-wal")
    assert wal.exists() and wal.stat().st_size > 0  # the commits live in the WAL: recovery is needed

    spool = Spool(tmp_path)
    got = spool.claim(limit=100_000)
    events, _ = spool.pending()
    assert events == 20 * len(got) >= 20 * len(committed)
    stored = {b.id for b in got}
    assert set(committed) <= stored
    for b in got:
        assert len(b.events) == 20
        assert {json.loads(e)["uuid"].rsplit("-", 1)[1] for e in b.events} == {str(j) for j in range(20)}
    assert _integrity(tmp_path) == "ok"


@pytest.mark.parametrize("hooks", [True, False], ids=["os.fork", "fork-without-hooks"])
def test_fork_child_uses_its_own_connection(tmp_path: Path, hooks: bool, children: list[Child]) -> None:
    proc = Child("fork", dir=str(tmp_path), hooks=hooks)
    children.append(proc)
    out = proc.read()
    child = out["child"]
    assert out["status"] == 0
    assert child["errors"] == 0 and child["new_token"]
    assert child["claimed"] == [out["first"], child["second"]]  # the parent's row and its own
    assert child["pending"] == [1, len(b'{"uuid":"parent-0-0","timestamp":"2024-05-01T12:00:00+00:00"}')]
    # Without os.fork's hooks the parent's connection came along: kept, never used or closed.
    assert child["orphans"] == (0 if hooks else 1)
    # The parent goes on: the child has exited, so its claim on the parent's row is void and the parent
    # takes it back with its own new row.
    assert out["errors"] == 0 and out["orphans"] == 0
    assert out["claimed"] == [out["first"], out["third"]]
    assert out["pending"][0] == 2
    assert _integrity(tmp_path) == "ok"
