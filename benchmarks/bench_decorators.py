"""Per-call overhead of decorators on a trivial function: obs vs posthog-python, sentry, logfire, langfuse.

    .venv/bin/python benchmarks/bench_decorators.py [--calls 20000] [--repeats 7] [--budget 0.2]

The decorated functions are ``def f(x): return x + 1`` and ``async def af(x): return x + 1``. Sync: a
``timeit`` loop of ``f(1)``; async: ``await af(1)`` in one ``for`` loop inside one asyncio event loop. Each
case alternates with the bare function's loops; a figure is the decorated loop's median per-call time minus
the bare one's, both measured in the same process. A warm-up sizes each loop: ``--calls`` calls, fewer if
that would take over ``--budget`` seconds (the slowest peers). GC is off inside timed loops.

Each peer runs in a fresh interpreter (their global hooks, OTel tracer providers and integrations stay
apart) whose sockets may only reach 127.0.0.1: any other connection or lookup is refused and reported.
Background work is parked or cheap, and only the caller's time is measured:

- obs: ``sinks=["memory"]``, worker parked (huge ``flush_at``, one-hour interval), ``obs.flush()`` untimed
  between loops; "disabled" = ``obs.init()`` without an API key.
- posthog-python ``posthog.scoped()``: it finds its client through ``posthog.default_client``, set to
  ``Client("phc_bench", host="http://127.0.0.1:9", sync_mode=False, thread=0)`` (no consumer thread).
- sentry-sdk ``@sentry_sdk.trace``: ``sentry_sdk.init(dsn=None, traces_sample_rate=1.0)`` and a
  ``start_transaction`` around each loop (``max_spans`` above the loop size: every span is recorded); then
  ``init(dsn=None)`` alone (tracing off, no transaction).
- logfire ``@logfire.instrument()``: ``configure(send_to_logfire=False, console=False)`` plus a
  BatchSpanProcessor into a null exporter (production queues every span for export).
- langfuse ``@observe()``: dummy keys, host http://127.0.0.1:9, a null ``span_exporter``.

Second section: the caller's time to capture one exception raised 5 frames deep (a fresh one each time:
both SDKs skip re-captures), minus raising and catching it alone. ``obs.capture_exception(e)`` (memory sink,
``error_rate_limit=0``: no rate limiting) vs ``posthog.Client(..., thread=0).capture_exception(e)``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import socket
import subprocess
import sys
import time
import timeit
from collections.abc import Callable
from typing import Any

from _harness import _version, clean_env, machine, median

HOST = "http://127.0.0.1:9"  # discard port: nothing listens, a connection is refused at once
BIG = 10**9
WARMUP = 200
PEERS = ("obs", "posthog", "sentry", "logfire", "langfuse")
OPTIONAL = ("sentry_sdk", "logfire", "langfuse", "opentelemetry")
RAISE = "raise + catch, 5 frames"
LOCAL = (None, "127.0.0.1", "::1", "localhost")
blocked: list[str] = []


def f(x: int) -> int:
    return x + 1


async def af(x: int) -> int:
    return x + 1


def guard_network() -> None:
    """Refuse (and record) any connection or name lookup that is not the loopback address."""
    real_connect, real_gai = socket.socket.connect, socket.getaddrinfo

    def connect(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in LOCAL:
            blocked.append(str(address))
            raise OSError(f"bench_decorators: refused connection to {address!r}")
        real_connect(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in LOCAL:
            blocked.append(str(host))
            raise socket.gaierror(f"bench_decorators: refused lookup of {host!r}")
        return real_gai(host, *args, **kwargs)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.getaddrinfo = getaddrinfo


class Case:
    """A decorated pair; ``around`` is entered (untimed) around each timed loop, ``reset`` runs after it."""

    def __init__(self, label: str, fn: Any, afn: Any, around: Any = None, reset: Any = None) -> None:
        self.label, self.fn, self.afn = label, fn, afn
        self.around: Callable[[], Any] = around or contextlib.nullcontext
        self.reset: Callable[[], Any] = reset or (lambda: None)

    def sync(self, n: int) -> float:
        with self.around():
            return timeit.Timer("f(1)", globals={"f": self.fn}).timeit(n) * 1e9 / n

    async def _async(self, n: int) -> float:
        with self.around():
            gc.collect()
            gc.disable()
            try:
                t0 = time.perf_counter_ns()
                for _ in range(n):
                    await self.afn(1)
                return (time.perf_counter_ns() - t0) / n
            finally:
                gc.enable()


def bench(cases: list[Case], args: argparse.Namespace) -> list[list[Any]]:
    """Rows ``[label, sync ns, async ns, calls/loop]``: overhead over the bare pair (``bare``: absolute)."""
    every = [Case("bare", f, af), *cases]
    ts: dict[str, tuple[list[float], list[float]]] = {c.label: ([], []) for c in every}
    n: dict[str, int] = {}
    loop = asyncio.new_event_loop()
    try:
        for c in every:  # warm-up, which also sizes the loop
            per_call = c.sync(WARMUP) / 1e9
            loop.run_until_complete(c._async(WARMUP))
            c.reset()
            n[c.label] = max(WARMUP, min(args.calls, int(args.budget / per_call)))
        for r in range(args.repeats):
            for c in every if r % 2 == 0 else every[::-1]:
                ts[c.label][0].append(c.sync(n[c.label]))
                c.reset()
                ts[c.label][1].append(loop.run_until_complete(c._async(n[c.label])))
                c.reset()
    finally:
        loop.close()
    s0, a0 = median(ts["bare"][0]), median(ts["bare"][1])
    rows = [[c.label, median(ts[c.label][0]) - s0, median(ts[c.label][1]) - a0, n[c.label]] for c in cases]
    return [["bare", s0, a0, n["bare"]], *rows]


def null_exporter() -> Any:
    """An OTel span exporter that drops every span: nothing sent, no export cost on the worker thread."""
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class NullExporter(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    return NullExporter()


# ---- one function per peer, each run in its own interpreter; rows from bench()


def peer_obs(args: argparse.Namespace) -> list[list[Any]]:
    import obs

    if getattr(obs, "capture_errors", None) is None or getattr(obs, "track", None) is None:
        raise RuntimeError("obs.capture_errors / obs.track: not yet available")
    ce, ace = obs.capture_errors(f), obs.capture_errors(af)
    tr, atr = obs.track("bench_event")(f), obs.track("bench_event")(af)
    obs.init(api_key="phc_bench", sinks=["memory"], max_queue_size=BIG, flush_at=BIG, flush_interval=3600)
    obs.flush(10)
    on = bench([Case("obs capture_errors", ce, ace), Case("obs track", tr, atr, reset=obs.flush)], args)
    stats = obs.get_client().stats()
    dropped = sum(v for k, v in stats.items() if k.startswith("dropped"))
    obs.init()  # no API key: the disabled client
    off = bench([Case("obs capture_errors, disabled", ce, ace), Case("obs track, disabled", tr, atr)], args)
    return [
        *on,
        *off[1:],
        ["note", f"obs while enabled: {stats['queued']:,} events queued, {dropped} dropped", 0, 0],
    ]


def peer_posthog(args: argparse.Namespace) -> list[list[Any]]:
    import posthog

    posthog.default_client = posthog.Client("phc_bench", host=HOST, sync_mode=False, thread=0)
    return bench([Case("posthog-python scoped()", posthog.scoped()(f), posthog.scoped()(af))], args)


def peer_sentry(args: argparse.Namespace) -> list[list[Any]]:
    import sentry_sdk

    sentry_sdk.init(dsn=None, traces_sample_rate=1.0, _experiments={"max_spans": args.calls + 10})
    txn = lambda: sentry_sdk.start_transaction(name="bench", op="bench")  # noqa: E731
    t, at = sentry_sdk.trace(f), sentry_sdk.trace(af)
    rows = bench([Case("sentry @trace, in a transaction", t, at, around=txn)], args)
    sentry_sdk.init(dsn=None)  # tracing off, and no transaction
    return [*rows, *bench([Case("sentry @trace, tracing off", t, at)], args)[1:]]


def peer_logfire(args: argparse.Namespace) -> list[list[Any]]:
    import logfire
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    export = BatchSpanProcessor(null_exporter())
    logfire.configure(send_to_logfire=False, console=False, additional_span_processors=[export])
    return bench([Case("logfire @instrument()", logfire.instrument()(f), logfire.instrument()(af))], args)


def peer_langfuse(args: argparse.Namespace) -> list[list[Any]]:
    from langfuse import Langfuse, observe

    Langfuse(public_key="pk-lf-bench", secret_key="sk-lf-bench", host=HOST, span_exporter=null_exporter())
    return bench([Case("langfuse @observe()", observe()(f), observe()(af))], args)


def deep(k: int) -> None:
    if k == 0:
        raise ValueError("boom")
    deep(k - 1)


def exc_loop(capture: Callable[[BaseException], Any], n: int) -> float:
    gc.collect()
    gc.disable()
    try:
        t0 = time.perf_counter_ns()
        for _ in range(n):
            try:
                deep(4)  # 5 frames of deep() under this one
            except ValueError as e:
                capture(e)
        return (time.perf_counter_ns() - t0) / n
    finally:
        gc.enable()


def peer_exceptions(args: argparse.Namespace) -> list[list[Any]]:
    import posthog

    import obs

    if getattr(obs, "capture_exception", None) is None:
        raise RuntimeError("obs.capture_exception: not yet available")
    # error_rate_limit=0: obs's per-fingerprint rate limiting off, every capture is queued.
    obs.init(api_key="phc_bench", sinks=["memory"], max_queue_size=BIG, flush_at=BIG, flush_interval=3600,
             error_rate_limit=0)  # fmt: skip
    obs.flush(10)
    ph = posthog.Client("phc_bench", host=HOST, sync_mode=False, thread=0, max_queue_size=BIG)
    drained = [0]

    def reset() -> None:
        obs.flush(60)
        while not ph.queue.empty():
            ph.queue.get_nowait()
            ph.queue.task_done()
            drained[0] += 1

    captures: dict[str, Callable[[BaseException], Any]] = {
        RAISE: lambda e: None,
        "obs.capture_exception": obs.capture_exception,
        "posthog Client.capture_exception": ph.capture_exception,
    }
    ts: dict[str, list[float]] = {k: [] for k in captures}
    n: dict[str, int] = {}
    for k, capture in captures.items():  # warm-up, which also sizes the loop
        n[k] = max(WARMUP, min(args.calls // 10, int(args.budget * 1e9 / exc_loop(capture, WARMUP))))
        reset()
    for r in range(args.repeats):
        for k in list(captures) if r % 2 == 0 else list(captures)[::-1]:
            ts[k].append(exc_loop(captures[k], n[k]))
            reset()
    base = median(ts.pop(RAISE))
    rows = [[RAISE, base, None, n[RAISE]], *([k, median(v) - base, None, n[k]] for k, v in ts.items())]
    got = dict(zip(ts, (obs.get_client().stats()["queued"], drained[0]), strict=True))
    note = ", ".join(f"{k}: {got[k]:,} of {WARMUP + args.repeats * n[k]:,} queued" for k in ts)
    return [*rows, ["note", note, 0, 0]]


def child(args: argparse.Namespace) -> None:
    """One peer in this interpreter: its rows, or why there are none, as one JSON line on stdout."""
    guard_network()
    out: dict[str, Any]
    try:
        out = {"rows": globals()[f"peer_{args.peer}"](args)}
    except ImportError as e:
        root = (e.name or "").partition(".")[0]
        out = {"error": f"not installed ({root}): pip install -e '.[bench]'" if root in OPTIONAL else repr(e)}
    except RuntimeError as e:
        out = {"error": str(e)}
    print("\n" + json.dumps({**out, "blocked": blocked}), flush=True)


def run_peer(name: str, args: argparse.Namespace) -> dict[str, Any]:
    flags = ["--calls", str(args.calls), "--repeats", str(args.repeats), "--budget", str(args.budget)]
    proc = subprocess.run([sys.executable, __file__, "--peer", name, *flags], capture_output=True, text=True)
    last = proc.stdout.strip().splitlines()[-1:] or [""]
    if proc.returncode != 0 or not last[0].startswith("{"):
        tail = "\n    ".join(proc.stderr.strip().splitlines()[-8:])
        return {"error": f"failed (exit {proc.returncode}):\n    {tail}", "blocked": []}
    return json.loads(last[0])


def us(ns: float | None) -> str:
    return "       -" if ns is None else f"{ns / 1000:>8.3f}"


def show(name: str, res: dict[str, Any], results: dict[str, list[float]]) -> None:
    """Print one peer's rows (``bare`` only the first time) and keep them in ``results``."""
    if "error" in res:
        print(f"  {name:<42} {res['error']}")
    for label, s, a, n in res.get("rows", []):
        if label == "note":
            print(f"    ({s})")
        elif label not in results:
            print(f"  {label + (' (absolute)' if label == 'bare' else ''):<42} {us(s)}   {us(a)}   {n:>10,}")
            results[label] = [s, a]
    if res["blocked"]:
        print(f"    *** refused non-local network access: {sorted(set(res['blocked']))} ***")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=20_000, help="calls per timed loop, at most (default 20000)")
    ap.add_argument("--repeats", type=int, default=7, help="timed loops per case (default 7)")
    ap.add_argument("--budget", type=float, default=0.2, help="seconds per timed loop, about (default 0.2)")
    ap.add_argument("--peer", choices=(*PEERS, "exceptions"), help=argparse.SUPPRESS)  # internal
    args = ap.parse_args()
    clean_env()
    if args.peer:
        return child(args)

    peers = ", ".join(
        f"{d} {_version(d)}" for d in ("sentry-sdk", "logfire", "langfuse", "opentelemetry-sdk")
    )
    print(
        "bench_decorators: per-call overhead of a decorator on `def f(x): return x + 1` / `async def af(x)`"
    )
    print(f"machine: {machine()}")
    print(f"peers: {peers}")
    print(f"repeats: {args.repeats}; median per-call time minus the bare call's (same process); GC off\n")
    print(f"  {'overhead per call':<42} {'sync µs':>8}   {'async µs':>8}   {'calls/loop':>10}")
    results: dict[str, list[float]] = {}
    for name in PEERS:
        show(name, run_peer(name, args), results)
    print("\nexception capture: the caller's time per exception raised 5 frames deep (a fresh one each time)")
    show("exceptions", run_peer("exceptions", args), results)

    ref = results.get("obs capture_errors")
    print("\nsummary: overhead per call; ratio = overhead / obs capture_errors' (enabled)")
    print(f"  {'name':<42} {'sync µs':>8}  {'ratio':>7}   {'async µs':>8}  {'ratio':>7}")
    for label, (s, a) in results.items():
        if a is None or label == "bare":
            continue
        rs = f"{s / ref[0]:>6.1f}x" if ref and ref[0] > 0 else "      -"
        ra = f"{a / ref[1]:>6.1f}x" if ref and ref[1] > 0 else "      -"
        print(f"  {label:<42} {us(s)}  {rs}   {us(a)}  {ra}")
    o, p = results.get("obs.capture_exception"), results.get("posthog Client.capture_exception")
    if o and p and o[0] > 0:
        print(f"  {'capture_exception, posthog-python / obs':<42} {p[0] / o[0]:>7.1f}x")


if __name__ == "__main__":
    main()
