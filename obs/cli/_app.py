"""The Typer application behind `obs`: one module per sub-command, registered here with its examples."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import typer

from . import demo, schema, status, tail, ui

app = typer.Typer(
    name="obs",
    help="obs: see and check what your application sends to PostHog.",
    epilog="Run [b]obs COMMAND --help[/b] for a command's options and examples.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    # A crash shows where, never the values of local variables (a key, an event's properties).
    pretty_exceptions_show_locals=False,
)


def _help(command: Callable[..., Any]) -> str:
    """The command's docstring with each paragraph on one line: rich help keeps line breaks as written,
    and the terminal's width should decide them instead."""
    paragraphs = inspect.cleandoc(command.__doc__ or "").split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)


app.command("status", help=_help(status.status), epilog=status.EPILOG)(status.status)
app.command("tail", help=_help(tail.tail), epilog=tail.EPILOG)(tail.tail)
app.command("schema", help=_help(schema.schema), epilog=schema.EPILOG)(schema.schema)
app.command("ui")(ui.ui)
app.command("demo")(demo.demo)
