"""`obs demo` / `make demo` and the notebooks run end to end on a clean machine's embedded default."""

from __future__ import annotations

import base64
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from obs.sinks.sqlite import read_events
from tests.capture_server import CaptureServer, Reply, refused_url

ROOT = Path(__file__).resolve().parents[1]


# Loaded by every interpreter the demo starts (PYTHONPATH): an audit hook that writes down each address a
# socket connects to and each name looked up, so a test can see that nothing left the machine.
WATCH_NETWORK = """
import os, sys
_out = open(os.environ["DEMO_NETWORK_LOG"], "a", buffering=1)
def _hook(event, args):
    if event == "socket.connect":
        address = args[1]
        _out.write(f"connect {address[0] if isinstance(address, tuple) else address}\\n")
    elif event == "socket.getaddrinfo":
        host = args[0].decode() if isinstance(args[0], bytes) else args[0]
        _out.write(f"resolve {host}\\n")
sys.addaudithook(_hook)
"""
LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def run_demo(cmd: list[str], tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run ``cmd`` in a clean environment; its result, and every host it connected to or looked up."""
    (tmp_path / "watch").mkdir(exist_ok=True)
    (tmp_path / "watch" / "sitecustomize.py").write_text(WATCH_NETWORK)
    log = tmp_path / "network.log"
    full_env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(tmp_path / "watch"),
        "DEMO_NETWORK_LOG": str(log),
        "OBS_DEMO_DB": str(tmp_path / "demo.db"),
        **env,
    }
    out = subprocess.run(cmd, capture_output=True, text=True, env=full_env, cwd=ROOT, timeout=120)
    hosts = {line.split(" ", 1)[1] for line in log.read_text().splitlines()} if log.exists() else set()
    return out, hosts


def stored(tmp_path: Path) -> list[dict[str, Any]]:
    return list(read_events(tmp_path / "demo.db"))


def by(events: list[dict[str, Any]], name: str, step: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == name and e["properties"]["demo_step"] == step]


def test_obs_demo_exercises_every_capability_into_the_local_store(tmp_path: Path) -> None:
    # A proxy from the environment is not used for the stubs (this one refuses every connection).
    proxy = refused_url()
    out, hosts = run_demo([sys.executable, "-m", "obs", "demo"], tmp_path, HTTP_PROXY=proxy, ALL_PROXY=proxy)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "obs demo:" not in out.stderr
    events = stored(tmp_path)

    # Errors: the decorated function, the FastAPI request and the Typer command.
    (error,) = by(events, "$exception", "errors")
    assert error["properties"]["$exception_list"][0]["type"] == "ZeroDivisionError"
    (web_error,) = by(events, "$exception", "fastapi")
    assert web_error["properties"]["$request_route"] == "/orders/{order_id}"
    assert web_error["properties"]["$response_status_code"] == 500
    (cli_error,) = by(events, "$exception", "typer")
    assert cli_error["properties"]["$exception_list"][0]["type"] == "FileNotFoundError"
    assert cli_error["properties"]["component"] == "cli"
    # Through obs.integrations.typer: the command's path and its (scrubbed) parameters.
    assert cli_error["properties"]["cli_command"].endswith("import-users")
    assert cli_error["properties"]["cli_params"] == {"path": "missing-users.csv"}

    # LLM calls: @trace_llm, the real openai and anthropic clients, LangChain; with tokens and cost.
    providers = {"trace_llm": "openai", "openai": "openai", "anthropic": "anthropic", "langchain": "openai"}
    for step, provider in providers.items():
        gens = by(events, "$ai_generation", step)
        assert len(gens) == (2 if step == "openai" else 1), step
        for gen in gens:
            p = gen["properties"]
            assert p["$ai_provider"] == provider, step
            assert p["$ai_input_tokens"] > 0 and p["$ai_output_tokens"] > 0, step
            assert p["$ai_total_cost_usd"] > 0, step
    assert [g["properties"].get("$ai_stream") for g in by(events, "$ai_generation", "openai")] == [
        False,
        True,
    ]
    assert by(events, "$ai_generation", "langchain")[0]["properties"]["$ai_framework"] == "langchain"
    for step in ("trace_llm", "openai", "langchain"):
        assert len(by(events, "$ai_trace", step)) == 1, step

    # A flag from the flags stub, a @track event, the page's product event.
    (flag,) = by(events, "$feature_flag_called", "flags")
    assert flag["properties"]["$feature_flag"] == "new-checkout"
    assert flag["properties"]["$feature_flag_response"] is True
    (report,) = by(events, "report_exported", "track")
    assert report["properties"]["arg_fmt"] == "csv"
    (page,) = by(events, "dashboard_viewed", "fastapi")
    assert page["properties"]["$request_path"] == "/"
    assert {e["distinct_id"] for e in events} == {"demo-user"}

    # The progress lines, the summary and what to run next.
    for title in ("@capture_errors", "@track", "@trace_llm", "OpenAI", "Anthropic", "LangChain", "FastAPI"):
        assert f"✓ {title}" in out.stdout, title
    assert "skipped" not in out.stdout
    assert "What this run stored" in out.stdout
    total = next(line for line in out.stdout.splitlines() if line.strip().startswith("total"))
    assert total.split()[1] == str(len(events))
    assert f"obs tail --store {tmp_path / 'demo.db'}" in out.stdout
    assert f"obs ui --store {tmp_path / 'demo.db'}" in out.stdout
    assert hosts and hosts <= LOOPBACK, hosts


def test_make_demo_also_sends_every_event_to_posthog(tmp_path: Path, server: CaptureServer) -> None:
    # The Makefile's own target, with the interpreter running these tests (-o: never reinstall the venv).
    bin_dir = Path(sys.executable).parent
    out, hosts = run_demo(
        ["make", "-s", "-o", ".venv/.installed", "demo", f"BIN={bin_dir}"],
        tmp_path,
        POSTHOG_API_KEY="phc_demo_test",
        POSTHOG_HOST=server.host_url,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    events = stored(tmp_path)
    sent = [e for r in server.received for e in r.events]
    assert {e["uuid"] for e in sent} == {e["uuid"] for e in events}
    assert {e["event"] for e in sent} >= {
        "$exception",
        "$ai_generation",
        "$ai_trace",
        "$feature_flag_called",
        "report_exported",
    }
    assert {r.path for r in server.received} == {"/batch/"}  # flags went to the demo's own stub
    assert f"PostHog ({server.host_url})" in out.stdout
    assert hosts <= LOOPBACK, hosts


def test_the_demo_fails_with_one_line_when_posthog_refuses_the_events(
    tmp_path: Path, server: CaptureServer
) -> None:
    server.default = Reply(400, body=b'{"error":"invalid"}')
    out, _ = run_demo(
        [sys.executable, "-m", "obs", "demo"],
        tmp_path,
        POSTHOG_API_KEY="phc_demo_test",
        POSTHOG_HOST=server.host_url,
    )
    assert out.returncode == 1
    (line,) = [x for x in out.stderr.splitlines() if x.startswith("obs demo:")]
    assert "not every event was written (dropped_rejected" in line, out.stderr
    assert stored(tmp_path)  # the local store has them


def test_the_demo_refuses_bad_settings_with_one_line(tmp_path: Path) -> None:
    out, _ = run_demo([sys.executable, "-m", "obs", "demo"], tmp_path, POSTHOG_API_KEY="phx_personal")
    assert out.returncode == 2
    assert out.stderr.startswith("obs demo: obs configuration is invalid: POSTHOG_API_KEY")
    assert len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "demo.db").exists()


def test_a_missing_optional_package_is_a_skipped_step(tmp_path: Path) -> None:
    # A None in sys.modules makes `import openai` fail as if the package were not installed.
    code = (
        "import sys\n"
        "for name in ('openai', 'anthropic', 'langchain_core', 'fastapi'):\n"
        "    sys.modules[name] = None\n"
        "sys.argv = ['obs', 'demo']\n"
        "from obs.cli import main\n"
        "main()\n"
    )
    out, hosts = run_demo([sys.executable, "-c", code], tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    for title, extra in (
        ("OpenAI", "openai"),
        ("Anthropic", "anthropic"),
        ("LangChain", "langchain"),
        ("FastAPI", "fastapi"),
    ):
        line = next(x for x in out.stdout.splitlines() if x.startswith(f"– {title} "))
        assert f"skipped: pip install 'obs[{extra}]'" in line, line
    steps = {e["properties"]["demo_step"] for e in stored(tmp_path)}
    assert steps == {"errors", "track", "trace_llm", "flags", "typer"}
    assert hosts <= LOOPBACK, hosts


# What each notebook must show (text/plain and streams); a notebook added without an entry here fails.
EXPECTED = {
    "01_quickstart.ipynb": [
        "doc_opened             user-1         tenant=acme words=120",
        "$identify              user-1         set email=ada@example.com, plan=pro",
        "price: 0.0",
        "re-raised: ConnectionError",
        "ZeroDivisionError | float division by zero | unit_price",
        "https://admin:[redacted]@db.internal refused | fetch",
        "'arg_fmt': 'csv'",
        "FileNotFoundError: no such file: settings.toml (in load_config) [error]",
        "$exception_source: python.ipython",
        "CapturedEvents: 1 event",
        "8 stored",
    ],
    "02_llm_tracing.ipynb": [
        "trace weather_chat  · 2 generation(s) · 216 → 10 tokens",
        "├─ span load_preferences",
        "├─ generation gpt-4o-mini  · 85 → 2 tokens",
        "│  └─ span get_weather  · tool call",
        "├─ span weather_api",
        "└─ generation gpt-4o-mini  · 131 → 8 tokens",
        "generations: 2 | tool calls: 1 | errors: 0",
        "$ai_time_to_first_token: ",
        "refused: 429",
        "└─ generation gpt-4o-mini  · ",
        "error: Error code: 429 - Rate limit reached",  # the SDK's error text: payloads are on
    ],
    "03_explore_local_store.ipynb": [
        "94 LLM calls",
        "$ai_generation    94",
        "gpt-4o-mini",
        "26 exceptions stored",
        "KeyError: 'refund_policy' (in answer) [error]",
        "├─ generation gpt-4o-mini  · ",
        "error: InternalServerError: 503 server_error",  # without its message: payloads are off
        "└─ exception InternalServerError: Error code: 503",
    ],
}
# Cells that fail on purpose (tagged raises-exception) and what they raise.
EXPECTED_ERRORS = {"01_quickstart.ipynb": ["FileNotFoundError"]}
PLOTS = {"03_explore_local_store.ipynb": 4}  # latency, tokens, cost, errors
NOTEBOOK_DEPENDENCIES = ("nbclient", "nbformat", "ipykernel", "openai", "pandas", "matplotlib")


def test_the_notebooks_are_the_expected_ones_and_committed_without_outputs() -> None:
    import nbformat

    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert [p.name for p in notebooks] == sorted(EXPECTED)
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, (path.name, cell.source[:60])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_notebook_runs_in_a_real_jupyter_kernel(name: str, tmp_path: Path) -> None:
    # A real ipykernel: obs runs on the kernel's main thread while its own event loop is running; the LLM
    # server is the local stub on 127.0.0.1, so nothing leaves the machine.
    missing = [m for m in NOTEBOOK_DEPENDENCIES if importlib.util.find_spec(m) is None]
    if missing:
        pytest.fail(f"the notebooks need {', '.join(missing)}: install the dev extra (make .venv/.installed)")
    import nbclient
    import nbformat

    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError, with the traceback, if an untagged cell fails
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert [o["ename"] for o in outputs if o["output_type"] == "error"] == EXPECTED_ERRORS.get(name, [])
    text = "\n".join(str(o.get("data", {}).get("text/plain", o.get("text", ""))) for o in outputs)
    for want in EXPECTED[name]:
        assert want in text, (name, want, text)
    # Events, lists of events and trace trees show as HTML tables, every value escaped.
    tables = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert tables and all("<table" in t and "<script" not in t for t in tables)
    pngs = [base64.b64decode(o["data"]["image/png"]) for o in outputs if "image/png" in o.get("data", {})]
    assert len(pngs) == PLOTS.get(name, 0)
    assert all(p.startswith(b"\x89PNG\r\n\x1a\n") and len(p) > 5000 for p in pngs)
    stores = {"01_quickstart.ipynb": "notebook.db", "03_explore_local_store.ipynb": "explore.db"}
    if name in stores:
        assert (tmp_path / ".obs" / stores[name]).exists()
