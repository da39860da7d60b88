"""Every ```python block in README.md and docs/*.md runs, and does what it says without losing an event.

How: each page's blocks run in order, in one namespace, in a fresh interpreter (tests/docs_runner.py), so a
later block uses what an earlier one defined, exactly as a reader going down the page would. A block may
use top-level ``await`` (as in an asyncio REPL or a notebook). The interpreter's environment is that of a
configured application, with every service it talks to played by a local server on 127.0.0.1 started
here:

- ``POSTHOG_API_KEY`` is a project key and ``POSTHOG_HOST`` a tests/capture_server.py reached by name
  (``server.host_url``, http://localhost:PORT), so obs is on and delivers for real. The same server answers
  feature flag checks (``POST /flags``) with the flags the pages use (``FLAGS``).
- ``OPENAI_BASE_URL`` / ``ANTHROPIC_BASE_URL`` point the real SDKs at tests/llm_servers.py, with fake keys.
- The working directory is a fresh temporary directory (the local stores write there).

Examples that define a FastAPI app build it without serving it, unless they call it themselves (through
httpx's ASGI transport, in process). Assertions in a block are part of the documentation: they show what
the reader gets, and they are checked.

Each block is a test, ``test_example_runs[page.md:LINE]`` (LINE is the line of its opening fence). Each page
is a test too, ``test_page_settles[page.md]``: after its last block, ``flush()`` returns True, no event was
dropped, nothing was logged at WARNING or above on the ``obs`` logger, and the interpreter exited 0.

configuration.md's ```sh title=".env" examples are checked too: the first sets every variable obs reads,
and obs accepts every value in them.

A block that cannot run (a signature shown with ``*``, say) is marked ``<!-- no-run: why -->`` on the
line right before its fence, and must be listed in ``EXEMPT`` below with the reason it cannot be made to
run. Keep these rare: the default is that a block runs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.capture_server import CaptureServer, Reply
from tests.flags_server import flags_answer
from tests.llm_servers import LLMServer

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUNNER = ROOT / "tests" / "docs_runner.py"

# (page, first line of the block) → why it is not run.
EXEMPT: dict[tuple[str, str], str] = {
    (
        "flags.md",
        '@obs.feature_gate("key", *, default=False, variant=None, fallback=None, distinct_id=None,',
    ): "The decorator's full signature, with `*`: a signature to read, not a call to make. Every form of "
    "the decorator is run elsewhere on the page and in decorators.md.",
}

# Feature flags as the local "PostHog" answers them: every flag a page checks.
FLAGS = {
    "new-checkout": True,
    "beta-search": True,
    "beta-dashboard": True,
    "new-nav": True,
    "pricing-page": "test",
    "banner": True,
}
PAYLOADS = {"banner": {"text": "Spring sale"}}


# ---------------------------------------------------------------------------------------------- extraction
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`]*)$")
NO_RUN = re.compile(r"^\s*<!--\s*no-run:\s*(?P<reason>.+?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    page: str  # "README.md", "llm.md"
    line: int  # 1-based line of the opening fence
    code: str
    no_run: str | None

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def extract(path: Path) -> list[Block]:
    """The ```python blocks of a Markdown file (indented fences too, dedented)."""
    lines = path.read_text().splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, info = m["indent"], m["fence"], m["info"].strip()
        close = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        j = i + 1
        while j < len(lines) and not close.match(lines[j]):
            j += 1
        lang = info.split()[0].lower() if info else ""
        if lang in ("python", "py"):
            body = [ln[len(indent) :] if ln.startswith(indent) else ln.lstrip() for ln in lines[i + 1 : j]]
            marker = NO_RUN.match(lines[i - 1]) if i else None
            found.append(Block(path.name, i + 1, "\n".join(body) + "\n", marker and marker["reason"]))
        i = j + 1
    return found


BLOCKS = [b for p in PAGES for b in extract(p)]
RUNNABLE = [b for b in BLOCKS if b.no_run is None]
RUN_PAGES = sorted({b.page for b in RUNNABLE})
_PATHS = {p.name: p for p in PAGES}


# ------------------------------------------------------------------------------------------------- running
@dataclass
class PageRun:
    result: dict[str, Any] | None
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    events: int

    def tail(self) -> str:
        return f"--- stdout\n{self.stdout[-3000:]}\n--- stderr\n{self.stderr[-6000:]}"


def run_page(page: str, workdir: Path) -> PageRun:
    path = _PATHS[page]
    blocks = [{"line": b.line, "code": b.code} for b in RUNNABLE if b.page == page]
    spec = json.dumps({"page": str(path), "blocks": blocks})
    out = workdir / "result.json"
    with CaptureServer() as server, LLMServer() as llm:
        server.default = Reply(
            body=flags_answer(FLAGS, PAYLOADS, request_id="docs")
        )  # batches ignore the body; /flags reads it
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(workdir),
            "PYTHONPATH": str(ROOT),
            "POSTHOG_API_KEY": "phc_docs_examples",
            "POSTHOG_HOST": server.host_url,
            "OPENAI_API_KEY": "sk-docs-examples",
            "OPENAI_BASE_URL": llm.openai_base_url,
            "ANTHROPIC_API_KEY": "sk-ant-docs-examples",
            "ANTHROPIC_BASE_URL": llm.anthropic_base_url,
        }
        start = time.monotonic()
        proc = subprocess.run(
            [sys.executable, str(RUNNER), str(out)],
            input=spec,
            capture_output=True,
            text=True,
            env=env,
            cwd=workdir,
            timeout=120,
        )
        seconds = time.monotonic() - start
        events = len(server.events("/batch/")) + len(server.events("/i/v0/ai/batch/"))
    result = json.loads(out.read_text()) if out.exists() else None
    return PageRun(result, proc.returncode, proc.stdout, proc.stderr, seconds, events)


class _Runs:
    """Runs the pages the session selected, a few at a time, each once, on first demand."""

    def __init__(self, pages: set[str]) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max(2, min(4, (os.cpu_count() or 2) + 1)))
        self._tmp = tempfile.TemporaryDirectory(prefix="obs-docs-")
        self._lock = threading.Lock()
        self._futures: dict[str, Future[PageRun]] = {}
        for page in sorted(pages):
            self._submit(page)

    def _submit(self, page: str) -> Future[PageRun]:
        with self._lock:
            if page not in self._futures:
                workdir = Path(self._tmp.name) / page.removesuffix(".md")
                workdir.mkdir()
                self._futures[page] = self._pool.submit(run_page, page, workdir)
            return self._futures[page]

    def get(self, page: str) -> PageRun:
        return self._submit(page).result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._tmp.cleanup()


@pytest.fixture(scope="module")
def runs(request: pytest.FixtureRequest) -> Iterator[Callable[[str], PageRun]]:
    selected = {
        str(item.callspec.params.get("page", "") or item.callspec.params["block"].page)
        for item in request.session.items
        if getattr(item, "module", None) is sys.modules[__name__] and hasattr(item, "callspec")
    }
    r = _Runs(selected)
    yield r.get
    r.close()


# --------------------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("block", RUNNABLE, ids=[b.id for b in RUNNABLE])
def test_example_runs(block: Block, runs: Callable[[str], PageRun]) -> None:
    run = runs(block.page)
    assert run.result is not None, f"the runner wrote no result (exit {run.returncode})\n{run.tail()}"
    by_line = {r["line"]: r["error"] for r in run.result["blocks"]}
    if block.line not in by_line:
        failed = next(r["line"] for r in run.result["blocks"] if r["error"])
        pytest.fail(f"not run: the block at {block.page}:{failed} before it failed")
    assert by_line[block.line] is None, f"{block.id} raised:\n{by_line[block.line]}\n{run.tail()}"


@pytest.mark.parametrize("page", RUN_PAGES)
def test_page_settles(page: str, runs: Callable[[str], PageRun]) -> None:
    """After the page's last block: everything delivered, nothing dropped, obs logged no trouble."""
    run = runs(page)
    assert run.result is not None, f"the runner wrote no result (exit {run.returncode})\n{run.tail()}"
    settled = run.result["settled"]
    assert settled["flushed"] is True, settled
    assert settled["lost"] == {}, settled
    assert run.result["log"] == [], run.result["log"]
    assert run.returncode == 0, run.tail()


def test_exemptions_are_marked_listed_and_justified() -> None:
    marked = {(b.page, b.code.splitlines()[0]): b.no_run for b in BLOCKS if b.no_run is not None}
    assert set(marked) == set(EXEMPT), "a no-run marker without an EXEMPT entry, or the reverse"
    assert all(len(reason) > 40 for reason in EXEMPT.values())
    assert len(EXEMPT) <= 5, "exemptions are meant to be rare"


def test_the_readme_and_the_docs_have_examples() -> None:
    pages = {b.page for b in RUNNABLE}
    for page in ("README.md", "getting-started.md", "context.md", "migrating.md", "serverless.md"):
        assert page in pages, page
    assert len(RUNNABLE) >= 30


def _env_files(page: Path) -> list[dict[str, str]]:
    """The ```sh title=".env" blocks of a page, as variable → value."""
    files, lines, i = [], page.read_text().splitlines(), 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m and m["info"].startswith("sh") and 'title=".env"' in m["info"]:
            j = lines.index(m["fence"], i + 1)
            files.append(dict(ln.split("=", 1) for ln in lines[i + 1 : j] if ln and not ln.startswith("#")))
            i = j
        i += 1
    return files


def test_the_configuration_examples_set_every_variable_to_a_valid_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from obs._config import Settings, load_settings

    production, *others = _env_files(ROOT / "docs" / "configuration.md")
    assert set(production) == {str(f.validation_alias) for f in Settings.model_fields.values()}
    loaded = []
    for env in (production, *others):
        with monkeypatch.context() as m:
            for name, value in env.items():
                m.setenv(name, value)
            loaded.append(load_settings())  # raises ConfigError for a value obs would refuse
    prod, dev = loaded
    assert prod.scrub_patterns == ["ticket-\\d+", "(?i)iban=(?P<secret>\\w+)"]
    assert (prod.environment, prod.release, prod.identify_pii) == ("production", "2026.11.3", "id")
    assert (dev.environment, dev.sinks) == ("local", ["sqlite", "console"])


def test_extraction_finds_indented_and_tilde_fences(tmp_path: Path) -> None:
    md = tmp_path / "page.md"
    md.write_text(
        "text\n```python\nx = 1\n```\n- item\n\n  ```python\n  y = x + 1\n  ```\n"
        "~~~py\nz = 3\n~~~\n```sh\nls\n```\n<!-- no-run: a reason -->\n```python\n...\n```\n"
    )
    blocks = extract(md)
    assert [(b.line, b.code, b.no_run) for b in blocks] == [
        (2, "x = 1\n", None),
        (7, "y = x + 1\n", None),
        (10, "z = 3\n", None),
        (17, "...\n", "a reason"),
    ]
