"""`obs tail`: the events in the local store (and JSONL files), readable or as JSON lines, then new ones.

Reads only: the store is opened read-only and JSONL files are only read (``_store``); lines are drawn by
``_render``. ``--follow`` polls for rows another process adds (the store is in WAL mode, so the writer is
never blocked) until Ctrl-C, which ends it quietly with exit status 130.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..testing import KINDS

if TYPE_CHECKING:  # imported when the command runs, so that `obs --help` stays quick
    from ._store import Filter, JsonlReader, StoreReader

POLL_INTERVAL = 0.2  # seconds between looks for new events with --follow
DEFAULT_LINES = 20  # events shown without --since or --lines
DEFAULT_STORE = ".obs/events.db"  # as obs.sinks.sqlite.DEFAULT_PATH, without importing the sink (anyio)

EPILOG = """\
[b]Examples[/b]

  obs tail                          the last 20 events of .obs/events.db
  obs tail -f                       … then each new one, until Ctrl-C
  obs tail -k exception -s 1h       errors of the last hour
  obs tail -k ai_trace -k ai_span -k ai_generation    LLM traces as trees
  obs tail -e signed_up -u user-42  one event name, one user
  obs tail --jsonl app.jsonl --json | jq .properties
  obs tail --store /tmp/app.db --since 2024-05-01T09:00 -n 0
"""


def tail(
    store: Annotated[
        Path | None,
        typer.Option(
            "--store",
            metavar="PATH",
            help="The SQLite store to read (default: the sqlite:PATH in OBS_SINKS, else .obs/events.db).",
            show_default=False,
        ),
    ] = None,
    jsonl: Annotated[
        list[Path] | None,
        typer.Option(
            "--jsonl",
            metavar="PATH",
            help="A JSONL file written by the jsonl sink (repeatable). Without --store, only these are read.",
            show_default=False,
        ),
    ] = None,
    event: Annotated[
        list[str] | None,
        typer.Option(
            "--event", "-e", metavar="NAME", help="Only events of this name (repeatable).", show_default=False
        ),
    ] = None,
    kind: Annotated[
        list[str] | None,
        typer.Option(
            "--kind",
            "-k",
            metavar="KIND",
            help=f"Only events of this kind (repeatable): {', '.join(KINDS)}.",
            show_default=False,
        ),
    ] = None,
    distinct_id: Annotated[
        str | None,
        typer.Option(
            "--distinct-id", "-u", metavar="ID", help="Only this distinct_id's events.", show_default=False
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            "-s",
            metavar="WHEN",
            help="Only events from then on: 30s, 10m, 2h, 1d, 1w ago, or an ISO time (local if no offset).",
            show_default=False,
        ),
    ] = None,
    lines: Annotated[
        int | None,
        typer.Option(
            "--lines",
            "-n",
            min=0,
            metavar="N",
            help=f"Show the last N matching events (0: all). Default {DEFAULT_LINES}, or all with --since.",
            show_default=False,
        ),
    ] = None,
    follow: Annotated[
        bool,
        typer.Option("--follow", "-f", help="Keep printing new events as they are stored, until Ctrl-C."),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON wire event per line (for jq and other tools), no colour.")
    ] = False,
) -> None:
    """Show the events obs stored locally, then (with -f) new ones as they come.

    Errors with their top in-app frame, LLM calls with model, tokens, cost and latency, traces as trees.
    Reads the SQLite store (OBS_SINKS=sqlite) and JSONL files (OBS_SINKS=jsonl:PATH), read-only.
    """
    unknown = [k for k in kind or () if k not in KINDS]
    if unknown:
        raise typer.BadParameter(
            f"{unknown[0]!r} is not an event kind; the kinds are {', '.join(KINDS)}", param_hint="'--kind'"
        )
    from ._store import Filter, SourceError, parse_since

    try:
        flt = Filter(
            events=tuple(event or ()),
            kinds=tuple(kind or ()),
            distinct_id=distinct_id,
            since=parse_since(since) if since is not None else None,
        )
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="'--since'") from None
    limit = lines if lines is not None else (None if since is not None else DEFAULT_LINES)
    if limit == 0:
        limit = None
    out = _Output(as_json)
    try:
        sources = _open(store, jsonl or [])
        _run(sources, flt, limit, follow, out)
    except SourceError as e:
        _fail(str(e))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except BrokenPipeError:  # `obs tail --json | head`: the reader is gone, which is not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise typer.Exit(0) from None


class _Sources:
    def __init__(self, store: StoreReader | None, files: list[JsonlReader]) -> None:
        self.store = store
        self.files = files
        self._reported = [0] * len(files)

    def report_unreadable(self) -> None:
        """Say (on stderr) how many lines of each file were skipped since the last time it was said."""
        for i, f in enumerate(self.files):
            if f.unreadable > self._reported[i]:
                n, self._reported[i] = f.unreadable - self._reported[i], f.unreadable
                _say(f"skipped {n} line(s) of {f.path} that are not JSON objects")

    def names(self) -> str:
        return ", ".join(
            str(p) for p in ([self.store.path] if self.store else []) + [f.path for f in self.files]
        )


def _open(store: Path | None, jsonl: list[Path]) -> _Sources:
    from ._store import JsonlReader, StoreReader

    if store is None and not jsonl:
        store = _default_store()
    reader = StoreReader(store).open() if store is not None else None
    return _Sources(reader, [JsonlReader(p).open() for p in jsonl])


def _default_store() -> Path:
    """The store the app writes when OBS_SINKS names ``sqlite:PATH``; else obs's default path."""
    for spec in os.environ.get("OBS_SINKS", "").split(","):
        name, _, arg = spec.strip().partition(":")
        if name.strip().lower() == "sqlite" and arg.strip():
            return Path(arg.strip())
    return Path(DEFAULT_STORE)


def _run(sources: _Sources, flt: Filter, limit: int | None, follow: bool, out: _Output) -> None:
    from ._store import by_time

    events = sources.store.recent(flt, limit) if sources.store else []
    for f in sources.files:
        events += f.read(flt, final=not follow)
    events = by_time(events)
    if limit is not None:
        events = events[-limit:]
    out.show(events)
    sources.report_unreadable()
    if not events and not follow:
        _say(f"no events{_matching(flt)} in {sources.names()}")
    if follow:
        _say(f"following {sources.names()} (Ctrl-C to stop)")
        while True:
            time.sleep(POLL_INTERVAL)
            new = sources.store.new(flt) if sources.store else []
            for f in sources.files:
                new += f.read(flt)
            out.show(by_time(new))
            sources.report_unreadable()


class _Output:
    """Where the events go: rich lines on a console, or JSON lines; flushed after each group, so that a
    program reading a pipe sees each event as soon as it is found."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        if not as_json:
            from rich.console import Console

            # soft_wrap: a long line is the terminal's to wrap, never cut or split into two events.
            self.console = Console(highlight=False, soft_wrap=True)

    def show(self, events: list[dict[str, Any]]) -> None:
        if not events:
            return
        if self.as_json:
            sys.stdout.write("".join(json.dumps(e, ensure_ascii=False, default=str) + "\n" for e in events))
            sys.stdout.flush()
            return
        from ._render import render

        for line in render(events):
            self.console.print(line)
        self.console.file.flush()


def _matching(flt: Filter) -> str:
    parts = [f"named {', '.join(flt.events)}" if flt.events else ""]
    parts.append(f"of kind {', '.join(flt.kinds)}" if flt.kinds else "")
    parts.append(f"of {flt.distinct_id}" if flt.distinct_id is not None else "")
    parts.append(f"since {flt.since.isoformat(timespec='seconds')}" if flt.since else "")
    shown = " ".join(p for p in parts if p)
    return f" {shown}" if shown else ""


def _say(message: str) -> None:
    print(f"obs tail: {message}", file=sys.stderr, flush=True)


def _fail(message: str) -> None:
    _say(message)
    raise typer.Exit(1)
