"""Producer cost: nanoseconds one capture call costs the calling thread, obs vs posthog-python.

    .venv/bin/python benchmarks/bench_capture.py [--calls 10000] [--repeats 7]

Timed call, each in a plain ``for`` loop of ``--calls`` iterations (the loop's own cost is shown on the
"no-op function" line):

    obs.capture("evt", {"a": 1, "b": "x"}, distinct_id="u1")
    client.capture("evt", distinct_id="u1", properties={"a": 1, "b": "x"})      # posthog.Client

Both SDKs point at ``tests/capture_server.py`` running in a separate process, with queues far larger than
a repeat, and are emptied between repeats (untimed), so nothing is ever dropped. Repeats alternate which
SDK goes first; best and median of the per-call means are reported. The garbage collector is off inside
timed loops (as ``timeit`` does).

Modes:

- caller-only: the background side is parked, so only the caller's own work is timed. obs gets
  ``flush_at`` above the loop size and a one-hour ``flush_interval`` (its worker sleeps), posthog-python
  gets ``thread=0`` (no consumer thread; its queue is emptied by hand between repeats).
- live: both SDKs with ``flush_at=100`` and ``flush_interval=0.5``, their background threads building and
  posting batches while the loop runs: what a busy app sees, GIL sharing included.
- disabled: obs without an API key; posthog-python with ``disabled=True`` for comparison.

Target: obs <= 1/30 of posthog-python per call (caller-only mode).
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable
from typing import Any

from _harness import ServerProcess, clean_env, machine, median

TARGET = 30  # posthog-python / obs, at least
BIG_QUEUE = 1_000_000


def timed(loop: Callable[[int], None], n: int) -> float:
    """Mean ns per call of one run of ``loop(n)``, GC off."""
    gc.collect()
    gc.disable()
    try:
        t0 = time.perf_counter_ns()
        loop(n)
        return (time.perf_counter_ns() - t0) / n
    finally:
        gc.enable()


def obs_loop(n: int) -> None:
    import obs

    for _ in range(n):
        obs.capture("evt", {"a": 1, "b": "x"}, distinct_id="u1")


def make_posthog_loop(client: Any) -> Callable[[int], None]:
    def posthog_loop(n: int) -> None:
        for _ in range(n):
            client.capture("evt", distinct_id="u1", properties={"a": 1, "b": "x"})

    return posthog_loop


def noop(event: str, properties: Any = None, *, distinct_id: Any = None) -> None:
    return None


def noop_loop(n: int) -> None:
    for _ in range(n):
        noop("evt", {"a": 1, "b": "x"}, distinct_id="u1")


def discard_queue(q: Any) -> int:
    """Empty a posthog-python lane queue that has no consumer (caller-only mode)."""
    from queue import Empty

    n = 0
    while True:
        try:
            q.get_nowait()
        except Empty:
            return n
        q.task_done()
        n += 1


def run_pair(
    runs: dict[str, tuple[Callable[[int], None], Callable[[], None]]], calls: int, repeats: int
) -> dict[str, list[float]]:
    """Alternate the SDKs' timed loops; ``runs[name] = (loop, reset)``, reset runs untimed after each."""
    results: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for r in range(repeats):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            loop, reset = runs[name]
            results[name].append(timed(loop, calls))
            reset()
    return results


def row(label: str, xs: list[float]) -> str:
    return f"  {label:<48} best {min(xs):>9,.0f} ns   median {median(xs):>9,.0f} ns"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=10_000, help="calls per timed loop (default 10000)")
    ap.add_argument("--repeats", type=int, default=7, help="timed loops per SDK and mode (default 7)")
    ap.add_argument("--server-as-is", action="store_true", help="run tests/capture_server.py as checked out")
    args = ap.parse_args()
    clean_env()

    import posthog

    import obs

    print("bench_capture: per-call cost on the caller's thread")
    print(f"machine: {machine()}")
    print(f"calls per loop: {args.calls:,}   repeats: {args.repeats}   GC off inside loops\n")

    results: dict[str, list[float]] = {}
    with ServerProcess(as_is=args.server_as_is) as server:
        # ---- caller-only: background work parked
        obs.init(
            api_key="phc_bench",
            host=server.url,
            max_queue_size=BIG_QUEUE,
            flush_at=10**9,
            flush_interval=3600,
        )
        obs.flush(10)  # the worker is up and has done its start-up drain before anything is timed
        ph = posthog.Client("phc_bench", host=server.url, max_queue_size=BIG_QUEUE, thread=0)
        res = run_pair(
            {
                "obs": (obs_loop, lambda: obs.flush(60)),
                "posthog": (make_posthog_loop(ph), lambda: discard_queue(ph.queue)),
            },
            args.calls,
            args.repeats,
        )
        results["caller-only obs"], results["caller-only posthog"] = res["obs"], res["posthog"]
        ph.shutdown()
        obs_stats = [obs.get_client().stats()]

        # posthog-python spends much of a Linux call re-reading /etc/os-release (distro.info(), uncached).
        # Informational: the same call with that one function cached, i.e. roughly its cost elsewhere.
        import posthog.utils as ph_utils

        real_os_info = ph_utils.get_os_info
        cached = real_os_info()
        ph_utils.get_os_info = lambda: cached  # type: ignore[assignment]
        try:
            ph = posthog.Client("phc_bench", host=server.url, max_queue_size=BIG_QUEUE, thread=0)
            loop = make_posthog_loop(ph)
            cached_runs: list[float] = []
            for _ in range(max(3, args.repeats // 2)):
                cached_runs.append(timed(loop, args.calls))
                discard_queue(ph.queue)
            results["caller-only posthog, os-info cached"] = cached_runs
            ph.shutdown()
        finally:
            ph_utils.get_os_info = real_os_info  # type: ignore[assignment]

        # ---- live: background threads building and posting while the loop runs
        obs.init(
            api_key="phc_bench", host=server.url, max_queue_size=BIG_QUEUE, flush_at=100, flush_interval=0.5
        )
        obs.flush(10)
        ph = posthog.Client(
            "phc_bench", host=server.url, max_queue_size=BIG_QUEUE, flush_at=100, flush_interval=0.5
        )
        res = run_pair(
            {
                "obs": (obs_loop, lambda: obs.flush(60)),
                "posthog": (make_posthog_loop(ph), lambda: ph.flush(60)),
            },
            args.calls,
            args.repeats,
        )
        results["live obs"], results["live posthog"] = res["obs"], res["posthog"]
        ph.shutdown()
        obs.shutdown()
        obs_stats.append(obs.get_client().stats())
        # Sanity: the server got every event obs captured in both modes plus posthog-python's live ones.
        expected = 3 * args.calls * args.repeats
        received = server.settled_count(expected)

    # ---- disabled
    obs.init(api_key="")
    ph = posthog.Client("phc_bench", disabled=True)
    res = run_pair(
        {"obs": (obs_loop, lambda: None), "posthog": (make_posthog_loop(ph), lambda: None)},
        args.calls,
        args.repeats,
    )
    ph.shutdown()
    results["disabled obs"], results["disabled posthog"] = res["obs"], res["posthog"]
    results["no-op function, same arguments (loop cost)"] = [
        timed(noop_loop, args.calls) for _ in range(args.repeats)
    ]

    print("caller-only (background parked) -- the figure the target applies to")
    print(row("obs.capture", results["caller-only obs"]))
    print(row("posthog-python Client.capture", results["caller-only posthog"]))
    print(row("posthog-python, get_os_info() cached (info)", results["caller-only posthog, os-info cached"]))
    print("live (flush_at=100, flush_interval=0.5, posting to the server while timing)")
    print(row("obs.capture", results["live obs"]))
    print(row("posthog-python Client.capture", results["live posthog"]))
    print("disabled")
    print(row("obs.capture (no API key)", results["disabled obs"]))
    print(row("posthog-python Client.capture (disabled=True)", results["disabled posthog"]))
    print(
        row(
            "no-op function, same arguments (loop cost)",
            results["no-op function, same arguments (loop cost)"],
        )
    )

    o, p = results["caller-only obs"], results["caller-only posthog"]
    ratio_med, ratio_best = median(p) / median(o), min(p) / min(o)
    met = ratio_med >= TARGET
    print(
        f"\nratio posthog-python / obs (caller-only): median {ratio_med:.1f}x, best {ratio_best:.1f}x   "
        f"target >= {TARGET}x (obs <= 1/{TARGET}): {'MET' if met else 'MISSED'}"
    )
    lo, lp = results["live obs"], results["live posthog"]
    print(f"ratio posthog-python / obs (live):        median {median(lp) / median(lo):.1f}x (info)")
    pc = results["caller-only posthog, os-info cached"]
    print(f"ratio with posthog's get_os_info cached:  median {median(pc) / median(o):.1f}x (info)")
    lost = expected - received
    sent = sum(s["sent"] for s in obs_stats)
    dropped = sum(v for s in obs_stats for k, v in s.items() if k.startswith("dropped"))
    print(
        f"\ndelivery check (obs, both modes + posthog-python live): server accepted {received:,} of "
        f"{expected:,} events; obs stats: sent={sent:,}, dropped={dropped}"
        + ("" if lost == 0 else f"   *** LOSS: {lost:,} events missing ***")
    )


if __name__ == "__main__":
    main()
