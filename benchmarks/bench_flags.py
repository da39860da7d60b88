"""Cost of a feature flag check on the caller: a cached ``@feature_gate`` vs a bare call, and obs vs
posthog-python's ``feature_enabled`` for the same flag and user, in the same run.

    .venv/bin/python benchmarks/bench_flags.py [--calls 20000] [--repeats 7] [--budget 0.2]

Both SDKs evaluate locally, from the same definitions served by ``tests/flags_server.py`` running in another
process (flag ``new-checkout``, 100% rollout): obs with ``personal_api_key`` (cache on, its default TTL,
so after the first call a check is a cache hit), and ``posthog.Client(..., secret_key=..., send=False)``
(no cache of its own: it matches the definitions on every call). Each figure is the median per-call time
of a loop of ``--calls`` calls minus the same loop around the bare function, in the same process; repeats
alternate the order of the cases. GC is off inside timed loops (``timeit``).

- ``@feature_gate("new-checkout")`` on ``def f(x): return x + 1`` (and ``async def af``), inside
  ``obs.context(distinct_id=...)``: the whole decorated call, minus ``f(1)``.
- ``obs.feature_enabled(KEY, USER)`` / ``await obs.afeature_enabled(KEY, USER)``, minus ``f(1)``.
- the same with ``flags_cache_ttl=0``: obs's local evaluation (posthog-python's matcher) on every call.
- ``posthog.Client.feature_enabled(KEY, USER)`` (deprecated in posthog 7, still its one-flag check; its
  DeprecationWarning is filtered out), minus ``f(1)``. Its `$feature_flag_called` is sent once (deduped),
  like obs's.
- the gate with obs off (no API key): the flag's default decides, nothing else happens.

The script checks that every check said "on" and that the flags server got no ``/flags`` request.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
import timeit
import warnings
from collections.abc import Callable
from typing import Any

from _harness import FLAGS_SERVER, ServerProcess, clean_env, machine

KEY = "new-checkout"
USER = "user-1"
PERSONAL_KEY = "phx_test_personal_key_do_not_leak"  # what tests/flags_server.py accepts


def f(x: int) -> int:
    return x + 1


async def af(x: int) -> int:
    return x + 1


def sync_loop(fn: Callable[[], Any], n: int) -> float:
    return timeit.Timer("fn()", globals={"fn": fn}).timeit(n) * 1e9 / n


async def async_loop(fn: Callable[[], Any], n: int) -> float:
    gc.collect()
    gc.disable()
    try:
        t0 = time.perf_counter_ns()
        for _ in range(n):
            await fn()
        return (time.perf_counter_ns() - t0) / n
    finally:
        gc.enable()


def measure(
    cases: dict[str, tuple[Callable[[], Any] | None, Callable[[], Any] | None]], args: argparse.Namespace
) -> dict[str, tuple[float | None, float | None]]:
    """Per case, the median (sync ns, async ns) per call minus the bare pair's; ``bare`` is absolute."""
    every = {"bare": (lambda: f(1), lambda: af(1)), **cases}
    loop = asyncio.new_event_loop()
    n: dict[str, int] = {}
    ts: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in every}
    try:
        for label, (s, a) in every.items():  # warm-up, which also sizes the loop
            per_call = sync_loop(s, 200) / 1e9 if s else loop.run_until_complete(async_loop(a, 200)) / 1e9  # type: ignore[arg-type]
            if a:
                loop.run_until_complete(async_loop(a, 200))
            n[label] = max(200, min(args.calls, int(args.budget / max(per_call, 1e-9))))
        for r in range(args.repeats):
            for label in list(every) if r % 2 == 0 else list(every)[::-1]:
                s, a = every[label]
                if s:
                    ts[label][0].append(sync_loop(s, n[label]))
                if a:
                    ts[label][1].append(loop.run_until_complete(async_loop(a, n[label])))
    finally:
        loop.close()
    s0, a0 = statistics.median(ts["bare"][0]), statistics.median(ts["bare"][1])
    out: dict[str, tuple[float | None, float | None]] = {"bare": (s0, a0)}
    for label in cases:
        s_ts, a_ts = ts[label]
        out[label] = (
            statistics.median(s_ts) - s0 if s_ts else None,
            statistics.median(a_ts) - a0 if a_ts else None,
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=20_000, help="calls per timed loop, at most (default 20000)")
    ap.add_argument("--repeats", type=int, default=7, help="timed loops per case (default 7)")
    ap.add_argument("--budget", type=float, default=0.2, help="seconds per timed loop, about (default 0.2)")
    args = ap.parse_args()
    clean_env()
    warnings.simplefilter("ignore", DeprecationWarning)
    import posthog

    import obs

    gated, agated = obs.feature_gate(KEY)(f), obs.feature_gate(KEY)(af)
    with ServerProcess(script=FLAGS_SERVER) as server:
        ph = posthog.Client("phc_bench", host=server.url, send=False, secret_key=PERSONAL_KEY)
        ph.load_feature_flags()
        assert ph.feature_enabled(KEY, USER) is True, "posthog-python: the flag should be on"

        def on(label: str, value: Any) -> Any:
            if value is not True and value != 2:  # True from a check, 2 from the gated f(1)
                raise RuntimeError(f"{label}: the check said {value!r}, not on")
            return value

        obs.init(api_key="phc_bench", host=server.url, sinks=["memory"], personal_api_key=PERSONAL_KEY)
        with obs.context(distinct_id=USER):
            on("obs gate", gated(1))
            on("obs feature_enabled", obs.feature_enabled(KEY, USER))
            cases: dict[str, tuple[Callable[[], Any] | None, Callable[[], Any] | None]] = {
                "obs @feature_gate, cached": (lambda: gated(1), lambda: agated(1)),
                "obs feature_enabled, cached": (
                    lambda: obs.feature_enabled(KEY, USER),
                    lambda: obs.afeature_enabled(KEY, USER),
                ),
                "posthog-python feature_enabled (local)": (lambda: ph.feature_enabled(KEY, USER), None),
            }
            results = measure(cases, args)
            on("obs gate", gated(1))
            obs.init(
                api_key="phc_bench", host=server.url, sinks=["memory"], personal_api_key=PERSONAL_KEY,
                flags_cache_ttl=0,
            )  # fmt: skip
            on("obs feature_enabled, no cache", obs.feature_enabled(KEY, USER))
            uncached = {
                "obs feature_enabled, no cache (local)": (lambda: obs.feature_enabled(KEY, USER), None)
            }
            results.update({k: v for k, v in measure(uncached, args).items() if k != "bare"})
            obs.init()  # off
            off = {"obs @feature_gate, obs off": (lambda: gated(1), lambda: agated(1))}
            results.update({k: v for k, v in measure(off, args).items() if k != "bare"})
        remote_requests = server.count()
        obs.shutdown()
        ph.shutdown()

    print("bench_flags: per-call cost of a flag check on the caller (local evaluation, same flag and user)")
    print(f"machine: {machine()}")
    print(f"repeats: {args.repeats}; median per-call time minus the bare call's (same process); GC off\n")
    print(f"  {'':<42} {'sync µs':>8}   {'async µs':>8}")
    for label, (s, a) in results.items():
        shown = label + (" (absolute)" if label == "bare" else "")
        print(f"  {shown:<42} {_us(s)}   {_us(a)}")
    print(f"\n  /flags requests during the run (all checks local or cached): {remote_requests}")
    gate, ours, theirs = (
        results["obs @feature_gate, cached"][0],
        results["obs feature_enabled, cached"][0],
        results["posthog-python feature_enabled (local)"][0],
    )
    if gate and ours and theirs:
        print(f"  posthog-python feature_enabled / obs feature_enabled (cached): {theirs / ours:.1f}x")
        print(f"  posthog-python feature_enabled / obs @feature_gate (cached):   {theirs / gate:.1f}x")


def _us(ns: float | None) -> str:
    return "       -" if ns is None else f"{ns / 1000:>8.3f}"


if __name__ == "__main__":
    main()
