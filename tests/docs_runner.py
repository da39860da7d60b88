"""Runs the Python examples of one Markdown page in a fresh interpreter, for tests/test_docs_examples.py.

    python tests/docs_runner.py RESULT.json < blocks.json

stdin is ``{"page": path, "blocks": [{"line": N, "code": "..."}]}``. The blocks run in order in one
namespace, that of a fresh ``__main__`` module, as if the page were one script: a later block uses what an
earlier one defined. A block may ``await`` at top level, as in an asyncio REPL or a notebook; every such
block runs on the same event loop. Each block is compiled with the page's path as its file name and its
own line numbers, so a traceback (and obs's `$exception` source context, read through linecache) points at
the Markdown line. The first failing block stops the page.

After the last block the runner flushes obs and reports the client's loss counters and every record of
level WARNING or above on the ``obs`` logger. The result goes to RESULT.json, not stdout, which the
examples may print to.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import json
import logging
import sys
import traceback
import types
from typing import Any


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.name}: {record.getMessage()}")


def run(page: str, blocks: list[dict[str, Any]]) -> dict[str, Any]:
    records = _Records()
    logging.getLogger("obs").addHandler(records)
    module = types.ModuleType("__main__")
    module.__file__ = page
    sys.modules["__main__"] = module
    sys.argv = [page]
    loop = asyncio.new_event_loop()
    results: list[dict[str, Any]] = []
    for block in blocks:
        # Padding with newlines gives the code the line numbers it has in the Markdown file.
        source = "\n" * block["line"] + block["code"]
        try:
            code = compile(source, page, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
            awaitable = eval(code, module.__dict__)
            if inspect.iscoroutine(awaitable):
                loop.run_until_complete(awaitable)
        except BaseException:  # SystemExit too: an example must not end the process
            results.append({"line": block["line"], "error": traceback.format_exc()})
            break
        results.append({"line": block["line"], "error": None})

    import obs
    from obs._client import Client

    client = obs.get_client()
    settled: dict[str, Any] = {"flushed": True, "lost": {}}
    if isinstance(client, Client):
        settled["flushed"] = client.flush(10)
        stats = client.stats()
        settled["lost"] = {k: v for k, v in stats.items() if k.startswith("dropped_") and v}
        settled["sent"] = stats["sent"]
    loop.close()
    return {"blocks": results, "settled": settled, "log": records.lines}


def main() -> None:
    out = sys.argv[1]
    spec = json.load(sys.stdin)
    result = run(spec["page"], spec["blocks"])
    with open(out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
