"""End to end: 100,000 events captured, then shutdown, all delivered; whole-process CPU per delivered event.

    .venv/bin/python benchmarks/bench_e2e.py [--events 100000] [--runs 1] [--baseline DIR] [--server-as-is]
                                             [--no-warmup]

For each SDK run, a fresh ``tests/capture_server.py`` process (its own count) and a fresh Python process
for the SDK (so one run's threads, heap or atexit hooks never touch another's). Inside that process the
clock and ``getrusage`` (user + system CPU of the whole process: caller, worker, serialisation, HTTP) start
at the first capture and stop when shutdown returns:

    obs:             obs.init(api_key=..., host=url, max_queue_size=200_000, gzip=G)
                     100k x obs.capture("evt", {"a": 1, "b": "x"}, distinct_id="u1"); obs.shutdown()
    posthog-python:  Client(api_key, host=url, max_queue_size=200_000, gzip=G)
                     100k x client.capture("evt", distinct_id="u1", properties={...}); client.shutdown()

Before the clock starts, each SDK sends two warm-up events, each flushed, a second apart (``--no-warmup``:
none), so the figure is the steady-state cost per event: one-off loading is not spread over the 100k.
That matters for obs, which starts its worker (anyio, asyncio) ``OBS_FLUSH_INTERVAL`` after ``init`` and
loads its HTTP stack (httpx, and trio, click or rich when installed, which httpcore and httpx import) with
the worker's first request, ~0.3 s of CPU that bench_coldstart.py counts; posthog-python has loaded requests
by ``import posthog``. Issue 13 set its target against obs as it was then, with all of it loaded by
``init`` (outside the window).

Both SDKs with their defaults otherwise (flush_at=100 in each), gzip off and on. ``--baseline DIR`` also
runs the obs package found in DIR (e.g. ``git archive <commit> obs | tar -x -C DIR``) as "obs (baseline)",
interleaved with the others, so before/after figures come from the same machine at the same time. After
shutdown the server is asked how many events it accepted; anything short is printed as LOSS.

Server: the tests/capture_server.py code, started with TCP_NODELAY forced on its sockets (up to commit
6cc8fb6 the file left Nagle's algorithm on and every request stalled ~40 ms on a delayed ACK, for either
SDK; see benchmarks/_harness.py). ``--server-as-is`` runs the file exactly as checked out.

Targets (issue 13): obs's CPU per delivered event >= 20x below posthog-python's, and >= 3.5x below the
baseline's.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from typing import Any

from _harness import REPO, WARM_UP, ServerProcess, clean_env, machine, median, warm_up

TARGET = 20
TARGET_BASELINE = 3.5
QUEUE = 200_000


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def child(sdk: str, url: str, events: int, gz: bool, src: str, warm: bool) -> dict[str, Any]:
    """Runs in the SDK's own process: capture ``events`` then shut down; returns timings."""
    props = {"a": 1, "b": "x"}
    if sdk == "obs":
        if src:
            sys.path.insert(0, src)
        import obs

        assert not src or obs.__file__.startswith(src), obs.__file__
        obs.init(api_key="phc_bench", host=url, max_queue_size=QUEUE, gzip=gz)
        if warm:
            warm_up(lambda: obs.capture("warm-up", distinct_id="u1"), obs.flush, time.sleep)
        c0, t0 = _cpu(), time.perf_counter()
        for _ in range(events):
            obs.capture("evt", {"a": 1, "b": "x"}, distinct_id="u1")
        t1 = time.perf_counter()
        obs.shutdown()
        t2, c2 = time.perf_counter(), _cpu()
        stats = obs.get_client().stats()
        dropped = {k: v for k, v in stats.items() if k.startswith(("dropped", "sink_")) and v}
        return {"capture_s": t1 - t0, "total_s": t2 - t0, "cpu_s": c2 - c0, "dropped": dropped}
    import posthog

    client = posthog.Client("phc_bench", host=url, max_queue_size=QUEUE, gzip=gz)
    if warm:
        warm_up(lambda: client.capture("warm-up", distinct_id="u1"), client.flush, time.sleep)
    c0, t0 = _cpu(), time.perf_counter()
    for _ in range(events):
        client.capture("evt", distinct_id="u1", properties=props)
    t1 = time.perf_counter()
    client.shutdown()
    t2, c2 = time.perf_counter(), _cpu()
    return {"capture_s": t1 - t0, "total_s": t2 - t0, "cpu_s": c2 - c0, "dropped": {}}


def one_run(label: str, events: int, gz: bool, src: str, as_is: bool, warm: bool) -> dict[str, Any]:
    sdk = "posthog" if label == "posthog" else "obs"
    with ServerProcess(as_is=as_is) as server:
        out = subprocess.run(
            [sys.executable, __file__, "--child", sdk, server.url, str(events), f"{gz:d}", f"{warm:d}", src],
            capture_output=True,
            text=True,
            cwd=str(REPO),
            env=clean_env(),
            check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"{label} run failed:\n{out.stderr}")
        res: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        res["received"] = server.settled_count(events + WARM_UP * warm) - WARM_UP * warm
        res["stderr"] = out.stderr.strip()
    res["eps"] = events / res["total_s"]
    res["us"] = res["cpu_s"] / max(1, res["received"]) * 1e6
    return res


NAMES = {"obs": "obs", "baseline": "obs (baseline)", "posthog": "posthog-python"}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        sdk, url, events, gz = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] == "1"
        warm = sys.argv[6] == "1"
        src = sys.argv[7] if len(sys.argv) > 7 else ""
        print(json.dumps(child(sdk, url, events, gz, src, warm)))
        return

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=100_000, help="events per run (default 100000)")
    ap.add_argument("--runs", type=int, default=1, help="runs per configuration (default 1)")
    ap.add_argument("--baseline", default="", help="a directory holding another obs package to compare")
    ap.add_argument("--server-as-is", action="store_true", help="run tests/capture_server.py as checked out")
    ap.add_argument(
        "--no-warmup",
        action="store_true",
        help="start timing at the very first event (one-off loading, e.g. obs's HTTP client, counted in)",
    )
    args = ap.parse_args()
    clean_env()

    print("bench_e2e: capture N events, shutdown, delivered to a capture server in another process")
    print(f"machine: {machine()}")
    server_desc = "run as checked out" if args.server_as_is else "TCP_NODELAY forced by the harness"
    print(
        f"events per run: {args.events:,}   runs: {args.runs}   defaults otherwise (flush_at=100 in both)"
        + ("   no warm-up" if args.no_warmup else "   after a warm-up event, flushed")
        + f"   server: tests/capture_server.py, {server_desc}\n"
    )

    labels = ["obs", "posthog"] + (["baseline"] if args.baseline else [])
    configs = [(label, gz) for gz in (False, True) for label in labels]
    results: dict[tuple[str, bool], list[dict[str, Any]]] = {c: [] for c in configs}
    loss = False
    for r in range(args.runs):
        order = configs if r % 2 == 0 else configs[::-1]  # interleaved: a drifting machine load hits all
        for label, gz in order:
            src = args.baseline if label == "baseline" else ""
            res = one_run(label, args.events, gz, src, args.server_as_is, not args.no_warmup)
            results[(label, gz)].append(res)
            lost = args.events - res["received"]
            flag = "" if lost == 0 else f"   *** LOSS: {lost:,} of {args.events:,} events NOT received ***"
            loss = loss or lost != 0
            extra = f"  obs dropped: {res['dropped']}" if res["dropped"] else ""
            name = f"{NAMES[label]}, gzip {'on' if gz else 'off'}"
            print(
                f"  run {r + 1}  {name:<28} CPU {res['us']:7.2f} us/event   wall {res['total_s']:6.2f} s"
                f"  (capture loop {res['capture_s']:6.2f} s)  received {res['received']:>7,}{flag}{extra}"
            )
            if res["stderr"]:
                print("    stderr: " + res["stderr"].replace("\n", "\n    ")[:2000])

    print()
    print(
        f"  {'configuration':<28} {'CPU us/event (median)':>22} {'wall s':>8} {'events/s':>10}"
        f" {'received':>9}"
    )
    for label, gz in configs:
        rs = results[(label, gz)]
        name = f"{NAMES[label]}, gzip {'on' if gz else 'off'}"
        print(
            f"  {name:<28} {median([x['us'] for x in rs]):>22.2f} {median([x['total_s'] for x in rs]):>8.2f}"
            f" {median([x['eps'] for x in rs]):>10,.0f} {min(x['received'] for x in rs):>9,}"
        )
    print()
    for gz in (False, True):
        o = median([x["us"] for x in results[("obs", gz)]])
        p = median([x["us"] for x in results[("posthog", gz)]])
        ratio = p / o
        verdict = "MET" if ratio >= TARGET else "MISSED"
        print(
            f"gzip {'on ' if gz else 'off'}: posthog-python / obs CPU per event {ratio:5.1f}x"
            f"  (>= {TARGET}x: {verdict})"
        )
        if args.baseline:
            b = median([x["us"] for x in results[("baseline", gz)]])
            verdict = "MET" if b / o >= TARGET_BASELINE else "MISSED"
            print(
                f"          baseline / obs CPU per event       {b / o:5.1f}x"
                f"  (>= {TARGET_BASELINE}x: {verdict})"
            )
    if loss:
        print("\n*** LOSS: at least one run delivered fewer events than it captured ***")
        sys.exit(1)


if __name__ == "__main__":
    main()
