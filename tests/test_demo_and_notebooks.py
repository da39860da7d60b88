"""`make demo` and the notebooks run end to end on a clean machine's embedded default."""

from __future__ import annotations

import base64
import importlib.util
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_demo_stores_and_prints_events(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    env = {"PATH": os.environ.get("PATH", ""), "OBS_DEMO_DB": str(db)}
    out = subprocess.run(
        [sys.executable, "-m", "obs.demo"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60
    )
    assert out.returncode == 0, out.stderr
    for name in (
        "$identify",
        "$groupidentify",
        "project_created",
        "file_uploaded",
        "$ai_generation",
        "$ai_trace",
        "report_exported",
        "$exception",
        "cli_ran",
    ):
        assert name in out.stdout
    assert "9 events stored" in out.stdout
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT event, route FROM events ORDER BY uuid").fetchall()
    assert len(rows) == 9
    assert ("$ai_generation", "batch") in rows


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
