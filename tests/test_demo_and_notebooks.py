"""`make demo` and the notebooks run end to end on a clean machine's embedded default."""

from __future__ import annotations

import json
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
        "cli_ran",
    ):
        assert name in out.stdout
    assert "6 events stored" in out.stdout
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT event, route FROM events ORDER BY uuid").fetchall()
    assert len(rows) == 6
    assert ("$ai_generation", "ai") in rows


def test_notebooks_execute(tmp_path: Path) -> None:
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert notebooks, "no notebooks found"
    for nb_path in notebooks:
        nb = json.loads(nb_path.read_text())
        code = "\n\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
        script = tmp_path / f"{nb_path.stem}.py"
        script.write_text(code)
        env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)}
        out = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60
        )
        assert out.returncode == 0, f"{nb_path.name}: {out.stderr}"
    assert (tmp_path / ".obs" / "notebook.db").exists()
