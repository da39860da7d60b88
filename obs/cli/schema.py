"""`obs schema`: the JSON Schema of obs's event kinds (:func:`obs.events.json_schema`), as JSON on stdout."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from ..testing import KINDS

EPILOG = f"""\
[b]Examples[/b]

  obs schema                    every kind, as one object keyed by kind
  obs schema exception          one kind's schema
  obs schema ai_generation > ai_generation.schema.json

Kinds: {", ".join(KINDS)}.
"""


def schema(
    kind: Annotated[
        str | None,
        typer.Argument(metavar="KIND", help="One event kind; all of them when left out.", show_default=False),
    ] = None,
) -> None:
    """Print the JSON Schema of obs's event kinds, as JSON.

    All kinds as one object keyed by kind, or the one KIND named.
    """
    from ..events import json_schema

    schemas = json_schema()
    if kind is not None and kind not in schemas:
        raise typer.BadParameter(
            f"{kind!r} is not an event kind; the kinds are {', '.join(schemas)}", param_hint="'KIND'"
        )
    text = json.dumps(schemas if kind is None else schemas[kind], indent=2, ensure_ascii=False)
    sys.stdout.write(text + "\n")
