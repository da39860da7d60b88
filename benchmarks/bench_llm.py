"""Latency an LLM integration adds per call: obs vs posthog-python, on the openai and anthropic clients.

    .venv/bin/python benchmarks/bench_llm.py [--rounds 30] [--calls 50] [--warmup 50]

The calls, against ``tests/llm_servers.py`` (an OpenAI + Anthropic shaped server; reply "Hello from the local
model", 12 input and 5 output tokens) running in another process:

- openai chat: ``client.chat.completions.create(model="gpt-4o-mini", messages=[...])``
- openai chat, streamed: the same with ``stream=True``, the returned iterator consumed to the end
- anthropic messages: ``client.messages.create(model="claude-haiku-4-5", max_tokens=100, messages=[...])``

each through three clients (``max_retries=0``, each with its own connection pool):

- bare: ``openai.OpenAI(base_url=..., api_key=...)`` / ``anthropic.Anthropic(...)``
- obs: the same client after ``obs.instrument_openai(client)`` / ``obs.instrument_anthropic(client)``, with
  ``obs.init(api_key=..., host=CAPTURE_URL, llm_payloads=True)``
- posthog-python: ``posthog.ai.openai.OpenAI(posthog_client=ph, ...)`` / ``posthog.ai.anthropic.Anthropic``
  with ``ph = posthog.Client(api_key, host=CAPTURE_URL)``

Both SDKs capture payloads (posthog-python's default; obs ``llm_payloads=True``), keep their defaults
otherwise (a background thread sending 100 events per request or every 0.5 s) and send to the same
``tests/capture_server.py`` process. A figure is the wall time of one call on the caller's thread, from
the method call to the returned response (streamed: to the end of the iterator). The variants take turns:
each round runs ``--calls`` calls of every (call, client) pair, the order of the three clients rotating
from round to round, so drift hits all of them alike; after each batch the SDK that made it is flushed
(untimed), so one SDK's sending never lands in another's timings. GC stays on. "added" is the wrapped
client's median (p90) minus the bare client's. The process may only connect to 127.0.0.1.

Both SDKs add ``stream_options.include_usage`` to a streamed chat call that did not ask for usage, so the
server sends one more chunk; the row "bare, usage asked" is the bare client making that same request
itself, which splits the streamed figure into the cost of that chunk and the SDK's own work.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import time
from collections.abc import Callable
from typing import Any

from _harness import REPO, ServerProcess, _version, clean_env, machine, median

LLM_SERVER = REPO / "tests" / "llm_servers.py"
MESSAGES = [{"role": "user", "content": "What is the weather in Paris?"}]
GPT = "gpt-4o-mini"
CLAUDE = "claude-haiku-4-5"
VARIANTS = ("bare", "obs", "posthog-python")
blocked: list[str] = []


def guard_network() -> None:
    """Refuse (and record) any connection that is not to the loopback address."""
    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in ("127.0.0.1", "::1"):
            blocked.append(str(address))
            raise OSError(f"bench_llm: refused connection to {address!r}")
        real_connect(self, address)

    socket.socket.connect = connect  # type: ignore[method-assign]


def chat(client: Any) -> None:
    client.chat.completions.create(model=GPT, messages=MESSAGES)


def chat_streamed(client: Any) -> None:
    for _ in client.chat.completions.create(model=GPT, messages=MESSAGES, stream=True):
        pass


def chat_streamed_usage(client: Any) -> None:
    """What both SDKs turn a streamed call into: one more chunk (the usage) to send, read and parse."""
    options = {"include_usage": True}
    for _ in client.chat.completions.create(
        model=GPT, messages=MESSAGES, stream=True, stream_options=options
    ):
        pass


def messages(client: Any) -> None:
    client.messages.create(model=CLAUDE, max_tokens=100, messages=MESSAGES)


USAGE_ASKED = "bare, usage asked"
# (call, provider, the call's function, extra (variant, function) pairs run on the bare client)
CALLS: list[tuple[str, str, Callable[[Any], None], dict[str, Callable[[Any], None]]]] = [
    ("openai chat", "openai", chat, {}),
    ("openai chat, streamed", "openai", chat_streamed, {USAGE_ASKED: chat_streamed_usage}),
    ("anthropic messages", "anthropic", messages, {}),
]


def clients(llm_url: str, ph: Any) -> dict[tuple[str, str], Any]:
    """The client for each (provider, variant)."""
    import anthropic
    import openai
    from posthog.ai.anthropic import Anthropic as PostHogAnthropic
    from posthog.ai.openai import OpenAI as PostHogOpenAI

    import obs

    oa = {"base_url": llm_url + "/v1", "api_key": "sk-bench", "max_retries": 0}
    an = {"base_url": llm_url, "api_key": "sk-ant-bench", "max_retries": 0}
    return {
        ("openai", "bare"): openai.OpenAI(**oa),
        ("openai", "obs"): obs.instrument_openai(openai.OpenAI(**oa)),
        ("openai", "posthog-python"): PostHogOpenAI(posthog_client=ph, **oa),
        ("anthropic", "bare"): anthropic.Anthropic(**an),
        ("anthropic", "obs"): obs.instrument_anthropic(anthropic.Anthropic(**an)),
        ("anthropic", "posthog-python"): PostHogAnthropic(posthog_client=ph, **an),
    }


def timed(fn: Callable[[Any], None], client: Any, n: int, out: list[int]) -> None:
    clock = time.perf_counter_ns
    for _ in range(n):
        t0 = clock()
        fn(client)
        out.append(clock() - t0)


def p90(xs: list[int]) -> float:
    return statistics.quantiles(xs, n=10)[8]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=30, help="rounds of interleaved batches (default 30)")
    ap.add_argument("--calls", type=int, default=50, help="calls per (call, client) batch (default 50)")
    ap.add_argument("--warmup", type=int, default=50, help="untimed calls per (call, client) first (50)")
    args = ap.parse_args()
    clean_env()
    guard_network()
    started = time.perf_counter()

    import posthog

    import obs

    print("bench_llm: wall time per LLM call through a local OpenAI/Anthropic-shaped server, in µs")
    print(f"machine: {machine()}")
    print(f"clients: openai {_version('openai')}, anthropic {_version('anthropic')}")
    print(
        f"{args.rounds} rounds x {args.calls} calls per (call, client), after {args.warmup} untimed; "
        "clients interleaved; GC on\n"
    )
    with ServerProcess(script=LLM_SERVER) as llm, ServerProcess() as capture:
        obs.init(api_key="phc_bench", host=capture.url, llm_payloads=True)
        ph = posthog.Client("phc_bench", host=capture.url)
        flush: dict[str, Callable[[], Any]] = {
            "bare": lambda: None,
            "obs": lambda: obs.flush(30),
            "posthog-python": ph.flush,
        }
        by = clients(llm.url, ph)
        made = dict.fromkeys(VARIANTS, 0)
        # (call, variant) -> (function, client, the SDK whose events it makes)
        pairs: dict[tuple[str, str], tuple[Callable[[Any], None], Any, str]] = {}
        for name, provider, fn, extra in CALLS:
            for v in VARIANTS:
                pairs[name, v] = (fn, by[provider, v], v)
                if v == "bare":
                    pairs.update({(name, e): (efn, by[provider, v], v) for e, efn in extra.items()})
        ts: dict[tuple[str, str], list[int]] = {key: [] for key in pairs}
        for fn, client, sdk in pairs.values():
            timed(fn, client, args.warmup, [])
            flush[sdk]()
            made[sdk] += args.warmup
        for r in range(args.rounds):
            for name, *_ in CALLS:
                variants = [v for c, v in pairs if c == name]
                for v in variants[r % len(variants) :] + variants[: r % len(variants)]:
                    fn, client, sdk = pairs[name, v]
                    timed(fn, client, args.calls, ts[name, v])
                    flush[sdk]()
                    made[sdk] += args.calls
        obs.flush(30)
        ph.flush()
        expected = made["obs"] + made["posthog-python"]
        received = capture.settled_count(expected)
        stats = obs.get_client().stats()
        obs.shutdown(10)
        ph.shutdown()

    print(f"  {'call':<24}{'client':<20}{'median':>9}{'p90':>9}{'added median':>14}{'added p90':>11}")
    rows: dict[tuple[str, str], tuple[float, float]] = {}
    for (name, v), xs in ts.items():
        b_med, b_p90 = median(ts[name, "bare"]) / 1e3, p90(ts[name, "bare"]) / 1e3
        med, q = median(xs) / 1e3, p90(xs) / 1e3
        rows[name, v] = (med - b_med, q - b_p90)
        added = "" if v == "bare" else f"{med - b_med:>+14.0f}{q - b_p90:>+11.0f}"
        print(f"  {name:<24}{v:<20}{med:>9.0f}{q:>9.0f}{added}")
    print("\n  added latency, posthog-python / obs (medians):")
    for name, *_ in CALLS:
        o, p = rows[name, "obs"][0], rows[name, "posthog-python"][0]
        ratio = f"{p / o:.1f}x" if o > 0 else "-"
        print(f"    {name:<24} obs {o:>+6.0f} µs, posthog-python {p:>+6.0f} µs: {ratio}")
        if (name, USAGE_ASKED) in rows:  # the same, over the bare call that asked for usage itself
            u = rows[name, USAGE_ASKED][0]
            print(
                f"    {'  over ' + USAGE_ASKED:<24} obs {o - u:>+6.0f} µs, posthog-python {p - u:>+6.0f} µs"
            )
    dropped = sum(v for k, v in stats.items() if k.startswith("dropped"))
    print(
        f"\n$ai_generation events at the capture server: {received:,} of {expected:,} "
        f"(obs {made['obs']:,}, {dropped} dropped; posthog-python {made['posthog-python']:,})"
    )
    if blocked:
        print(f"*** refused non-local network access: {sorted(set(blocked))} ***")
    print(f"total run time {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
