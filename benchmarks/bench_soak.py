"""Soak: 1,000,000 events through each SDK to a live local collector, RSS sampled all along; and the memory
one queued event costs when the endpoint is dead.

    .venv/bin/python benchmarks/bench_soak.py [--events 1000000] [--plot docs/soak.png]

Part 1, soak. For obs and posthog-python in turn, a fresh process captures ``--events`` small events
(``{"a": 1, "b": "x"}``) against ``tests/capture_server.py`` in another process, in chunks of 10,000, each
followed by a flush (so the producer never outruns delivery and nothing is refused), sampling its resident
set size (``/proc/self/statm``) after every chunk, then shuts down. Printed: RSS at start, peak and end,
the events the server received, and the whole process's CPU time per delivered event
(``resource.getrusage``: caller, worker, serialisation and HTTP). The RSS curves go to ``--plot``.

Part 2, a dead endpoint. Nobody answers, ``max_queue_size=100_000``, and 200,000 events are captured as
fast as the caller can: the caller's latency per capture (p50, p99, max; ``perf_counter_ns`` around each
call), and the RSS growth divided by the events held, the cost of one queued event.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _harness import REPO, ServerProcess, clean_env, machine

QUEUE = 100_000
CHUNK = 10_000


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _client(sdk: str, url: str, **kw: Any) -> tuple[Any, Any, Any]:
    """(capture(i), flush(), shutdown()) for one SDK."""
    props = {"a": 1, "b": "x"}
    if sdk == "obs":
        import obs

        obs.init(api_key="phc_soak", host=url, max_queue_size=QUEUE, **kw)

        def cap_obs(i: int) -> bool:
            return obs.capture("evt", props, distinct_id="u1") is not None

        return cap_obs, obs.flush, obs.shutdown
    import posthog

    client = posthog.Client("phc_soak", host=url, max_queue_size=QUEUE, **kw)

    def cap_ph(i: int) -> bool:
        return client.capture("evt", distinct_id="u1", properties=props) is not None

    return cap_ph, client.flush, client.shutdown


def child_soak(sdk: str, url: str, events: int) -> dict[str, Any]:
    capture, flush, shutdown = _client(sdk, url)
    capture(-1)
    flush()
    cpu0, wall0, samples, refused = _cpu(), time.perf_counter(), [(0, _rss())], 0
    for start in range(0, events, CHUNK):
        for i in range(start, start + CHUNK):
            if not capture(i):
                refused += 1
        flush()
        samples.append((start + CHUNK, _rss()))
    shutdown()
    return {"samples": samples, "cpu": _cpu() - cpu0, "wall": time.perf_counter() - wall0, "refused": refused}


def child_dead(sdk: str, url: str) -> dict[str, Any]:
    capture, _, _ = _client(sdk, url, timeout=60)
    capture(-1)
    # The first request is out and hanging (obs starts its worker OBS_FLUSH_INTERVAL, 0.5 s, after init and
    # loads httpx for that request: not counted as events' memory); everything after waits in memory.
    time.sleep(1.5)
    before = _rss()
    clock = time.perf_counter_ns
    lat: list[int] = []
    held = 0
    for i in range(2 * QUEUE):
        t0 = clock()
        ok = capture(i)
        lat.append(clock() - t0)
        if ok:
            held += 1
    grown = _rss() - before - len(lat) * 8  # the latency list itself
    lat.sort()
    n = len(lat)
    return {"bytes": grown, "held": held, "p50": lat[n // 2], "p99": lat[n * 99 // 100], "max": lat[-1]}


def run_child(args: list[str]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", *args],
        capture_output=True,
        text=True,
        cwd=str(REPO),
        env=clean_env(),
        check=False,
        timeout=1800,
    )
    if out.returncode != 0 and not out.stdout.strip():
        raise RuntimeError(f"{args[0]} {args[1]} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, sdk, url = sys.argv[2], sys.argv[3], sys.argv[4]
        if kind == "soak":
            print(json.dumps(child_soak(sdk, url, int(sys.argv[5]))), flush=True)
        else:
            result = child_dead(sdk, url)
            print(json.dumps(result), flush=True)
            import os

            os._exit(0)  # the endpoint hangs: do not wait for either SDK's exit flush
        return

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--plot", default=str(REPO / "docs" / "soak.png"))
    args = ap.parse_args()
    clean_env()
    print("bench_soak: RSS over 1,000,000 events to a live collector; bytes per queued event, endpoint dead")
    print(f"machine: {machine()}\n")

    soak: dict[str, dict[str, Any]] = {}
    for sdk in ("obs", "posthog"):
        with ServerProcess() as server:
            res = run_child(["soak", sdk, server.url, str(args.events)])
            res["delivered"] = server.settled_count(args.events + 1, timeout=30)
        soak[sdk] = res
    print(
        f"{'':16}{'RSS start':>12}{'RSS peak':>12}{'RSS end':>12}"
        f"{'delivered':>12}{'refused':>10}{'wall s':>9}{'CPU/event':>12}"
    )
    for sdk, res in soak.items():
        rss = [r for _, r in res["samples"]]
        per = res["cpu"] / max(1, res["delivered"]) * 1e6
        print(
            f"{sdk:16}{rss[0] / 2**20:>10.1f}Mi{max(rss) / 2**20:>10.1f}Mi{rss[-1] / 2**20:>10.1f}Mi"
            f"{res['delivered']:>12,}{res['refused']:>10,}{res['wall']:>9.1f}{per:>10.1f}µs"
        )

    print("\ndead endpoint, 200,000 captured (max_queue_size=100,000):")
    print(f"  {'':14}{'p50 ns':>9}{'p99 ns':>9}{'max µs':>9}{'held':>10}{'B/queued event':>16}")
    for sdk in ("obs", "posthog"):
        with ServerProcess() as server:
            server_hang(server)
            res = run_child(["dead", sdk, server.url])
        per = res["bytes"] / max(1, res["held"])
        top = res["max"] / 1e3
        print(f"  {sdk:14}{res['p50']:>9,}{res['p99']:>9,}{top:>9,.0f}{res['held']:>10,}{per:>16,.0f}")

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("\n(matplotlib not installed: no plot; `pip install -e '.[bench]'`)")
        return
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for sdk, res in soak.items():
        xs = [n / 1e3 for n, _ in res["samples"]]
        ax.plot(
            xs, [r / 2**20 for _, r in res["samples"]], label="posthog-python" if sdk == "posthog" else sdk
        )
    ax.set_xlabel("events captured (thousands)")
    ax.set_ylabel("RSS (MiB)")
    ax.set_title(f"RSS while capturing {args.events:,} events (live local collector)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.plot, dpi=110)
    print(f"\nplot: {args.plot}")


def server_hang(server: ServerProcess) -> None:
    """Make the server process hang every request: it reads 'hang' on stdin (tests/capture_server.py)."""
    assert server._proc.stdin is not None and server._proc.stdout is not None
    server._proc.stdin.write("hang\n")
    server._proc.stdin.flush()
    server._proc.stdout.readline()


if __name__ == "__main__":
    main()
