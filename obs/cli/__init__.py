"""The `obs` command (``[project.scripts] obs``): status, tail, schema, ui and demo.

Needs the ``cli`` extra (Typer and rich). Each sub-command lives in its own module and imports what it
needs when it runs, so ``obs --help`` stays fast.
"""

from __future__ import annotations

import sys


def main() -> None:
    """Entry point of the `obs` command."""
    try:
        import rich  # noqa: F401
        import typer  # noqa: F401
    except ImportError as exc:
        print(
            f"obs: the command needs the cli extra ({exc.name} is missing): pip install 'obs[cli]'",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    from ._app import app

    app(prog_name="obs")  # also under `python -m obs`, whose argv[0] is __main__.py
