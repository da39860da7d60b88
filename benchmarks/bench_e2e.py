"""End to end: 100,000 events captured, then shutdown, all delivered to a local capture server.

    .venv/bin/python benchmarks/bench_e2e.py [--events 100000] [--runs 1] [--server-as-is]

For each SDK run, a fresh ``tests/capture_server.py`` process (its own count) and a fresh Python process
for the SDK (so one run's threads, heap or atexit hooks never touch another's). Inside that process the
clock starts at the first capture and stops when shutdown returns:

    obs:             obs.init(api_key=..., host=url, max_queue_size=200_000, flush_at=B)
                     100k x obs.capture("evt", {"a": 1, "b": "x"}, distinct_id="u1"); obs.shutdown()
    posthog-python:  Client(api_key, host=url, max_queue_size=200_000, flush_at=B)
                     100k x client.capture("evt", distinct_id="u1", properties={...}); client.shutdown()

B (events per HTTP request) is 100 for both -- both SDKs' default. One extra obs run with B=1000 is shown
separately: it is not a like-for-like comparison. After shutdown the server is asked how many events it
accepted; anything short of the number captured is printed as LOSS.

Server: the tests/capture_server.py code, started with TCP_NODELAY forced on its sockets (up to commit
6cc8fb6 the file left Nagle's algorithm on and every request stalled ~40 ms on a delayed ACK, for either
SDK; see benchmarks/_harness.py). ``--server-as-is`` runs the file exactly as checked out.

Target: obs >= 20x posthog-python's events/s at the same batch size.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any

from _harness import REPO, ServerProcess, clean_env, machine, median

TARGET = 20
QUEUE = 200_000


def child(sdk: str, url: str, events: int, flush_at: int) -> dict[str, Any]:
    """Runs in the SDK's own process: capture ``events`` then shut down; returns timings."""
    props = {"a": 1, "b": "x"}
    if sdk == "obs":
        import obs

        obs.init(api_key="phc_bench", host=url, max_queue_size=QUEUE, flush_at=flush_at)
        t0 = time.perf_counter()
        for _ in range(events):
            obs.capture("evt", {"a": 1, "b": "x"}, distinct_id="u1")
        t1 = time.perf_counter()
        obs.shutdown()
        t2 = time.perf_counter()
        stats = obs.get_client().stats()
        dropped = {k: v for k, v in stats.items() if k.startswith(("dropped", "sink_")) and v}
        return {"capture_s": t1 - t0, "total_s": t2 - t0, "sent": stats["sent"], "dropped": dropped}
    import posthog

    client = posthog.Client("phc_bench", host=url, max_queue_size=QUEUE, flush_at=flush_at)
    t0 = time.perf_counter()
    for _ in range(events):
        client.capture("evt", distinct_id="u1", properties=props)
    t1 = time.perf_counter()
    client.shutdown()
    t2 = time.perf_counter()
    return {"capture_s": t1 - t0, "total_s": t2 - t0, "sent": None, "dropped": {}}


def one_run(sdk: str, events: int, flush_at: int, as_is: bool) -> dict[str, Any]:
    with ServerProcess(as_is=as_is) as server:
        out = subprocess.run(
            [sys.executable, __file__, "--child", sdk, server.url, str(events), str(flush_at)],
            capture_output=True,
            text=True,
            cwd=str(REPO),
            env=clean_env(),
            check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"{sdk} run failed:\n{out.stderr}")
        res: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        res["received"] = server.settled_count(events)
        res["stderr"] = out.stderr.strip()
    res["eps"] = events / res["total_s"]
    return res


LABELS = {
    ("obs", 100): "obs (flush_at=100)",
    ("posthog", 100): "posthog-python (flush_at=100)",
    ("obs", 1000): "obs, LARGER BATCH (flush_at=1000)",
}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        sdk, url, events, flush_at = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
        print(json.dumps(child(sdk, url, events, flush_at)))
        return

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=100_000, help="events per run (default 100000)")
    ap.add_argument("--runs", type=int, default=1, help="runs per configuration (default 1)")
    ap.add_argument("--server-as-is", action="store_true", help="run tests/capture_server.py as checked out")
    args = ap.parse_args()
    clean_env()

    print("bench_e2e: capture N events, shutdown, delivered to a capture server in another process")
    print(f"machine: {machine()}")
    server_desc = "run as checked out" if args.server_as_is else "TCP_NODELAY forced by the harness"
    print(
        f"events per run: {args.events:,}   runs: {args.runs}   batch size (flush_at): 100 for both SDKs"
        f"   server: tests/capture_server.py, {server_desc}\n"
    )

    configs = [("obs", 100), ("posthog", 100), ("obs", 1000)]
    results: dict[tuple[str, int], list[dict[str, Any]]] = {c: [] for c in configs}
    loss = False
    for r in range(args.runs):
        order = configs if r % 2 == 0 else [configs[1], configs[0], configs[2]]
        for sdk, flush_at in order:
            res = one_run(sdk, args.events, flush_at, args.server_as_is)
            results[(sdk, flush_at)].append(res)
            lost = args.events - res["received"]
            flag = "" if lost == 0 else f"   *** LOSS: {lost:,} of {args.events:,} events NOT received ***"
            loss = loss or lost != 0
            extra = f"  obs dropped: {res['dropped']}" if res["dropped"] else ""
            print(
                f"  run {r + 1}  {LABELS[(sdk, flush_at)]:<36} total {res['total_s']:7.2f} s"
                f"  (capture loop {res['capture_s']:6.2f} s)  {res['eps']:>9,.0f} events/s"
                f"  received {res['received']:>7,}{flag}{extra}"
            )
            if res["stderr"]:
                print("    stderr: " + res["stderr"].replace("\n", "\n    ")[:2000])

    print()
    print(
        f"  {'configuration':<36} {'wall s (median)':>15} {'capture loop s':>15} {'events/s':>10}"
        f" {'received':>9}"
    )
    for c in configs:
        rs = results[c]
        print(
            f"  {LABELS[c]:<36} {median([x['total_s'] for x in rs]):>15.2f}"
            f" {median([x['capture_s'] for x in rs]):>15.2f} {median([x['eps'] for x in rs]):>10,.0f}"
            f" {min(x['received'] for x in rs):>9,}"
        )
    o = median([x["eps"] for x in results[("obs", 100)]])
    p = median([x["eps"] for x in results[("posthog", 100)]])
    o_big = median([x["eps"] for x in results[("obs", 1000)]])
    ratio = o / p
    print(
        f"\nratio obs / posthog-python events/s (same batch size 100): {ratio:.1f}x   target >= {TARGET}x: "
        f"{'MET' if ratio >= TARGET else f'MISSED (needs {TARGET / ratio:.1f}x more)'}"
    )
    print(f"info, not like-for-like: obs flush_at=1000 / posthog-python flush_at=100: {o_big / p:.1f}x")
    if loss:
        print("\n*** LOSS: at least one run delivered fewer events than it captured ***")
        sys.exit(1)


if __name__ == "__main__":
    main()
