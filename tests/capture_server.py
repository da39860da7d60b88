"""A PostHog-shaped capture server for tests and benchmarks, on 127.0.0.1 only.

It accepts `POST /batch/` and `POST /i/v0/ai/batch/` (gzip or plain JSON bodies, as PostHog does) and can be
scripted to answer each request with a status (200/400/401/413/429/5xx), extra headers (Retry-After), a
delay, a hang, or a dropped connection. "Refused" is a port nobody listens on: `refused_url()`.

Run it as a separate process for benchmarks: `python tests/capture_server.py` prints its URL, then serves.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from typing_extensions import Self


@dataclass
class Reply:
    """How to answer one request. `hang` sleeps `delay` seconds then closes without answering."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b'{"status":1}'
    delay: float = 0.0
    hang: bool = False
    close: bool = False  # drop the connection without any response


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    raw: bytes
    status: int
    at: float

    @property
    def body(self) -> dict[str, Any]:
        data = gzip.decompress(self.raw) if self.headers.get("content-encoding") == "gzip" else self.raw
        return json.loads(data)  # type: ignore[no-any-return]

    @property
    def events(self) -> list[dict[str, Any]]:
        return list(self.body["batch"])


class LocalServer:
    """A ThreadingHTTPServer on 127.0.0.1 serving from a daemon thread, with a queue of scripted `Reply`s.

    Subclasses call `_serve(Handler)` at the end of `__init__`; `with` (or `start`/`stop`) runs it.
    """

    _lock: threading.Lock
    _script: deque[Reply]

    def _serve(
        self, handler: type[BaseHTTPRequestHandler], server: type[ThreadingHTTPServer] = ThreadingHTTPServer
    ) -> None:
        self._httpd = server(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def script(self, *replies: Reply | int) -> None:
        """Queue the answers for the next requests (ints are statuses); then back to the default."""
        with self._lock:
            self._script.extend(Reply(status=r) if isinstance(r, int) else r for r in replies)


class CaptureServer(LocalServer):
    def __init__(self, *, record: bool = True) -> None:
        self.record = record
        self.received: list[Received] = []
        self.count_events = 0  # events in 2xx-answered requests (counted cheaply, without storing)
        self._script: deque[Reply] = deque()
        self.default = Reply()
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms delayed-ACK stall

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                reply = server._next_reply()
                if reply.delay:
                    time.sleep(reply.delay)
                # Recorded before answering, so a client that saw the answer always finds the request here.
                server._note(self.path, self.headers, raw, 0 if reply.hang or reply.close else reply.status)
                if reply.hang or reply.close:
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.send_response(reply.status)
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

        self._serve(Handler)

    def _next_reply(self) -> Reply:
        with self._lock:
            return self._script.popleft() if self._script else self.default

    def _note(self, path: str, headers: Any, raw: bytes, status: int) -> None:
        rec = Received(path, {k.lower(): v for k, v in headers.items()}, raw, status, time.monotonic())
        n = 0
        if 200 <= status < 300:
            try:
                n = len(rec.body["batch"])
            except Exception:
                n = 0
        with self._cond:
            if self.record:
                self.received.append(rec)
            self.count_events += n
            self._cond.notify_all()

    # ---- what tests look at
    @property
    def accepted(self) -> list[Received]:
        return [r for r in self.received if 200 <= r.status < 300]

    def events(self, path: str | None = None) -> list[dict[str, Any]]:
        """Events from requests that were answered 2xx (what PostHog would have ingested)."""
        return [e for r in self.accepted if path is None or r.path == path for e in r.events]

    def wait_for_events(self, n: int, timeout: float = 10.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.count_events >= n, timeout)

    def wait_for_requests(self, n: int, timeout: float = 10.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.received) >= n, timeout)


def refused_url() -> str:
    """A 127.0.0.1 URL on a port that was just free: connecting is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


if __name__ == "__main__":  # a separate process for benchmarks: prints its URL, serves until stdin closes
    srv = CaptureServer(record=False).start()
    print(srv.url, flush=True)
    while sys.stdin.readline():
        print(srv.count_events, flush=True)
    srv.stop()
