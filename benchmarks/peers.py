"""obs side by side with its peers: posthog-python (sync and async clients), sentry-sdk, langfuse, logfire.

    .venv/bin/python benchmarks/peers.py [--quick] [--peers obs,posthog,...] [--events 20000] [--repeats 3]

One run, one table. Five measurements, each peer in its own fresh process for each of them (a subprocess per
measurement and repeat), repeats interleaved across peers (the order rotates), medians, and every figure's
ratio to obs's:

1. **producer µs/call**: the caller thread's CPU (``time.thread_time_ns``) per call of the peer's "record one
   event": ``obs.capture``, posthog ``capture`` (sync ``Client``; ``AsyncClient`` inside its event loop),
   ``sentry_sdk.capture_message``, langfuse ``create_event``, ``logfire.info``; GC on; the SDK's background
   work runs (live, delivering to the collector) but another thread's CPU is not counted; flushed between
   timed loops, untimed; a loop is ``--calls`` calls, fewer for a slow peer (about 2.5 × ``--budget`` s).
2. **CPU µs per delivered event**: ``getrusage(RUSAGE_SELF)`` (every thread of the process) from the first
   timed call to the return of shutdown/flush, over ``--events`` events, divided by the events the collector
   received; before it, two warm-up events, each flushed, a second apart (as bench_e2e.py: steady state,
   not the SDK's one-off start-up, which the cold start measures); every peer's queue is raised above
   ``--events``, so none drops; anything short is shown.
3. **cold start ms CPU**: a fresh ``python -c`` that imports the SDK, initialises it with a key, records one
   event and exits once it is delivered; its user+sys CPU from ``getrusage(RUSAGE_CHILDREN)`` (interpreter
   start-up included: ``python -c pass`` is shown for reference).
4. **decorator overhead µs**: the caller's CPU per call of ``def f(x): return x + 1`` decorated, minus the
   bare function's (same process, interleaved loops); the exception path decorates ``def g(x): raise
   ValueError`` (caught by the loop) minus the bare raise. obs ``@capture_errors`` (``error_rate_limit=0``:
   every exception becomes an event) and ``@track``; posthog ``@scoped(capture_exceptions=True)``; sentry
   ``@trace`` in a transaction (it has no error-capturing decorator: the exception only marks the span);
   langfuse ``@observe()``; logfire ``@instrument()``. GC on: a decorator whose queued records keep objects
   alive (exceptions and their frames) pays for the collections that walk them.
5. **memory B/queued event**: the endpoint paused (the collector accepts connections and never answers),
   ``--events``/4 events recorded after a warm-up, then ``tracemalloc``'s traced-memory growth per event
   once the SDK's worker has picked up what it will (its first request hangs).

Where events go: a local collector (benchmarks/_collector.py, 127.0.0.1, its own process) speaking every
protocol: PostHog ``/batch/``, a Sentry DSN ``http://key@127.0.0.1:PORT/1`` (envelopes), langfuse's OTLP
endpoint (``host=``), logfire's OTLP via ``AdvancedOptions(base_url=...)`` and a dummy write token. It counts
delivered events (batch items, envelope ``event`` items, OTLP spans and log records). Nothing may reach the
network: each SDK process refuses (and reports) any connection or lookup that is not the loopback address,
and telemetry/update checks are off (none of these SDKs sends any with this configuration). Each SDK runs with
its defaults otherwise (gzip: off for obs and posthog-python, on for sentry, langfuse and logfire).

A peer whose package is missing stops the run with the ``pip install`` to fix it (never a silent skip).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.util
import json
import os
import posix
import resource
import socket
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _harness import REPO, WARM_UP, ServerProcess, _version, clean_env, machine, median, warm_up

HERE = os.path.dirname(os.path.abspath(__file__))
COLLECTOR = os.path.join(HERE, "_collector.py")
PEERS = ("obs", "posthog", "posthog-async", "sentry", "langfuse", "logfire")
LABEL = {
    "obs": "obs",
    "posthog": "posthog-python",
    "posthog-async": "posthog-python AsyncClient",
    "sentry": "sentry-sdk",
    "langfuse": "langfuse",
    "logfire": "logfire",
}
MODULE = {"obs": "obs", "posthog": "posthog", "posthog-async": "posthog", "sentry": "sentry_sdk"}
DIST = {"obs": "obs", "posthog": "posthog", "posthog-async": "posthog", "sentry": "sentry-sdk"}
# Why a cell reads n/a (a measurement the peer has nothing for); printed under the table.
NA = {
    "posthog-async": "posthog-python AsyncClient: decorators n/a, it has none of its own "
    "(posthog.scoped reports through the sync default client, measured in the posthog-python row)",
}
KEY = "phc_bench"
LOCAL = (None, "127.0.0.1", "::1", "localhost")
PROPS = {"a": 1, "b": "x"}
WARMUP = 200
blocked: list[str] = []


# ---------------------------------------------------------------- the collector, in its own process


def start_collector(*, hang: bool = False) -> ServerProcess:
    """benchmarks/_collector.py in another process, so it never competes with an SDK for the GIL."""
    server = ServerProcess(as_is=True, script=Path(COLLECTOR), args=["--hang"] if hang else [])
    if not server.url.startswith("http://127.0.0.1:"):
        server.close()
        raise RuntimeError(f"the collector did not start (printed {server.url!r})")
    return server


# ---------------------------------------------------------------- inside a peer's process


def guard_network() -> None:
    """Refuse (and record) any connection or name lookup that is not the loopback address."""
    real_connect, real_gai = socket.socket.connect, socket.getaddrinfo

    def connect(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in LOCAL:
            blocked.append(str(address))
            raise OSError(f"peers.py: refused connection to {address!r}")
        real_connect(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in LOCAL:
            blocked.append(str(host))
            raise socket.gaierror(f"peers.py: refused lookup of {host!r}")
        return real_gai(host, *args, **kwargs)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.getaddrinfo = getaddrinfo


def f(x: int) -> int:
    return x + 1


def g(x: int) -> int:
    raise ValueError(x)


class Peer:
    """One SDK, set up against ``url``: ``record(n)`` makes n calls, ``flush()`` waits for delivery,
    ``shutdown()`` ends it, ``decorators()`` lists ``(label, decorator, around)``."""

    def __init__(self, url: str, queue: int) -> None:
        self.url, self.queue = url, queue

    def record(self, n: int) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        raise NotImplementedError

    def shutdown(self) -> None:
        self.flush()

    def decorators(self) -> list[tuple[str, Callable[[Any], Any], Any]]:
        return []


class Obs(Peer):
    def __init__(self, url: str, queue: int) -> None:
        super().__init__(url, queue)
        import obs

        self.obs = obs
        obs.init(api_key=KEY, host=url, max_queue_size=queue, error_rate_limit=0)

    def record(self, n: int) -> None:
        capture = self.obs.capture
        for _ in range(n):
            capture("evt", PROPS, distinct_id="u1")

    def flush(self) -> None:
        self.obs.flush(60)

    def shutdown(self) -> None:
        self.obs.shutdown(60)

    def decorators(self) -> list[tuple[str, Callable[[Any], Any], Any]]:
        return [
            ("obs @capture_errors", self.obs.capture_errors, None),
            ("obs @track", self.obs.track("evt"), None),
        ]


class Posthog(Peer):
    def __init__(self, url: str, queue: int) -> None:
        super().__init__(url, queue)
        import posthog

        self.posthog = posthog
        self.client = posthog.Client(KEY, host=url, max_queue_size=queue)
        posthog.default_client = self.client  # what @scoped reports exceptions through

    def record(self, n: int) -> None:
        capture = self.client.capture
        for _ in range(n):
            capture("evt", distinct_id="u1", properties=PROPS)

    def flush(self) -> None:
        self.client.flush()

    def shutdown(self) -> None:
        self.client.shutdown()

    def decorators(self) -> list[tuple[str, Callable[[Any], Any], Any]]:
        return [
            (
                "posthog-python @scoped(capture_exceptions=True)",
                self.posthog.scoped(capture_exceptions=True),
                None,
            )
        ]


class PosthogAsync(Peer):
    """posthog-python's asyncio client: ``capture`` is called inside its event loop, whose tasks send."""

    def __init__(self, url: str, queue: int) -> None:
        super().__init__(url, queue)
        from posthog.async_client import AsyncClient

        self.loop = asyncio.new_event_loop()

        async def make() -> Any:
            return AsyncClient(KEY, host=url, max_queue_size=queue)

        self.client = self.loop.run_until_complete(make())

    def record(self, n: int) -> None:
        capture = self.client.capture

        async def go() -> None:
            for _ in range(n):
                capture("evt", distinct_id="u1", properties=PROPS)

        self.loop.run_until_complete(go())

    def flush(self) -> None:
        self.loop.run_until_complete(self.client.flush(60))

    def shutdown(self) -> None:
        self.loop.run_until_complete(self.client.shutdown())

    def idle(self, seconds: float) -> None:
        self.loop.run_until_complete(asyncio.sleep(seconds))


class Sentry(Peer):
    tracing = False

    def __init__(self, url: str, queue: int) -> None:
        super().__init__(url, queue)
        import sentry_sdk

        self.sdk = sentry_sdk
        port = url.rsplit(":", 1)[1]
        sentry_sdk.init(
            dsn=f"http://bench@127.0.0.1:{port}/1",
            transport_queue_size=queue,  # default 100 envelopes: a burst would be dropped
            # Tracing (for @trace) only in the decorator measurement: error monitoring alone elsewhere.
            traces_sample_rate=1.0 if self.tracing else None,
            _experiments={"max_spans": 10**9},
        )

    def record(self, n: int) -> None:
        capture = self.sdk.capture_message
        for _ in range(n):
            capture("evt")

    def flush(self) -> None:
        self.sdk.flush(60)

    def decorators(self) -> list[tuple[str, Callable[[Any], Any], Any]]:
        txn = lambda: self.sdk.start_transaction(name="bench", op="bench")  # noqa: E731
        return [("sentry-sdk @trace (in a transaction)", self.sdk.trace, txn)]


class Langfuse(Peer):
    def __init__(self, url: str, queue: int) -> None:
        super().__init__(url, queue)
        from langfuse import Langfuse as Client
        from langfuse import observe

        self.observe = observe
        self.client = Client(public_key="pk-lf-bench", secret_key="sk-lf-bench", host=url)

    def record(self, n: int) -> None:
        create = self.client.create_event
        for _ in range(n):
            create(name="evt", metadata=PROPS)

    def flush(self) -> None:
        self.client.flush()

    def shutdown(self) -> None:
        self.client.shutdown()

    def decorators(self) -> list[tuple[str, Callable[[Any], Any], Any]]:
        return [("langfuse @observe()", self.observe(), None)]


class Logfire(Peer):
    def __init__(self, url: str, queue: int) -> None:
        super().__init__(url, queue)
        import logfire

        self.logfire = logfire
        logfire.configure(
            token="pylf_v1_us_bench",
            send_to_logfire=True,
            console=False,
            advanced=logfire.AdvancedOptions(base_url=url),
        )

    def record(self, n: int) -> None:
        info = self.logfire.info
        for _ in range(n):
            info("evt", a=1, b="x")

    def flush(self) -> None:
        self.logfire.force_flush(60_000)

    def shutdown(self) -> None:
        self.logfire.shutdown(60_000)

    def decorators(self) -> list[tuple[str, Callable[[Any], Any], Any]]:
        return [("logfire @instrument()", self.logfire.instrument(), None)]


CLASSES: dict[str, type[Peer]] = {
    "obs": Obs,
    "posthog": Posthog,
    "posthog-async": PosthogAsync,
    "sentry": Sentry,
    "langfuse": Langfuse,
    "logfire": Logfire,
}


def cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def thread_loop(fn: Callable[[], None]) -> float:
    """The calling thread's CPU seconds for ``fn()``."""
    t0 = time.thread_time_ns()
    fn()
    return (time.thread_time_ns() - t0) / 1e9


def m_producer(peer: Peer, args: argparse.Namespace) -> dict[str, Any]:
    per_call = thread_loop(lambda: peer.record(WARMUP)) / WARMUP
    peer.flush()
    n = max(WARMUP, min(args.calls, int(args.budget * 2.5 / max(per_call, 1e-9))))  # a slow peer: fewer calls
    ts = []
    for _ in range(args.loops):
        ts.append(thread_loop(lambda: peer.record(n)) / n)
        peer.flush()
    peer.shutdown()
    return {"value": median(ts) * 1e6, "sent": WARMUP + args.loops * n}


def m_e2e(peer: Peer, args: argparse.Namespace) -> dict[str, Any]:
    warm_up(lambda: peer.record(1), peer.flush, getattr(peer, "idle", time.sleep))  # as bench_e2e.py
    c0, w0 = cpu_self(), time.perf_counter()
    peer.record(args.events)
    peer.shutdown()
    sent = args.events + WARM_UP
    return {"cpu_s": cpu_self() - c0, "wall_s": time.perf_counter() - w0, "sent": sent, "warm": WARM_UP}


def _calls(fn: Callable[[int], Any], n: int, catch: bool) -> Callable[[], None]:
    if not catch:
        return lambda: [fn(1) for _ in range(n)] and None

    def run() -> None:
        for _ in range(n):
            with contextlib.suppress(ValueError):
                fn(1)

    return run


def m_decorators(peer: Peer, args: argparse.Namespace) -> dict[str, Any]:
    """Rows ``{label: [success µs, exception µs]}``: overhead over the bare functions, same process."""
    cases: list[tuple[str, Any, Any, Any]] = [("bare", f, g, contextlib.nullcontext)]
    for label, deco, around in peer.decorators():
        cases.append((label, deco(f), deco(g), around or contextlib.nullcontext))
    ts: dict[tuple[str, bool], list[float]] = {}
    n: dict[tuple[str, bool], int] = {}
    for label, fs, fe, around in cases:  # warm-up, which also sizes each loop to about --budget seconds
        for exc, fn in ((False, fs), (True, fe)):
            with around():
                per = thread_loop(_calls(fn, WARMUP, exc)) / WARMUP
            n[label, exc] = max(WARMUP, min(args.calls, int(args.budget / max(per, 1e-9))))
            ts[label, exc] = []
        peer.flush()
    for r in range(args.loops):
        for label, fs, fe, around in cases if r % 2 == 0 else cases[::-1]:
            for exc, fn in ((False, fs), (True, fe)):
                k = n[label, exc]
                with around():
                    ts[label, exc].append(thread_loop(_calls(fn, k, exc)) / k)
                peer.flush()
    peer.shutdown()
    base = {exc: median(ts["bare", exc]) for exc in (False, True)}
    rows = {
        label: [(median(ts[label, False]) - base[False]) * 1e6, (median(ts[label, True]) - base[True]) * 1e6]
        for label, *_ in cases[1:]
    }
    return {"rows": rows, "bare": [base[False] * 1e6, base[True] * 1e6]}


def m_memory(peer: Peer, args: argparse.Namespace) -> dict[str, Any]:
    """Traced-memory growth per event while the endpoint never answers (the worker is then left hanging in
    its first request, so the caller leaves the process without shutting the SDK down)."""
    n = max(WARMUP, args.events // 4)
    idle: Callable[[float], None] = getattr(peer, "idle", time.sleep)
    peer.record(WARMUP)  # lazily built structures exist; the worker takes a first batch and blocks on it
    idle(0.5)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    peer.record(n)
    idle(0.5)  # the worker moves what it will from the queue into its (hanging) request
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return {"value": grown / n, "queued": n}


MEASURES: dict[str, Callable[[Peer, argparse.Namespace], dict[str, Any]]] = {
    "producer": m_producer,
    "e2e": m_e2e,
    "decorators": m_decorators,
    "memory": m_memory,
}


def child(args: argparse.Namespace) -> None:
    """One measurement of one peer in this fresh interpreter; one JSON line on stdout."""
    guard_network()
    queue = max(args.events, args.calls * args.loops + WARMUP, 10_000) * 2
    Sentry.tracing = args.measure == "decorators"
    peer = CLASSES[args.peer](args.url, queue)
    out = MEASURES[args.measure](peer, args)
    print("\n" + json.dumps({**out, "blocked": blocked}), flush=True)
    if args.measure == "memory":
        # Its worker is stuck in a request that is never answered: leave at once. posix._exit, because
        # logfire wraps os._exit to flush first (which would wait on that request).
        posix._exit(0)


# ---------------------------------------------------------------- cold start: a whole fresh process

COLD: dict[str, str] = {
    "python": "pass",
    "obs": """
import obs
obs.init(api_key="phc_bench", host=URL)
obs.capture("evt", {"a": 1, "b": "x"}, distinct_id="u1")
obs.shutdown()
""",
    "posthog": """
import posthog
c = posthog.Client("phc_bench", host=URL)
c.capture("evt", distinct_id="u1", properties={"a": 1, "b": "x"})
c.shutdown()
""",
    "posthog-async": """
import asyncio
from posthog.async_client import AsyncClient
async def main():
    c = AsyncClient("phc_bench", host=URL)
    c.capture("evt", distinct_id="u1", properties={"a": 1, "b": "x"})
    await c.shutdown()
asyncio.run(main())
""",
    "sentry": """
import sentry_sdk
sentry_sdk.init(dsn="http://bench@" + URL.split("//")[1] + "/1")
sentry_sdk.capture_message("evt")
sentry_sdk.flush()
""",
    # For reference: sentry-sdk's init imports every installed library it has an auto-enabled integration for
    # (openai, anthropic, langchain, fastapi, ... are installed here); this row turns that off.
    "sentry, auto_enabling_integrations=False": """
import sentry_sdk
sentry_sdk.init(dsn="http://bench@" + URL.split("//")[1] + "/1", auto_enabling_integrations=False)
sentry_sdk.capture_message("evt")
sentry_sdk.flush()
""",
    "langfuse": """
from langfuse import Langfuse
lf = Langfuse(public_key="pk-lf-bench", secret_key="sk-lf-bench", host=URL)
lf.create_event(name="evt", metadata={"a": 1, "b": "x"})
lf.shutdown()
""",
    "logfire": """
import logfire
logfire.configure(token="pylf_v1_us_bench", send_to_logfire=True, console=False,
                  advanced=logfire.AdvancedOptions(base_url=URL))
logfire.info("evt", a=1, b="x")
logfire.shutdown()
""",
}
# Cold start rows shown for reference, and their labels.
REFERENCE = {
    "python": "`python -c pass`",
    "sentry, auto_enabling_integrations=False": "sentry-sdk, `auto_enabling_integrations=False`",
}
GUARD = """
import socket
_LOCAL = (None, "127.0.0.1", "::1", "localhost")
_connect, _gai = socket.socket.connect, socket.getaddrinfo
def _c(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in _LOCAL:
        raise SystemExit("peers.py: refused connection to %r" % (address,))
    _connect(self, address)
def _g(host, *a, **k):
    if host not in _LOCAL:
        raise SystemExit("peers.py: refused lookup of %r" % (host,))
    return _gai(host, *a, **k)
socket.socket.connect, socket.getaddrinfo = _c, _g
"""


def cold(peer: str, collector: ServerProcess, env: dict[str, str]) -> dict[str, Any]:
    before = collector.count()
    code = f"URL = {collector.url!r}\n{GUARD}\n{COLD[peer]}"
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=str(REPO)
    )
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        return {"error": f"exit {proc.returncode}: {proc.stderr.strip()[-600:]}"}
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    got = 0 if peer == "python" else collector.settled_count(before + 1) - before
    return {"value": cpu * 1000, "delivered": got}


# ---------------------------------------------------------------- the parent: schedule, collect, print


def child_env(args: argparse.Namespace) -> dict[str, str]:
    env = clean_env()
    for k in list(env):  # the peers' own settings: none may configure (or redirect) a peer
        if k.startswith(("SENTRY_", "LANGFUSE_", "LOGFIRE_", "OTEL_")):
            del env[k]
    # OTel's batch processor keeps 2,048 spans by default and drops the rest: sized like the other queues
    env["OTEL_BSP_MAX_QUEUE_SIZE"] = str(max(args.events, 10_000) * 2)
    env["OTEL_BLRP_MAX_QUEUE_SIZE"] = env["OTEL_BSP_MAX_QUEUE_SIZE"]
    env["PYTHONPATH"] = HERE
    return env


def run_child(
    peer: str, measure: str, url: str, args: argparse.Namespace, env: dict[str, str]
) -> dict[str, Any]:
    flags = ["--events", args.events, "--calls", args.calls, "--loops", args.loops, "--budget", args.budget]
    cmd = [sys.executable, __file__, "--child", peer, measure, url, *map(str, flags)]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env=env, cwd=str(REPO), timeout=args.timeout
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {args.timeout} s"}
    last = proc.stdout.strip().splitlines()[-1:] or [""]
    if proc.returncode != 0 or not last[0].startswith("{"):
        tail = "\n    ".join(proc.stderr.strip().splitlines()[-8:])
        return {"error": f"failed (exit {proc.returncode}):\n    {tail}"}
    out: dict[str, Any] = json.loads(last[0])
    return out


def check_installed(peers: list[str]) -> None:
    missing = [p for p in peers if importlib.util.find_spec(MODULE.get(p, p)) is None]
    if missing:
        sys.exit(
            f"peers.py: not installed: {', '.join(DIST.get(p, p) for p in missing)} "
            f"(the peers come from the bench extra: .venv/bin/pip install -e '.[bench]')"
        )


def fmt(v: float | None, ref: float | None, digits: int = 1) -> str:
    if v is None:
        return "n/a"
    s = f"{v:,.{digits}f}"
    if ref and ref > 0 and v > 0:
        s += f" ({v / ref:.1f}×)"
    return s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a short smoke run (few events, one repeat)")
    ap.add_argument("--peers", default=",".join(PEERS), help=f"comma-separated, from {','.join(PEERS)}")
    ap.add_argument("--events", type=int, default=20_000, help="events per delivery run (default 20000)")
    ap.add_argument("--repeats", type=int, default=3, help="processes per peer and measurement (default 3)")
    ap.add_argument("--calls", type=int, default=5_000, help="calls per timed loop, at most (default 5000)")
    ap.add_argument("--loops", type=int, default=5, help="timed loops per process (default 5)")
    ap.add_argument(
        "--budget", type=float, default=0.2, help="seconds per decorator loop, about (a producer loop: 2.5x)"
    )
    ap.add_argument("--timeout", type=float, default=600, help="seconds before a peer's process is given up")
    ap.add_argument("--child", nargs=3, metavar=("PEER", "MEASURE", "URL"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.events, args.repeats, args.calls, args.loops, args.budget = 1_000, 1, 500, 2, 0.02
    if args.child:
        args.peer, args.measure, args.url = args.child
        return child(args)

    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    unknown = sorted(set(peers) - set(PEERS))
    if unknown or "obs" not in peers:
        sys.exit(
            f"peers.py: --peers must include obs and name only {', '.join(PEERS)} (got {unknown or peers})"
        )
    check_installed(peers)
    env = child_env(args)
    clean_env()

    print("peers.py: obs and its peers, each in a fresh process per measurement; medians; (×) = ratio to obs")
    print(f"machine: {machine()}")
    dists = sorted({DIST.get(p, p) for p in peers} | {"opentelemetry-sdk"})
    print("versions: " + ", ".join(f"{d} {_version(d)}" for d in dists))
    print(
        f"events per delivery run: {args.events:,}; repeats: {args.repeats}; "
        f"producer: {args.loops} loops of up to {args.calls:,} calls; "
        f"memory: {max(WARMUP, args.events // 4):,} queued\n"
    )

    res: dict[str, dict[str, list[dict[str, Any]]]] = {p: {} for p in peers}
    errors: list[str] = []
    refused: set[str] = set()
    live, paused = start_collector(), start_collector(hang=True)
    try:
        for r in range(args.repeats):
            order = peers[r % len(peers) :] + peers[: r % len(peers)]  # rotate: no peer always runs first
            print(f"repeat {r + 1}/{args.repeats}: {' '.join(order)}", flush=True)
            for p in [*REFERENCE, *order]:
                if p in REFERENCE:
                    if p == "python" or "sentry" in peers:
                        res.setdefault(p, {}).setdefault("cold", []).append(cold(p, live, env))
                    continue
                res[p].setdefault("cold", []).append(cold(p, live, env))
                for m in ("producer", "e2e", "decorators", "memory"):
                    before = live.count()
                    out = run_child(p, m, paused.url if m == "memory" else live.url, args, env)
                    if "error" not in out and m in ("producer", "e2e"):
                        out["received"] = live.settled_count(before + out["sent"]) - before
                    refused.update(out.get("blocked", []))
                    res[p].setdefault(m, []).append(out)
    finally:
        live.close()
        paused.close()

    table(peers, res, args, errors)
    if refused:
        print(f"\n*** refused non-local network access: {sorted(refused)} ***")
    if errors:
        print("\nerrors:\n  " + "\n  ".join(errors))
        sys.exit(1)


def table(peers: list[str], res: dict[str, Any], args: argparse.Namespace, errors: list[str]) -> None:
    def ok(p: str, m: str) -> list[dict[str, Any]]:
        good = []
        for out in res.get(p, {}).get(m, []):
            if "error" in out:
                errors.append(f"{LABEL.get(p, p)} {m}: {out['error']}")
            else:
                good.append(out)
        return good

    summary: dict[str, dict[str, float | None]] = {}
    losses: list[str] = []
    deco: dict[str, list[float]] = {}
    for p in peers:
        row: dict[str, float | None] = {}
        outs = ok(p, "producer")
        row["producer"] = median([o["value"] for o in outs]) if outs else None
        outs = ok(p, "e2e")
        if outs:
            # per event delivered of those timed (the warm-up ones are sent, not timed)
            row["e2e"] = median([o["cpu_s"] / max(o["received"] - o.get("warm", 0), 1) * 1e6 for o in outs])
            row["received"] = min(o["received"] - o.get("warm", 0) for o in outs)  # of the timed events
            for o in outs + ok(p, "producer"):
                if o["received"] != o["sent"]:
                    losses.append(f"{LABEL[p]}: {o['received']:,} of {o['sent']:,} delivered")
        else:
            row["e2e"] = row["received"] = None
        outs = ok(p, "cold")
        row["cold"] = median([o["value"] for o in outs]) if outs else None
        if any(o["delivered"] < 1 for o in outs):
            losses.append(f"{LABEL[p]} cold start: the event was not delivered")
        outs = ok(p, "memory")
        row["memory"] = median([o["value"] for o in outs]) if outs else None
        outs = ok(p, "decorators")
        for o in outs:
            for label, (s, e) in o["rows"].items():
                deco.setdefault(label + "\x00s", []).append(s)
                deco.setdefault(label + "\x00e", []).append(e)
        labels = list(outs[0]["rows"]) if outs else []
        row["deco_s"] = median(deco[labels[0] + "\x00s"]) if labels else None
        row["deco_e"] = median(deco[labels[0] + "\x00e"]) if labels else None
        summary[p] = row

    o = summary["obs"]
    print(
        "\n| SDK | producer µs/call | CPU µs per delivered event | cold start ms CPU "
        "| decorator µs, success | decorator µs, exception | memory B per queued event |"
    )
    print("|---|---|---|---|---|---|---|")
    for p in peers:
        s = summary[p]
        r = dict.fromkeys(s) if p == "obs" else o  # obs is the reference: no ratio on its own row
        print(
            f"| {LABEL[p]} | {fmt(s['producer'], r['producer'], 2)} | {fmt(s['e2e'], r['e2e'])} | "
            f"{fmt(s['cold'], r['cold'], 0)} | {fmt(s['deco_s'], r['deco_s'], 2)} | "
            f"{fmt(s['deco_e'], r['deco_e'], 2)} | {fmt(s['memory'], r['memory'], 0)} |"
        )
    for name, label in REFERENCE.items():
        outs = ok(name, "cold")
        if outs:
            ref = fmt(median([x["value"] for x in outs]), o["cold"] if name != "python" else None, 0)
            print(f"| ({label}, for reference) | | | {ref} | | | |")

    for p in peers:
        if p in NA:
            print(f"\nn/a: {NA[p]}")
    print("\ndecorators: overhead per call over the bare function (µs, caller's CPU; median over processes)")
    print("\n| decorator | success path | exception path |")
    print("|---|---|---|")
    ref_s, ref_e = o["deco_s"], o["deco_e"]
    for key in [k for k in deco if k.endswith("\x00s")]:
        label = key[:-2]
        s, e = median(deco[label + "\x00s"]), median(deco[label + "\x00e"])
        ref = (None, None) if label == "obs @capture_errors" else (ref_s, ref_e)
        print(f"| {label} | {fmt(s, ref[0], 2)} | {fmt(e, ref[1], 2)} |")
    print(
        "\n(×) = the SDK's figure / obs's (obs @capture_errors for decorators): above 1 the peer costs more."
        "\ndelivered in the CPU runs: "
        + ", ".join(f"{LABEL[p]} {summary[p]['received'] or 0:,.0f}/{args.events:,}" for p in peers)
    )
    if losses:
        print("*** LOSS: " + "; ".join(losses) + " ***")
        errors.append("events lost: " + "; ".join(losses))


if __name__ == "__main__":
    main()
