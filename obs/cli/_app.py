"""The Typer application behind `obs`: one module per sub-command, registered here."""

from __future__ import annotations

import typer

from . import demo, schema, status, tail, ui

app = typer.Typer(
    name="obs",
    help="obs: see and check what your application sends to PostHog.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)

app.command("status")(status.status)
app.command("tail")(tail.tail)
app.command("schema")(schema.schema)
app.command("ui")(ui.ui)
app.command("demo")(demo.demo)
