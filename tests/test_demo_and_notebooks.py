"""`make demo` and the notebooks run end to end on a clean machine's embedded default."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

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


def test_notebooks_run_in_a_real_jupyter_kernel(tmp_path: Path) -> None:
    # A real ipykernel: capture runs on the kernel's main thread while its own event loop is running.
    import nbclient
    import nbformat

    # What each notebook must show; a notebook added without an entry here fails the test.
    expected = {
        "quickstart.ipynb": ["'doc_opened', 'user-1', 'acme'", "4 stored"],
        "decorators.ipynb": [
            "price: 0.0",
            "re-raised: ConnectionError",
            "('$exception', 'user-1')",
            "ZeroDivisionError | float division by zero | unit_price",
            "https://admin:[redacted]@db.internal refused | fetch",
            "'arg_fmt': 'csv'",
        ],
        "llm.ipynb": [
            "generations: 2 | tool calls: 1 | errors: 0",
            "'$ai_model': 'gpt-4o-mini'",
            "'$ai_span_name': 'get_weather'",
            "xxxx…[truncated 44 chars]",
        ],
    }
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert sorted(p.name for p in notebooks) == sorted(expected)
    for nb_path in notebooks:
        nb = nbformat.read(nb_path, as_version=4)
        client = nbclient.NotebookClient(
            nb, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
        )
        client.execute()  # raises CellExecutionError, with the traceback, if any cell fails
        outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
        assert not [o for o in outputs if o.get("output_type") == "error"]
        text = "\n".join(str(o.get("data", {}).get("text/plain", o.get("text", ""))) for o in outputs)
        for want in expected[nb_path.name]:
            assert want in text, (nb_path.name, want, text)
    assert (tmp_path / ".obs" / "notebook.db").exists()
