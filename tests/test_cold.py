"""The cold exit post (obs/_cold.py): a short process delivers without starting the worker, and falls back
to it for everything the post cannot do.

Each test runs a real short program in a fresh interpreter (`run_py`) against the capture server, reached by
host name. The program reports, after obs's exit flush, which heavy modules it loaded (none: the cold post
sent; anyio and the worker: the worker did) and its counters.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path
from typing import Any

from tests.capture_server import CaptureServer, Reply, free_port
from tests.procs import run_py
from tests.reliability.conftest import assert_accounted

HEAVY = ("anyio", "asyncio", "httpx", "pydantic_core", "obs._worker")
# Runs first: its exit hook is registered before obs's exit flush (obs.init registers that), so it runs after
# it and sees what the flush did.
PROBE = f"""
import atexit, json, sys
import obs

@atexit.register
def _report():
    stats = obs.get_client().stats()
    loaded = sorted(m for m in {HEAVY!r} if m in sys.modules)
    ints = {{k: v for k, v in stats.items() if type(v) is int}}
    print(json.dumps({{"loaded": loaded, "stats": ints}}), flush=True)
"""


def _run(code: str, server: CaptureServer | str, **env: str) -> tuple[list[str], dict[str, Any], str]:
    """Run ``code`` after the probe; (heavy modules loaded at exit, counters at exit, stdout before them)."""
    host = server if isinstance(server, str) else server.host_url
    out = run_py(PROBE + code, {"POSTHOG_API_KEY": "phc_cold", "POSTHOG_HOST": host, **env})
    assert out.returncode == 0, out.stderr
    *before, last = out.stdout.splitlines()
    report = json.loads(last)
    assert_accounted(report["stats"])
    return report["loaded"], report["stats"], "\n".join(before) + out.stderr


CAPTURE_ONE = """
obs.init()
obs.capture("cold start", {"n": 1}, distinct_id="u1")
"""


def test_a_short_program_delivers_at_exit_without_the_worker(server: CaptureServer) -> None:
    loaded, stats, _ = _run(CAPTURE_ONE, server)
    assert loaded == []  # no event loop, no httpx, no pydantic: the standard library sent it
    assert (stats["captured"], stats["sent"], stats["queued"], stats["in_flight"]) == (1, 1, 1, 0)
    (req,) = server.received
    assert req.path == "/batch/" and req.status == 200
    assert req.headers["content-type"] == "application/json"
    assert req.headers["user-agent"].startswith("obs-python/")
    body = req.body
    assert body["api_key"] == "phc_cold" and body["sent_at"] and "historical_migration" not in body
    (event,) = body["batch"]
    assert (event["event"], event["distinct_id"], event["properties"]["n"]) == ("cold start", "u1", 1)
    assert event["properties"]["$lib"] == "obs" and event["uuid"] and event["timestamp"]


def test_flush_and_shutdown_in_a_short_program(server: CaptureServer) -> None:
    loaded, stats, out = _run(
        """
obs.init()
obs.capture("a", distinct_id="u1")
print("flush", obs.flush(), flush=True)
obs.capture("b", distinct_id="u1")
obs.capture("c", distinct_id="u1")
print("shutdown", obs.shutdown(), flush=True)
print("late", obs.capture("late", distinct_id="u1"), flush=True)
""",
        server,
    )
    assert "flush True" in out and "shutdown True" in out and "late None" in out
    assert loaded == []
    assert [len(r.events) for r in server.received] == [1, 2]  # flush sent a; shutdown, b and c
    assert [e["event"] for e in server.events()] == ["a", "b", "c"]
    assert (stats["sent"], stats["dropped_closed"], stats["captured"]) == (3, 1, 4)


def test_historical_migration_and_gzip_are_in_the_cold_request(server: CaptureServer) -> None:
    loaded, stats, _ = _run(CAPTURE_ONE, server, OBS_GZIP="1", OBS_HISTORICAL_MIGRATION="1")
    assert loaded == [] and stats["sent"] == 1
    (req,) = server.received
    assert req.headers["content-encoding"] == "gzip"
    body = json.loads(gzip.decompress(req.raw))
    assert body["historical_migration"] is True and body["batch"][0]["event"] == "cold start"


def test_capture_ai_events_go_to_the_ai_route(server: CaptureServer) -> None:
    loaded, stats, _ = _run(
        """
obs.init()
obs.capture("plain", distinct_id="u1")
obs.get_client().capture_ai("$ai_generation", {"$ai_model": "m"}, distinct_id="u1")
""",
        server,
    )
    assert loaded == [] and stats["sent"] == 2
    assert [e["event"] for e in server.events("/batch/")] == ["plain"]
    assert [e["event"] for e in server.events("/i/v0/ai/batch/")] == ["$ai_generation"]


def test_capture_v1_is_sent_cold_with_its_headers(server: CaptureServer) -> None:
    loaded, stats, _ = _run(CAPTURE_ONE, server, OBS_CAPTURE_MODE="v1", OBS_GZIP="1")
    assert loaded == [] and stats["sent"] == 1
    (req,) = server.received
    assert req.path == "/i/v1/analytics/events" and req.status == 200  # the server checked its shape
    assert req.headers["authorization"] == "Bearer phc_cold" and req.headers["posthog-attempt"] == "1"
    assert req.headers["content-encoding"] == "gzip"
    (event,) = req.delivered
    assert event["event"] == "cold start" and "$lib" not in event["properties"]


def test_capture_v1_verdicts_leave_retry_and_drop_to_the_worker(server: CaptureServer) -> None:
    def cold(event: dict[str, Any]) -> Any:
        return {"r": "retry", "d": ("drop", "billing_limit_exceeded")}.get(event["properties"]["k"])

    def worker(event: dict[str, Any]) -> Any:
        return ("drop", "billing_limit_exceeded") if event["properties"]["k"] == "d" else None

    server.script(Reply(results=cold), Reply(results=worker))
    loaded, stats, _ = _run(
        """
obs.init()
for k in ("ok", "r", "d"):
    obs.capture("v1", {"k": k}, distinct_id="u1")
""",
        server,
        OBS_CAPTURE_MODE="v1",
    )
    assert "obs._worker" in loaded
    first, second = server.received
    assert [e["properties"]["k"] for e in first.delivered] == ["ok"]
    assert [e["properties"]["k"] for e in second.events] == ["r", "d"]  # sent again by the worker
    assert Counter(e["properties"]["k"] for e in server.events()) == {"ok": 1, "r": 1}
    # Each counted once: "ok" by the cold post, "r" and the drop (by its reason) by the worker.
    assert (stats["sent"], stats["dropped_rejected"], stats["captured"]) == (2, 1, 3)


def test_a_5xx_hands_over_to_the_worker_which_retries_and_delivers(server: CaptureServer) -> None:
    server.script(503)  # the cold post's answer; the worker's retry gets the default 200
    loaded, stats, _ = _run(CAPTURE_ONE, server)
    assert "anyio" in loaded and "obs._worker" in loaded
    assert [r.status for r in server.received] == [503, 200]
    assert server.received[0].events == server.received[1].events  # the same event, same uuid
    assert (stats["captured"], stats["sent"], stats["queued"]) == (1, 1, 1)  # counted once


def test_a_failed_flush_hands_over_and_still_answers_true(server: CaptureServer) -> None:
    server.script(Reply(close=True))  # the connection drops without an answer
    loaded, stats, out = _run(
        """
obs.init()
obs.capture("a", distinct_id="u1")
print("flush", obs.flush(10), flush=True)
""",
        server,
    )
    assert "flush True" in out and "obs._worker" in loaded
    assert [e["event"] for e in server.events()] == ["a"] and stats["sent"] == 1


def test_unreachable_with_a_spool_then_the_next_run_resends_by_the_worker(
    server: CaptureServer, tmp_path: Path
) -> None:
    spool = {"OBS_SPOOL_DIR": str(tmp_path), "OBS_SHUTDOWN_TIMEOUT": "3"}
    loaded, stats, _ = _run(CAPTURE_ONE, f"http://localhost:{free_port()}", **spool)
    assert "obs._worker" in loaded  # the cold post failed: the worker took over
    assert (stats["spooled"], stats["sent"]) == (1, 0)
    assert server.received == []
    # The next run finds the spooled event: the worker starts at once (no cold post) and re-sends it.
    loaded, stats, _ = _run(
        """
obs.init()
obs.capture("second run", distinct_id="u1")
""",
        server,
        **spool,
    )
    assert "obs._worker" in loaded
    assert Counter(e["event"] for e in server.events()) == {"cold start": 1, "second run": 1}
    assert stats["spool_sent"] == 1 and stats["sent"] == 1 and stats["spool_pending"] == 0


def test_an_empty_spool_does_not_prevent_the_cold_post(server: CaptureServer, tmp_path: Path) -> None:
    loaded, stats, _ = _run(CAPTURE_ONE, server, OBS_SPOOL_DIR=str(tmp_path))
    assert loaded == [] and stats["sent"] == 1


def test_a_proxy_variable_leaves_sending_to_httpx(server: CaptureServer) -> None:
    # httpx honours it (any case); the cold post does not know proxies, so the worker sends.
    loaded, stats, _ = _run(CAPTURE_ONE, server, no_proxy="localhost,127.0.0.1")
    assert "httpx" in loaded and stats["sent"] == 1
    assert [r.status for r in server.received] == [200]


def test_certificate_variables_do_not_matter_for_plain_http(server: CaptureServer) -> None:
    loaded, stats, _ = _run(CAPTURE_ONE, server, SSL_CERT_FILE="/nonexistent.pem")
    assert loaded == [] and stats["sent"] == 1


def test_nan_is_left_out_as_the_worker_does(server: CaptureServer) -> None:
    loaded, stats, _ = _run(
        """
obs.init()
obs.capture("nan", {"x": float("nan"), "ok": 1}, distinct_id="u1")
""",
        server,
    )
    assert loaded == []  # the shared builder leaves NaN out: nothing the cold post cannot encode
    (event,) = server.events()
    assert "x" not in event["properties"] and event["properties"]["ok"] == 1
    assert stats["properties_dropped"] == 1 and stats["sent"] == 1


def test_a_lone_surrogate_is_left_to_the_worker_which_repairs_it(server: CaptureServer) -> None:
    loaded, stats, _ = _run(
        """
obs.init()
obs.capture("bad utf-8", {"name": "a\\udcff", "obj": object()}, distinct_id="u1")
""",
        server,
    )
    assert "obs._worker" in loaded  # the cold post could not encode it: nothing sent, the worker took over
    assert [r.status for r in server.received] == [200]
    (event,) = server.events()
    assert event["properties"]["name"] == "a\ufffd"
    # Counted once, though it was built twice: str(object()) by the builder, U+FFFD by the worker.
    assert stats["properties_coerced"] == 2 and stats["sent"] == 1


def test_a_body_over_max_batch_bytes_is_left_to_the_worker(server: CaptureServer) -> None:
    loaded, stats, _ = _run(
        """
obs.init()
for i in range(10):
    obs.capture("big", {"pad": "x" * 400, "i": i}, distinct_id="u1")
""",
        server,
        OBS_MAX_BATCH_BYTES="2048",
    )
    assert "obs._worker" in loaded
    assert sorted(e["properties"]["i"] for e in server.events()) == list(range(10))
    assert stats["sent"] == 10 and all(len(r.raw) <= 2048 for r in server.received)


def test_a_process_that_lives_past_flush_interval_sends_by_the_worker(server: CaptureServer) -> None:
    loaded, stats, out = _run(
        """
import time
obs.init(flush_interval=0.2)
obs.capture("lived", distinct_id="u1")
deadline = time.monotonic() + 20
while obs.get_client().stats()["sent"] < 1 and time.monotonic() < deadline:
    time.sleep(0.05)
print("sent before exit", obs.get_client().stats()["sent"], flush=True)
""",
        server,
    )
    assert "sent before exit 1" in out  # no flush was asked for: the worker started on its own and sent
    assert "anyio" in loaded and "obs._worker" in loaded
    assert [e["event"] for e in server.events()] == ["lived"] and stats["sent"] == 1


def test_flush_at_starts_the_worker_at_once(server: CaptureServer) -> None:
    loaded, stats, out = _run(
        """
import time
obs.init(flush_at=5, flush_interval=60)
for i in range(5):
    obs.capture("e", {"i": i}, distinct_id="u1")
deadline = time.monotonic() + 20
while obs.get_client().stats()["sent"] < 5 and time.monotonic() < deadline:
    time.sleep(0.05)
print("sent before exit", obs.get_client().stats()["sent"], flush=True)
""",
        server,
    )
    assert "sent before exit 5" in out and "obs._worker" in loaded and stats["sent"] == 5


FORK_DURING_WORKER_IMPORT = """
import os, threading, time

importing = threading.Event()

class SlowAnyio:
    # Makes the starter thread's import of the worker (anyio first) take long enough for a fork to land in it.
    def find_spec(self, name, path=None, target=None):
        if name == "anyio" and threading.current_thread() is not threading.main_thread():
            importing.set()
            time.sleep(0.5)
        return None

sys.meta_path.insert(0, SlowAnyio())
obs.init(flush_at=1, flush_interval=60)
obs.capture("parent", distinct_id="parent")  # flush_at reached: the starter imports the worker now
assert importing.wait(10)
pid = os.fork()  # the before-fork hook waits for that import to finish
if pid == 0:
    os.environ["NO_PROXY"] = "example.invalid"  # no cold post: the child must import and run the worker
    obs.capture("child", distinct_id="child")
    ok = obs.flush(10)
    os._exit(0 if ok and "anyio" in sys.modules else 3)
_, status = os.waitpid(pid, 0)
print("child", os.waitstatus_to_exitcode(status), flush=True)
"""


def test_fork_while_the_starter_imports_the_worker(server: CaptureServer) -> None:
    # A fork in the middle of that import would leave the child a half-imported anyio whose import lock no
    # thread releases: the child's worker would hang importing it, and its flush time out.
    loaded, stats, out = _run(FORK_DURING_WORKER_IMPORT, server)
    assert "child 0" in out, out
    assert server.wait_for_events(2, timeout=10)
    assert Counter(e["event"] for e in server.events()) == {"parent": 1, "child": 1}
    assert stats["sent"] == 1 and "obs._worker" in loaded  # the parent's own, by its worker
