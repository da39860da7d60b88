"""`obs status`: is obs set up right here? Configuration, sinks, the PostHog host, and what is stored locally.

It reads configuration the way ``obs.init()`` does (the environment; keywords passed to ``obs.init`` in
your code are not visible from here), then checks what can be checked without sending an event:

- every setting's value (keys masked) and where it came from: the environment, obs's default, or derived
  from other settings (``environment`` from ``RELEASE_CHANNEL``…); obs reads no ``.env`` file, so one with
  obs variables the environment lacks is pointed out;
- the sinks ``OBS_SINKS`` names;
- the host: DNS lookup time, then an ``OPTIONS`` request to the capture route (``/batch/``), which PostHog
  answers without ingesting or billing anything, its status and time, and the clock skew from its ``Date``
  header;
- the durable spool (pending batches, events, bytes) and the local stores (events, the latest one).

Problems that stop events from arriving (anything ``obs.ConfigError`` reports, such as a personal
``phx_`` key, an unknown sink, or a host that does not resolve or answer) are one line each on stderr,
with exit status 1. Warnings (clock skew, variables set only in ``.env``, a likely typo in a variable's
name) are lines on stderr too, exit status unchanged.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

# The rest is imported when the command runs, so that `obs --help` stays quick.
if TYPE_CHECKING:
    import sqlite3

CAPTURE_PROBE = "/batch/"  # the route obs posts events to: OPTIONS on it ingests nothing
SKEW_WARNING = 10.0  # seconds: beyond this, the clocks disagree by more than a Date header's rounding
# Variables obs reads outside Settings (docs/configuration.md), so that they are not taken for typos.
_OTHER_VARIABLES = frozenset({"OBS_DEMO_DB"})
# Shown without --all even when left at their default: what decides whether and where events go.
_ESSENTIAL = (
    "api_key",
    "host",
    "sinks",
    "spool_dir",
    "environment",
    "release",
    "identify_pii",
    "llm_payloads",
)

EPILOG = """\
[b]Examples[/b]

  obs status                  configuration, sinks, host check, local counters
  obs status --all            every setting, also those left at their default
  obs status --offline        no DNS lookup, no request
  obs status --json | jq .host

Exit status: 0 when everything checked is fine (or obs is off), 1 when a problem was found (each one
line on stderr), 2 for a bad option.
"""


def status(
    show_all: Annotated[
        bool, typer.Option("--all", "-a", help="List every setting, also those left at their default.")
    ] = False,
    offline: Annotated[
        bool, typer.Option("--offline", help="Skip the host check (no DNS lookup, no request).")
    ] = False,
    timeout: Annotated[
        float,
        typer.Option("--timeout", min=0.1, metavar="SECONDS", help="Longest wait for DNS and for the host."),
    ] = 5.0,
    as_json: Annotated[bool, typer.Option("--json", help="The whole report as one JSON object.")] = False,
) -> None:
    """Check obs's set-up: settings, sinks, the PostHog host, local counters.

    Shows each setting and where it came from (keys masked), the active sinks, whether the PostHog host
    resolves and answers (timings, clock skew), and what the spool and the local stores hold. Reads the
    environment, as obs.init() does.
    """
    report = build_report(show_all=show_all, offline=offline, timeout=timeout)
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n")
    else:
        _print_report(report)
    sys.stdout.flush()
    for line in report["warnings"]:
        print(f"obs status: warning: {line}", file=sys.stderr)
    for line in report["problems"]:
        print(f"obs status: {line}", file=sys.stderr)
    if report["problems"]:
        raise typer.Exit(1)


# ------------------------------------------------------------------------------------------ the report


def build_report(*, show_all: bool = False, offline: bool = False, timeout: float = 5.0) -> dict[str, Any]:
    """Everything ``obs status`` shows, as JSON-ready data: ``enabled``, ``settings``, ``sinks``,
    ``host``, ``local``, and the ``problems`` and ``warnings`` found (one line each)."""
    from .._version import __version__

    report: dict[str, Any] = {
        "version": __version__,
        "enabled": False,
        "settings": [],
        "sinks": [],
        "host": None,
        "local": {"spool": None, "stores": [], "jsonl": []},
        "problems": [],
        "warnings": [],
    }
    report["warnings"] += _variable_warnings()
    settings, problems, warnings = _load()
    report["warnings"] += warnings
    if settings is None:
        report["problems"] += problems
        return report
    report["enabled"] = settings.enabled
    report["settings"] = _settings_rows(settings, show_all)
    sinks, problems = _sinks(settings)
    report["sinks"] = sinks
    report["problems"] += problems
    report["local"] = _local(settings, sinks)
    if settings.enabled and not offline and any(s["kind"] == "posthog" for s in sinks):
        host = check_host(settings.host, timeout)
        report["host"] = host
        report["problems"] += host.pop("problems")
        report["warnings"] += host.pop("warnings")
    return report


def _load() -> tuple[Any, list[str], list[str]]:
    """(Settings or None, problems, warnings) from the environment, as obs.init() would see it."""
    from .._config import ConfigError, load_settings

    with _logged("obs") as warnings:
        try:
            settings = load_settings()
        except ConfigError as e:
            lines = [line.strip() for line in str(e).splitlines()]
            return None, [_unrepeated(line) for line in lines[1:] or lines], warnings
    return settings, [], warnings


def _unrepeated(line: str) -> str:
    """``POSTHOG_API_KEY: POSTHOG_API_KEY holds…`` → ``POSTHOG_API_KEY holds…``."""
    where, sep, message = line.partition(": ")
    return message if sep and message.startswith(where + " ") else line


@contextlib.contextmanager
def _logged(name: str) -> Iterator[list[str]]:
    """The messages logged on ``name`` (WARNING and up) inside the block, instead of on stderr."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage().removeprefix("obs: "))

    logger = logging.getLogger(name)
    handler, propagate = Collect(logging.WARNING), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _settings_rows(settings: Any, show_all: bool) -> list[dict[str, Any]]:
    rows = []
    for name, info in type(settings).model_fields.items():
        variable = str(info.validation_alias or name)
        value = getattr(settings, name)
        default = info.get_default(call_default_factory=True)
        if variable in os.environ:
            source = "environment"
        elif value != default:
            source = "derived"
        else:
            source = "default"
        if show_all or source != "default" or name in _ESSENTIAL:
            rows.append({"name": name, "variable": variable, "value": _shown(name, value), "source": source})
    return rows


def _shown(name: str, value: Any) -> Any:
    """A setting's value as shown: keys masked, lists comma-joined, the rest as it is."""
    if hasattr(value, "get_secret_value"):
        value = value.get_secret_value()
    if value is not None and name.endswith("key"):
        return mask(str(value))
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return value


def mask(key: str) -> str:
    """``phc_AbCd…wXyZ``: the kind of key and enough to tell two apart, never enough to use it."""
    prefix, sep, rest = key.partition("_")
    if not sep or len(prefix) > 4:
        prefix, rest = "", key
    else:
        prefix += "_"
    if len(rest) < 16:
        return f"{prefix}…{rest[-2:]}" if len(rest) >= 8 else f"{prefix}…"
    return f"{prefix}{rest[:4]}…{rest[-4:]}"


def _variable_warnings() -> list[str]:
    """Variables that look meant for obs but that it will not read: set only in ./.env, or misspelt."""
    import difflib

    from .._config import Settings

    known = {str(f.validation_alias or n) for n, f in Settings.model_fields.items()} | _OTHER_VARIABLES
    out = []
    dotenv = [k for k in _dotenv_names(Path(".env")) if k in known and k not in os.environ]
    if dotenv:
        out.append(
            f".env sets {', '.join(dotenv)}, but obs reads only the environment: load .env in your app "
            "(python-dotenv, your framework) or export them"
        )
    for name in sorted(os.environ):
        if name.startswith(("POSTHOG_", "OBS_")) and name not in known:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
            if close:
                out.append(f"{name} is not an obs setting; did you mean {close[0]}?")
    return out


def _dotenv_names(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    names = []
    for line in text.splitlines():
        line = line.strip().removeprefix("export ").strip()
        if line and not line.startswith("#") and "=" in line:
            names.append(line.split("=", 1)[0].strip())
    return names


# ------------------------------------------------------------------------------------------ sinks


def _sinks(settings: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """What each OBS_SINKS entry is, and a problem for one that obs.init() would refuse."""
    from .. import sinks as sink_specs
    from .._stats import Stats

    out, problems = [], []
    for spec in settings.sinks:
        kind, _, arg = str(spec).strip().partition(":")
        kind = kind.lower()
        if kind != "posthog":  # building the others touches nothing; PostHog's would open the spool
            try:
                sink_specs.build(spec, settings, Stats())
            except ValueError as e:
                problems.append(f"OBS_SINKS: {e}")
                continue
        elif arg:
            problems.append(f"OBS_SINKS: unknown sink {spec!r}: posthog takes no argument")
            continue
        if kind == "posthog":
            target = f"{settings.host} (POST {CAPTURE_PROBE}, /i/v0/ai/batch/)"
            if settings.spool_dir:
                target += f", undelivered batches kept in {settings.spool_dir}"
        elif kind == "sqlite":
            arg = arg or ".obs/events.db"
            target = arg
        else:
            target = {"console": "stderr, one line per event", "memory": "a list in the app's memory"}.get(
                kind, arg
            )
        out.append({"spec": str(spec), "kind": kind, "target": target, "path": arg or None})
    return out, problems


# ------------------------------------------------------------------------------------------ the host


def check_host(host: str, timeout: float) -> dict[str, Any]:
    """Resolve ``host``'s name, then send ``OPTIONS {host}/batch/``: timings, status, clock skew."""
    import httpx

    url = httpx.URL(host)
    name = url.host
    port = url.port or (443 if url.scheme == "https" else 80)
    out: dict[str, Any] = {"url": host, "dns": None, "http": None, "skew_seconds": None}
    problems: list[str] = []
    warnings: list[str] = []
    out["problems"], out["warnings"] = problems, warnings

    if _is_address(name):
        out["dns"] = {"name": name, "addresses": [name], "ms": None}
    else:
        start = time.perf_counter()
        try:
            addresses = _resolve(name, port, timeout)
        except OSError as e:
            problems.append(f"POSTHOG_HOST {host}: {name} does not resolve ({_reason(e)})")
            return out
        out["dns"] = {"name": name, "addresses": addresses, "ms": _ms(time.perf_counter() - start)}

    probe = host.rstrip("/") + CAPTURE_PROBE
    try:
        with httpx.Client(timeout=timeout, headers={"User-Agent": "obs-status"}) as client:
            sent_at = time.time()
            start = time.perf_counter()
            resp = client.request("OPTIONS", probe)
            elapsed = time.perf_counter() - start
    except httpx.TimeoutException:
        problems.append(f"POSTHOG_HOST {host} does not answer: no response within {timeout:g} s")
        return out
    except httpx.HTTPError as e:
        problems.append(f"POSTHOG_HOST {host} does not answer: {_reason(e)}")
        return out
    out["http"] = {"method": "OPTIONS", "url": probe, "status": resp.status_code, "ms": _ms(elapsed)}
    if resp.status_code >= 500:
        problems.append(
            f"POSTHOG_HOST {host} answers {resp.status_code} {resp.reason_phrase} on {CAPTURE_PROBE}: "
            "its capture endpoint is failing"
        )
    server = _date(resp.headers.get("date"))
    if server is not None:
        # The Date header is rounded down to the second: compare with our clock at the request's midpoint.
        skew = server.timestamp() + 0.5 - (sent_at + elapsed / 2)
        out["skew_seconds"] = round(skew, 1)
        if abs(skew) > SKEW_WARNING:
            side = "behind" if skew > 0 else "ahead of"
            warnings.append(
                f"this machine's clock is {abs(skew):.0f} s {side} {name}'s (its Date header): events are "
                "stamped with this clock; check time sync (NTP)"
            )
    return out


def _resolve(name: str, port: int, timeout: float) -> list[str]:
    """The addresses ``name`` resolves to, by the system resolver, giving up after ``timeout`` seconds
    (getaddrinfo itself has no timeout, so it runs in a thread left behind if it hangs)."""
    import socket
    import threading

    result: list[Any] = []

    def lookup() -> None:
        try:
            result.append(socket.getaddrinfo(name, port, type=socket.SOCK_STREAM))
        except OSError as e:
            result.append(e)

    worker = threading.Thread(target=lookup, name="obs-status-dns", daemon=True)
    worker.start()
    worker.join(timeout)
    if not result:
        raise TimeoutError(f"no answer within {timeout:g} s")
    if isinstance(result[0], OSError):
        raise result[0]
    return list(dict.fromkeys(str(info[4][0]) for info in result[0]))


def _is_address(name: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


def _date(value: str | None) -> dt.datetime | None:
    import email.utils

    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None


def _reason(e: BaseException) -> str:
    """The innermost cause's message, which says what happened (``Connection refused``)."""
    while e.__cause__ is not None or e.__context__ is not None:
        e = e.__cause__ or e.__context__  # type: ignore[assignment]
    return re.sub(r"^\[Errno -?\d+\] ", "", str(e)) or type(e).__name__


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


# ------------------------------------------------------------------------------------------ local files


def _local(settings: Any, sinks: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"spool": None, "stores": [], "jsonl": []}
    if settings.spool_dir:
        out["spool"] = spool_counters(Path(settings.spool_dir))
    paths = [s["path"] for s in sinks if s["kind"] == "sqlite"]
    if ".obs/events.db" not in paths and Path(".obs/events.db").is_file():
        paths.append(".obs/events.db")  # the default store, left from an earlier run: worth knowing
    out["stores"] = [store_counters(Path(p), configured=p in [s["path"] for s in sinks]) for p in paths]
    out["jsonl"] = [jsonl_counters(Path(s["path"])) for s in sinks if s["kind"] == "jsonl"]
    return out


def spool_counters(directory: Path) -> dict[str, Any]:
    """Pending batches, events and bytes in the spool at ``directory`` (read-only)."""
    import sqlite3

    from ..sinks._spool import FILENAME

    path = directory / FILENAME
    out: dict[str, Any] = {"path": str(path), "exists": path.is_file()}
    if not out["exists"]:
        return out
    try:
        with _read_only(path) as conn:
            batches, oldest = conn.execute("SELECT count(*), min(created_at) FROM batches").fetchone()
            events, size = conn.execute("SELECT events, bytes FROM totals WHERE id = 1").fetchone()
    except sqlite3.Error as e:
        out["error"] = f"cannot be read ({e})"
        return out
    out.update(batches=int(batches), events=int(events), bytes=int(size))
    out["oldest"] = dt.datetime.fromtimestamp(oldest, dt.timezone.utc).isoformat() if oldest else None
    return out


def store_counters(path: Path, configured: bool = True) -> dict[str, Any]:
    """Events stored and the latest one's timestamp in the SQLite store at ``path`` (read-only)."""
    import sqlite3

    out: dict[str, Any] = {"path": str(path), "exists": path.is_file(), "configured": configured}
    if not out["exists"]:
        return out
    try:
        with _read_only(path) as conn:
            n, last = conn.execute("SELECT count(*), max(timestamp) FROM events").fetchone()
    except sqlite3.Error as e:
        out["error"] = f"cannot be read ({e})"
        return out
    out.update(events=int(n), last=last)
    return out


def jsonl_counters(path: Path) -> dict[str, Any]:
    """Lines (events) and size of a JSONL file."""
    out: dict[str, Any] = {"path": str(path), "exists": path.is_file()}
    if not out["exists"]:
        return out
    try:
        lines = 0
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                lines += chunk.count(b"\n")
        out.update(events=lines, bytes=path.stat().st_size)
    except OSError as e:
        out["error"] = f"cannot be read ({e})"
    return out


@contextlib.contextmanager
def _read_only(path: Path) -> Iterator[sqlite3.Connection]:
    import sqlite3

    from ._store import _uri_path

    conn = sqlite3.connect(f"file:{_uri_path(path)}?mode=ro", uri=True, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout = 2000")
        yield conn
    finally:
        conn.close()


# ------------------------------------------------------------------------------------------ printing


def _print_report(report: dict[str, Any]) -> None:
    from rich.console import Console

    out = _Printer(Console(highlight=False))
    version = report["version"]
    if not report["settings"] and report["problems"]:
        out.line(f"obs {version}: the configuration is invalid; obs.init() would refuse it", "red")
        return
    if report["enabled"]:
        out.line(f"obs {version} is on", "bold green")
    else:
        out.line(
            f"obs {version} is off: POSTHOG_API_KEY is not set, so nothing is captured or sent.",
            "bold yellow",
        )
        out.line("Turn it on with your project API key (PostHog → Project settings → Project API key):")
        out.line("  export POSTHOG_API_KEY=phc_…")
    out.section(
        "Configuration (from the environment; obs.init() keywords in code override it)",
        [
            (
                s["variable"],
                ("unset", "dim") if s["value"] is None else _value(s["value"]),
                (s["source"], "dim" if s["source"] == "default" else "cyan"),
            )
            for s in report["settings"]
        ],
    )
    if report["enabled"]:
        out.section("Sinks", [(s["kind"], s["target"]) for s in report["sinks"]])
        if report["host"] is not None:
            out.section("Host", _host_rows(report["host"]))
    out.section("Local", _local_rows(report["local"]))


Cell = str | tuple[str, str]  # text, or (text, style)


class _Printer:
    """Sections of two or three columns, values as plain text (a value is never read as markup)."""

    def __init__(self, console: Any) -> None:
        self.console = console

    def line(self, text: str, style: str = "") -> None:
        from rich.text import Text

        self.console.print(Text(text, style=style))

    def section(self, title: str, rows: list[tuple[Cell, ...]]) -> None:
        from rich.table import Table
        from rich.text import Text

        if not rows:
            return
        table = Table(box=None, show_header=False, pad_edge=False, padding=(0, 2, 0, 2))
        for row in rows:
            table.add_row(*(Text(c) if isinstance(c, str) else Text(c[0], style=c[1]) for c in row))
        self.console.print()
        self.console.print(Text(title, style="bold"))
        self.console.print(table)


def _value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _host_rows(host: dict[str, Any]) -> list[tuple[Cell, ...]]:
    rows: list[tuple[Cell, ...]] = []
    dns = host["dns"]
    if dns is None:
        return [("DNS", ("does not resolve", "red"))]
    took = "" if dns["ms"] is None else f" in {dns['ms']:g} ms"
    rows.append(("DNS", f"{dns['name']} → {', '.join(dns['addresses'][:3])}{took}"))
    http = host["http"]
    if http is None:
        return [*rows, ("HTTP", ("does not answer", "red"))]
    answer = f"OPTIONS {http['url']} → {http['status']} in {http['ms']:g} ms"
    rows.append(("HTTP", (answer, "red" if http["status"] >= 500 else "green")))
    skew = host["skew_seconds"]
    if skew is None:
        rows.append(("clock", ("skew unknown (no Date header)", "dim")))
    else:
        text = f"skew {skew:+.1f} s against the host's Date header (±1 s)"
        rows.append(("clock", (text, "yellow" if abs(skew) > SKEW_WARNING else "green")))
    return rows


def _local_rows(local: dict[str, Any]) -> list[tuple[Cell, ...]]:
    rows: list[tuple[Cell, ...]] = []
    spool = local["spool"]
    if spool is not None:
        rows.append(
            ("spool", spool["path"], _counts(spool, "no file yet (an app with this setting makes it)"))
        )
    for store in local["stores"]:
        label = "store" if store["configured"] else "store (not in OBS_SINKS)"
        rows.append((label, store["path"], _counts(store, "no file yet (made at the first event)")))
    for f in local["jsonl"]:
        rows.append(("jsonl", f["path"], _counts(f, "no file yet (made at the first event)")))
    return rows


def _counts(c: dict[str, Any], missing: str) -> str:
    if not c["exists"]:
        return missing
    if "error" in c:
        return str(c["error"])
    if "batches" in c:
        text = f"{c['batches']} batch(es), {c['events']} event(s), {_size(c['bytes'])} pending"
        return text + (f", oldest from {_ago(c['oldest'])}" if c.get("oldest") else "")
    if "last" in c:
        return f"{c['events']} event(s)" + (f", the latest {_ago(c['last'])}" if c["last"] else "")
    return f"{c['events']} event(s), {_size(c['bytes'])}"


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n:.1f} GiB"


def _ago(timestamp: str) -> str:
    from ._render import parse_time

    t = parse_time(timestamp)
    if t is None:
        return timestamp
    seconds = (dt.datetime.now(dt.timezone.utc) - t).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if abs(seconds) >= size:
            return f"{t.astimezone():%Y-%m-%d %H:%M:%S} ({seconds / size:.0f} {unit} ago)"
    return f"{t.astimezone():%Y-%m-%d %H:%M:%S} ({seconds:.0f} s ago)"
