"""Cold import time: ``import obs`` vs ``import posthog``, each in a fresh interpreter.

    .venv/bin/python benchmarks/bench_import.py [--runs 10]

Each sample is a new ``python -c`` process that times the import statement alone with
``time.perf_counter`` (interpreter start-up and ``site`` are outside the timing) and counts the modules
it added to ``sys.modules``. Samples alternate between the two SDKs after one untimed warm-up each (so
``.pyc`` files exist; the OS file cache is warm: this is a fresh-process import, not a cold-disk one).

Also shown, for information: the import plus creating an enabled client (``obs.init(api_key=...)``,
which is when obs loads pydantic, anyio and httpx, vs ``posthog.Client(...)``), then shutting it down.

Target: median ``import obs`` <= 1/8 of median ``import posthog``. ``bench_coldstart.py`` measures the
whole short process (import, enable, one delivered event, exit) as CPU.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from _harness import REPO, clean_env, machine, median

TARGET = 8

_TEMPLATE = """
import sys, time, json
before = len(sys.modules)
t0 = time.perf_counter()
{body}
t1 = time.perf_counter()
added = len(sys.modules) - before
{after}
print(json.dumps({{"s": t1 - t0, "modules": added}}))
"""

CASES = {
    "import obs": ("import obs", ""),
    "import posthog": ("import posthog", ""),
    "import obs + obs.init(enabled)": (
        "import obs\nobs.init(api_key='phc_bench', host='http://127.0.0.1:9')",
        "obs.shutdown(1)",
    ),
    "import posthog + posthog.Client(...)": (
        "import posthog\nc = posthog.Client('phc_bench', host='http://127.0.0.1:9')",
        "c.shutdown()",
    ),
}


# The warm-up writes .pyc files, so that no timed import compiles (PYTHONDONTWRITEBYTECODE would prevent it).
_ENV = {k: v for k, v in clean_env().items() if k != "PYTHONDONTWRITEBYTECODE"}


def sample(case: str) -> dict[str, float]:
    body, after = CASES[case]
    code = _TEMPLATE.format(body=body, after=after)
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=str(REPO),
        env=_ENV,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10, help="fresh processes per case (default 10)")
    args = ap.parse_args()
    clean_env()

    print("bench_import: import time in a fresh interpreter (perf_counter around the statement)")
    print(f"machine: {machine()}")
    print(f"runs per case: {args.runs} (after one untimed warm-up each), alternating\n")

    pairs = [
        ("import obs", "import posthog"),
        ("import obs + obs.init(enabled)", "import posthog + posthog.Client(...)"),
    ]
    results: dict[str, list[dict[str, float]]] = {c: [] for c in CASES}
    for a, b in pairs:
        sample(a), sample(b)  # warm-up: compile .pyc, fill the OS file cache
        for r in range(args.runs):
            for case in (a, b) if r % 2 == 0 else (b, a):
                results[case].append(sample(case))

    print(f"  {'case':<38} {'median ms':>10} {'min ms':>8} {'max ms':>8} {'modules':>8}")
    for case, rs in results.items():
        ms = [x["s"] * 1000 for x in rs]
        print(
            f"  {case:<38} {median(ms):>10.1f} {min(ms):>8.1f} {max(ms):>8.1f}"
            f" {int(median([x['modules'] for x in rs])):>8}"
        )
    o = median([x["s"] for x in results["import obs"]])
    p = median([x["s"] for x in results["import posthog"]])
    ratio = p / o
    print(
        f"\nratio import posthog / import obs (medians): {ratio:.1f}x   "
        f"target >= {TARGET}x (obs <= 1/{TARGET}): {'MET' if ratio >= TARGET else 'MISSED'}"
    )
    oi = median([x["s"] for x in results["import obs + obs.init(enabled)"]])
    pi = median([x["s"] for x in results["import posthog + posthog.Client(...)"]])
    print(f"info: with an enabled client created: posthog-python / obs = {pi / oi:.1f}x")


if __name__ == "__main__":
    main()
