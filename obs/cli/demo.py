"""`obs demo`: run a small instrumented app that uses every capability, all locally, and show what it stored.

The app is :mod:`._demo_app` (one step per capability); the LLM providers and PostHog's flags endpoint it
talks to are :mod:`._demo_stubs` on 127.0.0.1. Events go to the embedded SQLite store (``--store``,
``OBS_DEMO_DB``, default ``.obs/demo.db``) and, when ``POSTHOG_API_KEY`` is set, to PostHog as well. This
module owns the run: configuring obs, the progress display, checking that every event was written, and
the summary. It exits 0 only when every step's events were written everywhere they were sent.
"""

from __future__ import annotations

import os
import shlex
import sqlite3
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from ..sinks import PostHogSink
    from ._demo_app import Step

DEFAULT_STORE = Path(".obs/demo.db")
# Switches obs on without a PostHog project: with no posthog sink nothing is sent anywhere.
PLACEHOLDER_KEY = "phc_local_demo"
SHUTDOWN_TIMEOUT = 10.0


def demo(
    store: Annotated[
        Path,
        typer.Option(
            "--store",
            envvar="OBS_DEMO_DB",
            help="The SQLite store to write (created if needed; earlier runs are kept).",
        ),
    ] = DEFAULT_STORE,
) -> None:
    """Run a small app that uses every obs capability, all locally, and summarise what it stored.

    Errors, @track, LLM calls (OpenAI, Anthropic, LangChain), a feature flag,
    a FastAPI app and a Typer command, against stubs on 127.0.0.1.
    Events go to the local store, and also to PostHog when POSTHOG_API_KEY is set.
    Exit code 0 when every event was written.

    [bold]Examples[/bold]

      [cyan]obs demo[/cyan]   (into .obs/demo.db; nothing leaves the machine)

      [cyan]obs demo --store /tmp/demo.db[/cyan]

      [cyan]POSTHOG_API_KEY=phc_... obs demo[/cyan]   (the same events also go to PostHog)
    """
    raise typer.Exit(run(store))


def run(store: Path) -> int:
    """The whole demo; returns the exit code (0: every event written; 1: some were not; 2: bad settings)."""
    from rich.console import Console

    import obs

    from .._config import ConfigError
    from ..sinks.sqlite import connect, read_events
    from ._demo_app import DISTINCT_ID, FLAGS, STEPS
    from ._demo_stubs import StubServer

    started = time.monotonic()
    console = Console(highlight=False)
    err = Console(stderr=True, highlight=False)
    try:
        posthog = _posthog_sink()
    except ConfigError as e:
        return _fail(err, _one_line(e), 2)
    try:
        connect(store).close()  # a store that cannot be written fails here, not event by event
    except (OSError, sqlite3.Error) as e:
        return _fail(err, f"cannot open the store {store}: {e}", 2)
    run_id = uuid.uuid4().hex[:8]
    where = f"{store} and PostHog ({posthog.host})" if posthog else f"{store} (local only)"
    console.print(f"[bold]obs demo[/bold] · run {run_id} → {where}", soft_wrap=True)
    stubs = StubServer(FLAGS)
    _bypass_proxies("127.0.0.1")
    try:
        try:
            # obs asks `{host}/flags` for flags, so the host is the local stub; the events go to PostHog (if
            # at all) through the sink built from POSTHOG_HOST. The browser snippet names the stub as
            # api_host too, which no browser here loads.
            client = obs.init(
                api_key=posthog.key if posthog else PLACEHOLDER_KEY,
                host=stubs.url,
                sinks=[f"sqlite:{store}", *([posthog.sink] if posthog else [])],
                environment="demo",
                personal_api_key=None,  # no local flag evaluation: the stub has no definitions
            )
        except ConfigError as e:
            return _fail(err, _one_line(e), 2)
        with obs.context(distinct_id=DISTINCT_ID, properties={"demo_run": run_id}):
            outcomes = _run_steps(console, STEPS, stubs.url)
        delivered = obs.shutdown(SHUTDOWN_TIMEOUT)
        stats = client.stats()
        # A flush inside a step (the Typer integration flushes before its traceback) may have been the one
        # to report a loss, so the run's counters decide too.
        delivered = delivered and not _lost(stats)
    finally:
        stubs.close()

    events = [e for e in read_events(store) if e["properties"].get("demo_run") == run_id]
    problems = [f"step {o.step.title!r} failed: {o.detail}" for o in outcomes if o.state == "failed"]
    problems += _missing(outcomes, events)
    if not delivered:
        problems.append(_undelivered(stats, posthog))
    console.print()
    console.print(_summary(events))
    console.print(_next_steps(store, posthog if delivered else None), soft_wrap=True)  # whole commands
    console.print(f"[dim]done in {time.monotonic() - started:.1f} s[/dim]")
    if problems:
        return _fail(err, "; ".join(problems), 1)
    return 0


def _bypass_proxies(host: str) -> None:
    """Reach ``host`` directly: an HTTP(S)_PROXY from the environment must not see the stubs' traffic."""
    for var in ("NO_PROXY", "no_proxy"):
        os.environ[var] = ",".join(h for h in (os.environ.get(var, ""), host) if h)


# ---------------------------------------------------------------- PostHog, when POSTHOG_API_KEY is set


@dataclass(frozen=True)
class _PostHog:
    key: str
    host: str
    sink: PostHogSink


def _posthog_sink() -> _PostHog | None:
    """The PostHog sink for POSTHOG_API_KEY / POSTHOG_HOST, or None; ConfigError for unusable settings."""
    from .._config import load_settings
    from ..sinks import PostHogSink

    settings = load_settings()
    if settings.api_key is None:
        return None
    # A short retry budget: an unreachable PostHog ends the demo within SHUTDOWN_TIMEOUT with a reason.
    sink = PostHogSink(
        settings.api_key,
        settings.host,
        gzip=settings.gzip,
        timeout=min(settings.timeout, 5.0),
        max_retries=3,
        retry_budget=5.0,
    )
    return _PostHog(settings.api_key, settings.host, sink)


# ---------------------------------------------------------------- the steps, with their progress lines


class _Outcome:
    def __init__(self, step: Step) -> None:
        self.step = step
        self.state = "pending"  # running, done, skipped, failed
        self.detail = ""
        self.seconds: float | None = None


_MARKS = {"pending": "[dim]·[/]", "done": "[green]✓[/]", "skipped": "[yellow]–[/]", "failed": "[red]✗[/]"}


def _run_steps(console: Console, steps: Sequence[Step], stub_url: str) -> list[_Outcome]:
    from rich.live import Live

    import obs

    outcomes = [_Outcome(s) for s in steps]
    with Live(_progress(outcomes), console=console, refresh_per_second=12) as live:
        for o in outcomes:
            o.state = "running"
            live.update(_progress(outcomes))
            t0 = time.monotonic()
            try:
                with obs.context(properties={"demo_step": o.step.key}):
                    o.detail = o.step.run(stub_url)
                o.state = "done"
            except ModuleNotFoundError as e:
                if (e.name or "").partition(".")[0] in o.step.needs:
                    o.state, o.detail = "skipped", f"skipped: pip install '{o.step.extra}'"
                else:  # something the package itself needs: a broken install, not a missing extra
                    o.state, o.detail = "failed", f"{type(e).__name__}: {e}"
            except Exception as e:
                o.state, o.detail = "failed", f"{type(e).__name__}: {e}"
            o.seconds = time.monotonic() - t0
            live.update(_progress(outcomes))
    console.print()
    return outcomes


def _progress(outcomes: Sequence[_Outcome]) -> RenderableType:
    from rich.spinner import Spinner
    from rich.table import Table
    from rich.text import Text

    grid = Table.grid(padding=(0, 1))
    grid.add_column(width=1)
    grid.add_column(no_wrap=True)
    grid.add_column(ratio=1)
    grid.add_column(justify="right", no_wrap=True)
    for o in outcomes:
        mark: RenderableType = Spinner("dots", style="cyan") if o.state == "running" else _MARKS[o.state]
        style = {"skipped": "yellow", "failed": "red"}.get(o.state, "dim" if o.state == "done" else "")
        seconds = "" if o.seconds is None or o.state == "skipped" else f"{o.seconds:.2f} s"
        grid.add_row(mark, o.step.title, Text(o.detail, style=style), seconds)
    return grid


# ---------------------------------------------------------------- checks and the summary


def _missing(outcomes: Sequence[_Outcome], events: Sequence[dict[str, Any]]) -> list[str]:
    """A problem per event a finished step should have stored and did not."""
    stored = {(e["properties"].get("demo_step"), e["event"]) for e in events}
    return [
        f"step {o.step.title!r} stored no {name} event"
        for o in outcomes
        if o.state == "done"
        for name in o.step.expects
        if (o.step.key, name) not in stored
    ]


def _lost(stats: dict[str, Any]) -> dict[str, int]:
    return {k: v for k, v in stats.items() if (k.startswith("dropped_") or k == "spooled") and v}


def _undelivered(stats: dict[str, Any], posthog: _PostHog | None) -> str:
    lost = _lost(stats)
    reasons = ", ".join(f"{k} {v}" for k, v in lost.items()) or "not settled in time"
    last = posthog.sink.last_error if posthog else None
    return f"not every event was written ({reasons})" + (f"; PostHog: {last}" if last else "")


def _summary(events: Sequence[dict[str, Any]]) -> RenderableType:
    """Events by name, with errors, tokens, cost and mean latency."""
    from rich import box
    from rich.table import Table

    rows: dict[str, dict[str, Any]] = {}
    for e in events:
        p = e["properties"]
        r = rows.setdefault(e["event"], {"n": 0, "errors": 0, "in": 0, "out": 0, "cost": 0.0, "ms": []})
        r["n"] += 1
        if e["event"] == "$exception" or p.get("$ai_is_error") or p.get("success") is False:
            r["errors"] += 1
        if e["event"] == "$ai_generation":  # traces repeat their generations' tokens and cost
            r["in"] += p.get("$ai_input_tokens") or 0
            r["out"] += p.get("$ai_output_tokens") or 0
            r["cost"] += p.get("$ai_total_cost_usd") or 0.0
        if isinstance(p.get("$ai_latency"), (int, float)):
            r["ms"].append(p["$ai_latency"] * 1000)
        elif isinstance(p.get("duration_ms"), (int, float)):
            r["ms"].append(p["duration_ms"])

    table = Table(
        title="What this run stored",
        title_justify="left",
        show_footer=True,
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    total = {k: sum(r[k] for r in rows.values()) for k in ("n", "errors", "in", "out", "cost")}
    table.add_column("event", footer="total", no_wrap=True)
    table.add_column("count", justify="right", footer=str(total["n"]))
    table.add_column("errors", justify="right", footer=str(total["errors"]))
    table.add_column("tokens in→out", justify="right", footer=_tokens(total), no_wrap=True)
    table.add_column("cost USD", justify="right", footer=_cost(total["cost"]), no_wrap=True)
    table.add_column("mean ms", justify="right", no_wrap=True)
    for name, r in rows.items():
        mean = f"{sum(r['ms']) / len(r['ms']):.1f}" if r["ms"] else ""
        table.add_row(name, str(r["n"]), str(r["errors"] or ""), _tokens(r), _cost(r["cost"]), mean)
    return table


def _tokens(r: dict[str, Any]) -> str:
    return f"{r['in']} → {r['out']}" if r["in"] or r["out"] else ""


def _cost(usd: float) -> str:
    return f"${usd:.6f}" if usd else ""


def _next_steps(store: Path, posthog: _PostHog | None) -> RenderableType:
    from rich.text import Text

    path = shlex.quote(str(store))
    text = Text.from_markup(
        "[bold]Next[/bold]\n"
        f"  [cyan]obs tail --store {path}[/cyan]   the events, readable, in the terminal\n"
        f"  [cyan]obs ui --store {path}[/cyan]     a local web viewer of the store"
    )
    if posthog:
        text.append(f"\n  PostHog ({posthog.host}): the same events, with environment = demo")
    return text


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())


def _fail(err: Console, message: str, code: int) -> int:
    err.print(f"obs demo: {message}", markup=False, soft_wrap=True)
    return code
