"""`obs ui`: serve the local viewer (``obs.cli.viewer``) on a loopback address and open it in a browser.

The page shows the embedded store live, without any account, so it must never be reachable from another
machine: a ``--host`` that is not a loopback address is refused before anything listens.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import sys
import threading
import time
import webbrowser
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from ..sinks.sqlite import DEFAULT_PATH


def _loopback(host: str) -> str:
    """``host`` when it is a loopback address or ``localhost``; otherwise a usage error (exit 2)."""
    if host.lower() == "localhost":
        return "localhost"
    try:
        if ipaddress.ip_address(host.strip("[]")).is_loopback:
            return host.strip("[]")
    except ValueError:
        pass
    raise typer.BadParameter(
        f"{host!r} is not a loopback address. The viewer shows your events to anyone who can reach it,"
        " without a login, so it listens only on this machine: use 127.0.0.1 (the default), ::1 or localhost."
    )


def ui(
    store: Annotated[
        Path, typer.Option("--store", help="The SQLite store to show (the `sqlite:` sink's path).")
    ] = Path(DEFAULT_PATH),
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port to listen on; 0 picks a free one.")
    ] = 8787,
    host: Annotated[
        str,
        typer.Option(callback=_loopback, help="Loopback address: 127.0.0.1, ::1 or localhost."),
    ] = "127.0.0.1",
    open_browser: Annotated[
        bool, typer.Option("--open/--no-open", help="Open the page in your browser once it is served.")
    ] = True,
) -> None:
    """Show the local event store in your browser, live.

    Events with filters, exceptions with their frames and source lines,
    LLM traces with tokens, cost and latency, and charts: read from the SQLite store
    of the `sqlite:` sink while your application writes it.
    Served on this machine only (a loopback address); nothing leaves it.

    [b]Examples[/b]

    [dim]$[/dim] obs ui  [dim]# .obs/events.db at http://127.0.0.1:8787[/dim]

    [dim]$[/dim] obs ui --store .obs/demo.db --port 9000 --no-open
    """
    import uvicorn

    from .viewer import Store, StoreError, create_app

    viewer_store = Store(store)
    try:
        viewer_store.check()
    except StoreError as exc:
        _fail(str(exc), 2)
    sock = _bind("127.0.0.1" if host == "localhost" else host, port)
    port = sock.getsockname()[1]
    url = f"http://{'[::1]' if ':' in host else host}:{port}/"
    later = "" if store.exists() else " (not there yet: shown once your application writes it)"
    print(f"obs ui: {url} shows {store}{later}. Ctrl+C stops it.", flush=True)

    config = uvicorn.Config(
        create_app(viewer_store, port, "127.0.0.1" if host == "localhost" else host),
        log_level="warning",
        access_log=False,
        lifespan="off",
        proxy_headers=False,
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    if open_browser:
        threading.Thread(target=_open_when_served, args=(server, url), daemon=True).start()
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn stops on Ctrl+C, then raises it again: the stop asked for, no error
        pass
    finally:
        viewer_store.close()
        sock.close()


def _bind(host: str, port: int) -> socket.socket:
    """Our own listening socket, so a busy port is one clear message (uvicorn is handed the socket)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        _fail(f"cannot listen on {host} port {port} ({exc.strerror}); choose another with --port", 1)
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _open_when_served(server: object, url: str) -> None:
    """Open ``url`` once uvicorn serves it. Skipped on a Linux machine without a display unless
    ``$BROWSER`` names one: Python would otherwise start a text browser in this very terminal."""
    if sys.platform.startswith("linux") and not (
        os.environ.get("BROWSER") or os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return
    deadline = time.monotonic() + 30
    while not getattr(server, "started", False):
        if time.monotonic() > deadline or getattr(server, "should_exit", False):
            return
        time.sleep(0.05)
    with contextlib.suppress(Exception):  # a browser that cannot start: the URL is printed anyway
        webbrowser.open(url)


def _fail(message: str, code: int) -> NoReturn:
    print(f"obs ui: {message}", file=sys.stderr)
    raise typer.Exit(code)
