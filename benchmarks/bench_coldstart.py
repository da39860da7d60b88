"""Enabled cold start: a whole short process that imports the SDK, enables it, captures one event and exits.

    .venv/bin/python benchmarks/bench_coldstart.py [--runs 11]

Each sample is a fresh ``python -c`` process; its CPU (user + system, every thread: interpreter start-up,
imports, the SDK's background work, serialisation, the HTTP request, the exit flush) is read with
``getrusage(RUSAGE_CHILDREN)`` around it. The event goes to ``tests/capture_server.py`` in another process,
and every sample checks that the collector received exactly one more event (a sample whose event is lost
fails the run). Samples alternate between the SDKs after one untimed warm-up each; medians and the ratio
are printed.

Two environments, both with logfire installed (the ``bench`` extra, which ``make bench`` installs):
- **no pydantic plugins**: ``PYDANTIC_DISABLE_PLUGINS=__all__``, as a process without logfire would be;
- **logfire's pydantic plugin active**: the default. Building any pydantic model loads every installed
  pydantic plugin, logfire's imports logfire (~0.2 s): the obs process reports whether that happened.

Also shown, for information: ``import obs`` / ``import posthog`` alone and an empty interpreter, as whole
process CPU (``bench_import.py`` times the import statement itself).

Target: the obs process's CPU <= 1/2 of the posthog-python process's, in both environments.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from importlib import metadata

from _harness import REPO, ServerProcess, clean_env, machine, median

TARGET = 2

# {url} is the collector; every script prints one JSON line: which heavy modules its process loaded.
_PROBE = (
    "import atexit, json, sys\n"
    "atexit.register(lambda: print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules))))\n"
)
_HEAVY = ("pydantic", "pydantic_settings", "httpx", "anyio", "logfire", "requests")
SCRIPTS = {
    "obs": "import obs\n"
    "obs.init(api_key='phc_bench', host={url!r})\n"
    "obs.capture('cold start', {{'n': 1}}, distinct_id='u1')\n",
    "posthog-python": "import posthog\n"
    "client = posthog.Client('phc_bench', host={url!r})\n"
    "client.capture('cold start', distinct_id='u1', properties={{'n': 1}})\n",
    "import obs": "import obs\n",
    "import posthog": "import posthog\n",
    "python -c pass": "pass\n",
}
DELIVERS = ("obs", "posthog-python")
ENVIRONMENTS = {
    "no pydantic plugins": {"PYDANTIC_DISABLE_PLUGINS": "__all__"},
    "logfire's pydantic plugin active": {},
}


def sample(case: str, url: str, env: dict[str, str]) -> tuple[float, list[str]]:
    """(CPU seconds of one fresh process running ``case``, the heavy modules it loaded)."""
    code = _PROBE.format(heavy=_HEAVY) + SCRIPTS[case].format(url=url)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=str(REPO), env=env, timeout=60
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise SystemExit(f"{case} failed:\n{out.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=11, help="fresh processes per case and environment")
    args = ap.parse_args()
    base = clean_env()
    base.pop("PYDANTIC_DISABLE_PLUGINS", None)
    base.pop("PYTHONDONTWRITEBYTECODE", None)  # the warm-up writes .pyc files: no sample compiles

    plugins = [ep.name for ep in metadata.entry_points(group="pydantic")]
    print("bench_coldstart: whole-process CPU of a fresh process (getrusage RUSAGE_CHILDREN)")
    print(f"machine: {machine()}")
    print(f"pydantic plugins installed: {plugins or 'none'}; runs per case: {args.runs}, alternating\n")
    if "logfire-plugin" not in plugins:
        print("note: logfire is not installed (`pip install -e '.[bench]'`): both environments are alike\n")

    met = True
    with ServerProcess() as server:
        for label, extra in ENVIRONMENTS.items():
            env = {**base, **extra}
            cpu: dict[str, list[float]] = {c: [] for c in SCRIPTS}
            loaded: dict[str, list[str]] = {}
            expected = server.count()
            for case in SCRIPTS:  # warm-up: .pyc files, the OS file cache
                sample(case, server.url, env)
                expected += case in DELIVERS
            for r in range(args.runs):
                order = list(SCRIPTS) if r % 2 == 0 else list(reversed(SCRIPTS))
                for case in order:
                    seconds, mods = sample(case, server.url, env)
                    cpu[case].append(seconds * 1000)
                    loaded[case] = mods
                    if case in DELIVERS:
                        expected += 1
                        got = server.settled_count(expected)
                        if got != expected:
                            raise SystemExit(f"{case}: its event was not delivered ({got} of {expected})")
            print(f"[{label}]")
            print(f"  {'process':<16} {'median ms CPU':>14} {'min':>7} {'max':>7}   loaded")
            for case, ms in cpu.items():
                print(
                    f"  {case:<16} {median(ms):>14.1f} {min(ms):>7.1f} {max(ms):>7.1f}   "
                    f"{', '.join(loaded[case]) or '-'}"
                )
            ratio = median(cpu["posthog-python"]) / median(cpu["obs"])
            ok = ratio >= TARGET
            met = met and ok
            print(
                f"  ratio posthog-python / obs (medians): {ratio:.2f}x   target >= {TARGET}x "
                f"(obs <= 1/{TARGET}): {'MET' if ok else 'MISSED'}; every event delivered\n"
            )
    print(f"enabled cold start target in both environments: {'MET' if met else 'MISSED'}")


if __name__ == "__main__":
    os.environ.pop("PYDANTIC_DISABLE_PLUGINS", None)
    main()
