"""The durable spool with real processes: SIGKILL during an outage, shared directories, exit timeouts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import obs
from obs._client import Client
from tests.capture_server import CaptureServer, Reply, free_port
from tests.reliability.conftest import ROOT, assert_accounted, run_py

PRODUCER = """
import sys, time, obs
n, ids_file = int(sys.argv[1]), sys.argv[2]
ids = [obs.capture("spooled", {"i": i}, distinct_id="u") for i in range(n)]
open(ids_file, "w").write("\\n".join(ids))
print("captured", flush=True)
time.sleep(120)  # killed long before this ends
"""

DRAIN = """
import json, sys, time, obs
client = obs.init()
deadline = time.monotonic() + 30
while time.monotonic() < deadline and client.stats()["spool_pending"]:
    time.sleep(0.05)
print(json.dumps(client.stats()))
"""


def _env(host: str, spool: Path, **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),
        "POSTHOG_API_KEY": "phc_spool",
        "POSTHOG_HOST": host,
        "OBS_SPOOL_DIR": str(spool),
        **extra,
    }


def _start(code: str, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigkill_during_an_outage_loses_nothing_the_next_process_sends_it(tmp_path: Path) -> None:
    port = free_port()
    host = f"http://localhost:{port}"  # nobody listens: the endpoint is down
    spool, ids_file = tmp_path / "spool", tmp_path / "ids"
    producer = _start(PRODUCER, _env(host, spool), "20000", str(ids_file))
    try:
        assert producer.stdout is not None
        assert producer.stdout.readline().strip() == "captured"
        time.sleep(0.5 + 1.0)  # more than one flush interval (0.5 s) after the last capture
        producer.send_signal(signal.SIGKILL)
        producer.wait(10)
    finally:
        producer.kill()
    ids = ids_file.read_text().split("\n")
    assert len(ids) == 20_000
    with CaptureServer(port=port) as server:
        out = run_py(DRAIN, {k: v for k, v in _env(host, spool).items() if k not in ("PATH", "PYTHONPATH")})
        assert out.returncode == 0, out.stderr
        stats = json.loads(out.stdout.strip().splitlines()[-1])
        assert stats["spool_pending"] == 0
        got = Counter(e["uuid"] for e in server.events())
    assert sorted(got) == sorted(ids), f"{len(set(got) & set(ids))} of 20000 arrived"
    assert max(got.values()) == 1, "an event was sent twice"
    assert stats["spool_sent"] == 20_000


def test_two_processes_sharing_a_spool_send_nothing_twice(tmp_path: Path) -> None:
    port = free_port()
    host = f"http://localhost:{port}"
    spool = tmp_path / "spool"
    both = """
        import json, sys, time, obs
        client = obs.init()
        ids = [obs.capture("shared", {"p": sys.argv[1], "i": i}, distinct_id="u") for i in range(3_000)]
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and client.stats()["spool_writes"] < 3_000:
            time.sleep(0.05)
        print("spooled", client.stats()["spool_writes"], flush=True)
        while time.monotonic() < deadline and (client.stats()["spool_pending"] or not client.flush(0.1)):
            time.sleep(0.05)
        print(json.dumps({"ids": ids, "stats": client.stats()}))
    """
    procs = [_start(both, _env(host, spool), tag) for tag in ("a", "b")]
    try:
        # Both spool everything through the outage before the endpoint comes up (however slow they start).
        spooled = [p.stdout.readline().split() for p in procs if p.stdout]
        assert all(w[0] == "spooled" and int(w[1]) >= 3_000 for w in spooled), spooled
        with CaptureServer(port=port) as server:
            outs = [p.communicate(timeout=60) for p in procs]
            got = Counter(e["uuid"] for e in server.events())
    finally:
        for p in procs:
            p.kill()
    results = [json.loads(o.strip().splitlines()[-1]) for o, _ in outs]
    ids = results[0]["ids"] + results[1]["ids"]
    assert sorted(got) == sorted(ids), f"{len(set(got) & set(ids))} of 6000 arrived"
    assert max(got.values()) == 1, "an event was sent twice"
    for r in results:
        assert r["stats"]["spool_pending"] == 0
        assert_accounted(r["stats"])
    # Each process re-sent spooled batches, whoever wrote them.
    assert sum(r["stats"]["spool_sent"] for r in results) >= 5_000


def test_exit_timeout_keeps_what_is_left_in_the_spool_for_the_next_run(
    server: CaptureServer, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    server.default = Reply(hang=True, delay=30)
    out = run_py(
        """
        import obs
        for i in range(2_000):
            obs.capture("late", {"i": i}, distinct_id="u")
        """,
        {
            "POSTHOG_API_KEY": "phc_spool",
            "POSTHOG_HOST": server.host_url,
            "OBS_SPOOL_DIR": str(spool),
            "OBS_SHUTDOWN_TIMEOUT": "2",
            "OBS_TIMEOUT": "30",
        },
    )
    assert out.returncode == 0, out.stderr
    (line,) = [ln for ln in out.stderr.splitlines() if "shutdown timed out" in ln]
    assert "2000 event(s) kept in the spool" in line, line
    server.default = Reply()
    server.received.clear()
    drained = run_py(
        DRAIN,
        {"POSTHOG_API_KEY": "phc_spool", "POSTHOG_HOST": server.host_url, "OBS_SPOOL_DIR": str(spool)},
    )
    assert drained.returncode == 0, drained.stderr
    assert sorted(e["properties"]["i"] for e in server.events()) == list(range(2_000))


def test_a_short_outage_is_spooled_then_sent_by_the_same_process(
    server: CaptureServer, tmp_path: Path
) -> None:
    client = obs.init(api_key="phc_spool", host=server.host_url, spool_dir=str(tmp_path), retry_backoff=0.1)
    assert isinstance(client, Client)
    server.fail_for(1.5, 503)
    ids = [obs.capture("blip", {"i": i}, distinct_id="u") for i in range(500)]
    assert not obs.flush(10)  # not delivered yet: in the spool, said honestly
    stats = client.stats()
    assert stats["spooled"] == 500 and stats["spool_pending"] == 500
    assert_accounted(stats)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and client.stats()["spool_pending"]:
        time.sleep(0.05)
    got = Counter(e["uuid"] for e in server.events())
    assert sorted(got) == sorted(ids) and max(got.values()) == 1
    assert client.stats()["spool_sent"] == 500


def test_a_corrupt_spool_is_reported_once_and_never_breaks_capture(
    server: CaptureServer, tmp_path: Path
) -> None:
    (tmp_path / "spool.db").write_bytes(b"this is not a database" * 100)
    client = obs.init(api_key="phc_spool", host=server.host_url, spool_dir=str(tmp_path))
    assert isinstance(client, Client)
    ids = [obs.capture("ok", {"i": i}, distinct_id="u") for i in range(10)]
    assert obs.flush(5)
    assert [e["uuid"] for e in server.events()] == ids
    assert client.stats()["spool_errors"] == 1
