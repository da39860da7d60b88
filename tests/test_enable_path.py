"""A short process that enables obs: what `import obs` and `obs.init(api_key=...)` load, and that one event
captured just before exit is delivered (to the capture server by host name, as a real PostHog host is).

Not timed (benchmarks/bench_coldstart.py measures the CPU): this checks which modules are loaded.
"""

from __future__ import annotations

import json

from tests.capture_server import CaptureServer
from tests.procs import run_py

HEAVY = (
    "pydantic",
    "pydantic_settings",
    "obs._config",
    "obs.events",
    "httpx",
    "httpcore",
    "anyio",
    "asyncio",
)
# The pydantic side of obs: the Settings model and the event models, the contracts of what the enable
# path reads and builds without them.
PYDANTIC = {"pydantic", "pydantic_settings", "obs._config", "obs.events"}

SHORT_PROCESS = """
import atexit, json, sys

HEAVY = {heavy!r}

def loaded():
    return [m for m in HEAVY if m in sys.modules]

@atexit.register  # registered before obs's own exit flush, so it runs after it
def at_exit():
    print(json.dumps({{"exit": loaded()}}), flush=True)

import obs
after_import = loaded()
obs.init(api_key="phc_cold", host=sys.argv[1], flush_interval=60)  # the worker waits for the exit flush
after_init = loaded()
obs.capture("cold start", {{"n": 1}}, distinct_id="u1")
print(json.dumps({{"import": after_import, "init": after_init, "capture": loaded()}}), flush=True)
"""


def test_enabling_obs_and_capturing_loads_no_pydantic_and_the_event_is_delivered_at_exit(
    server: CaptureServer,
) -> None:
    code = SHORT_PROCESS.format(heavy=HEAVY)
    out = run_py(f"import sys; sys.argv[1:] = [{server.host_url!r}]\n" + code, {}, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    seen, at_exit = lines[0], lines[1]["exit"]
    assert seen["import"] == [], seen  # `import obs`: none of them
    # Enabling reads the configuration without pydantic and the worker builds the wire event without the
    # event models: no pydantic model is built, so no other library's pydantic plugin (logfire's, say)
    # runs because obs started.
    for stage in ("init", "capture"):
        assert not (PYDANTIC | {"httpx", "httpcore"}) & set(seen[stage]), seen
    # The exit flush sent it with the standard library, without starting the worker (obs/_cold.py).
    assert at_exit == [], at_exit
    assert server.wait_for_events(1, timeout=10)
    [event] = server.events()
    assert (event["event"], event["distinct_id"], event["properties"]["n"]) == ("cold start", "u1", 1)
    assert "error" not in out.stderr.lower(), out.stderr


def test_import_obs_loads_only_the_module_level_api_and_every_name_on_first_use() -> None:
    code = (
        "import sys, obs\n"
        "print(sorted(m for m in sys.modules if m.startswith('obs')))\n"
        "names = {n: getattr(obs, n) for n in obs.__all__}\n"
        "print(obs.capture_errors.__module__, obs.ConfigError.__module__, obs.Settings.__module__)\n"
    )
    out = run_py(code, {})
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.splitlines()
    assert first == str(["obs", "obs._api", "obs._current", "obs._log", "obs._version"])
    assert second == "obs.decorators.capture_errors obs._config_reader obs._config"
