"""A PostHog-shaped capture server for tests and benchmarks, on 127.0.0.1 only.

It accepts `POST /batch/` and `POST /i/v0/ai/batch/` (gzip or plain JSON bodies, as PostHog does) and can be
scripted to answer each request with a status (200/400/401/413/429/5xx), extra headers (Retry-After), a
delay, a hang, a dropped connection or a reset in the middle of the response.

Capture v1 (`POST /i/v1/analytics/events`) is checked as PostHog's capture checks it (Bearer key, the
`PostHog-*` headers, the body's shape; 401/400 otherwise), and a 2xx answers per event,
`{"results": {uuid: {"result": "ok"}}}`; `Reply(results=...)` scripts other verdicts (`retry`, `drop`
with details, `warning`) for some events. Only accepted events (ok, warning, absent) count as delivered.

Faults by time and size: `fail_for(seconds, reply)` answers every request with `reply` for a while,
`max_body` answers 413 above a size, `pause_accept(seconds)` leaves new connections waiting in the listen
backlog (a slow accept).
"Refused" is a port nobody listens on: `refused_url()`.

`OPTIONS` on any path (a CORS preflight, which is how `obs status` checks the host without sending an
event) is answered 200 with PostHog's CORS headers, or as scripted; the paths asked are kept in `options`.
`clock_offset` shifts the `Date` header of every answer (a server whose clock disagrees with ours).

`url` reaches it by address (`http://127.0.0.1:PORT`), `host_url` by name (`http://localhost:PORT`, resolved
through the system resolver as a real host is).

Run it as a separate process for benchmarks: `python tests/capture_server.py` prints its URL, then serves.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import gzip
import json
import socket
import struct
import sys
import threading
import time
import uuid as _uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from typing_extensions import Self

V1_PATH = "/i/v1/analytics/events"
DEFAULT_BODY = b'{"status":1}'
# A v1 verdict: "ok", "warning", "drop" or "retry", or with details: ("drop", "billing_limit_exceeded").
Verdict = str | tuple[str, str]
_ACCEPTED = ("ok", "warning")


@dataclass
class Reply:
    """How to answer one request. `hang` sleeps `delay` seconds then closes without answering.

    ``results`` (v1 only): per-event verdicts for a 2xx, by uuid, or a function of the event returning a
    verdict or None (ok). Events it does not name are answered ok.
    """

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = DEFAULT_BODY
    delay: float = 0.0
    hang: bool = False
    close: bool = False  # drop the connection without any response
    reset: bool = False  # start the response, then reset the connection (RST) halfway through
    results: Mapping[str, Verdict] | Callable[[dict[str, Any]], Verdict | None] | None = None


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    raw: bytes
    status: int
    at: float
    results: dict[str, dict[str, str]] | None = None  # v1: the per-event verdicts answered

    @property
    def body(self) -> dict[str, Any]:
        data = gzip.decompress(self.raw) if self.headers.get("content-encoding") == "gzip" else self.raw
        return json.loads(data)  # type: ignore[no-any-return]

    @property
    def events(self) -> list[dict[str, Any]]:
        return list(self.body["batch"])

    @property
    def delivered(self) -> list[dict[str, Any]]:
        """The events this request delivered: all of a 2xx's, except those a v1 answer marked retry/drop."""
        if not 200 <= self.status < 300:
            return []
        if self.results is None:
            return self.events
        return [e for e in self.events if self.results.get(e["uuid"], {}).get("result", "ok") in _ACCEPTED]


class LocalServer:
    """A ThreadingHTTPServer on 127.0.0.1 serving from a daemon thread, with a queue of scripted `Reply`s.

    Subclasses call `_serve(Handler)` at the end of `__init__`; `with` (or `start`/`stop`) runs it.
    """

    _lock: threading.Lock
    _script: deque[Reply]

    def _serve(
        self,
        handler: type[BaseHTTPRequestHandler],
        server: type[ThreadingHTTPServer] = ThreadingHTTPServer,
        port: int = 0,
    ) -> None:
        self._httpd = server(("127.0.0.1", port), handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.host_url = f"http://localhost:{self.port}"
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


class _PausableServer(ThreadingHTTPServer):
    accept_after = 0.0
    allow_reuse_address = True  # a server started on the port of one just stopped

    def get_request(self) -> tuple[socket.socket, Any]:
        while time.monotonic() < self.accept_after:
            time.sleep(0.01)
        return super().get_request()


class CaptureServer(LocalServer):
    def __init__(self, *, record: bool = True, max_body: int | None = None, port: int = 0) -> None:
        self.record = record
        self.max_body = max_body  # bodies over this many bytes (as sent) are answered 413
        self._failing: tuple[float, Reply] | None = None
        self.received: list[Received] = []
        self.count_events = 0  # events in 2xx-answered requests (counted cheaply, without storing)
        self.options: list[str] = []  # paths of the OPTIONS requests, in order
        self.clock_offset = 0.0  # seconds added to the time in every answer's Date header
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

            def date_time_string(self, timestamp: float | None = None) -> str:
                now = time.time() + server.clock_offset if timestamp is None else timestamp
                return super().date_time_string(now)

            def do_OPTIONS(self) -> None:
                reply = server._next_reply()
                with server._cond:
                    server.options.append(self.path)
                    server._cond.notify_all()
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.hang or reply.close or reply.reset:
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.send_response(reply.status)
                self.send_header("Access-Control-Allow-Origin", "*")
                self.send_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                reply = server._next_reply()
                if server.max_body is not None and len(raw) > server.max_body:
                    reply = Reply(413)
                results = None
                answers = not (reply.hang or reply.close or reply.reset)
                if self.path.rstrip("/") == V1_PATH and answers and 200 <= reply.status < 300:
                    reply, results = _answer_v1(self.headers, raw, reply)
                if reply.delay:
                    time.sleep(reply.delay)
                # Recorded before answering, so a client that saw the answer always finds the request here.
                if not reply.reset:
                    server._note(
                        self.path,
                        self.headers,
                        raw,
                        0 if reply.hang or reply.close else reply.status,
                        results,
                    )
                if reply.hang or reply.close:
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if reply.reset:  # half a status line, then RST (SO_LINGER 0 makes close() reset)
                    server._note(self.path, self.headers, raw, 0)
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Len")
                        self.wfile.flush()
                        self.connection.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                        self.connection.close()
                    return
                self.send_response(reply.status)
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

        self._serve(Handler, _PausableServer, port)

    def fail_for(self, seconds: float, reply: Reply | int) -> None:
        """Answer every request with ``reply`` for the next ``seconds``, then as scripted again."""
        with self._lock:
            self._failing = (
                time.monotonic() + seconds,
                Reply(status=reply) if isinstance(reply, int) else reply,
            )

    def pause_accept(self, seconds: float) -> None:
        """Accept no new connection for ``seconds`` (they wait in the listen backlog: a slow accept)."""
        self._httpd.accept_after = time.monotonic() + seconds  # type: ignore[attr-defined]

    def _next_reply(self) -> Reply:
        with self._lock:
            if self._failing is not None:
                until, reply = self._failing
                if time.monotonic() < until:
                    return reply
                self._failing = None
            return self._script.popleft() if self._script else self.default

    def _note(
        self, path: str, headers: Any, raw: bytes, status: int, results: dict[str, Any] | None = None
    ) -> None:
        rec = Received(
            path, {k.lower(): v for k, v in headers.items()}, raw, status, time.monotonic(), results
        )
        n = 0
        if 200 <= status < 300:
            try:
                n = len(rec.delivered)
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
        """Events from requests that were answered 2xx (what PostHog would have ingested), without
        those a v1 answer marked retry or drop."""
        return [e for r in self.accepted if path is None or r.path == path for e in r.delivered]

    def wait_for_events(self, n: int, timeout: float = 10.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.count_events >= n, timeout)

    def wait_for_requests(self, n: int, timeout: float = 10.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.received) >= n, timeout)


# ------------------------------------------------------------------------------------------- capture v1

_V1_HEADERS = (
    "content-type",
    "user-agent",
    "posthog-sdk-info",
    "posthog-attempt",
    "posthog-request-id",
    "posthog-request-timestamp",
)
_V1_BOOL_OPTIONS = ("cookieless_mode", "disable_skew_correction", "process_person_profile")


def _answer_v1(headers: Any, raw: bytes, reply: Reply) -> tuple[Reply, dict[str, Any] | None]:
    """A 2xx ``reply`` to a v1 request as PostHog's capture gives it: 401/400 for a request it refuses,
    else per-event results (from ``reply.results``) unless the reply has a body of its own."""
    problem = _v1_request_problem({k.lower(): v for k, v in headers.items()}, raw)
    if problem is not None:
        status, message = problem
        return Reply(status, body=json.dumps({"error": message}).encode()), None
    if reply.body != DEFAULT_BODY:
        return reply, None  # scripted as is: a malformed or empty success, say
    batch = json.loads(_decoded(headers.get("content-encoding"), raw))["batch"]
    results: dict[str, Any] = {}
    for e in batch:
        verdict = _verdict(reply.results, e)
        if verdict is None and not _options_ok(e.get("options")):
            verdict = ("drop", "invalid_options")
        if isinstance(verdict, tuple):
            results[e["uuid"]] = {"result": verdict[0], "details": verdict[1]}
        else:
            results[e["uuid"]] = {"result": verdict or "ok"}
    return dataclasses.replace(reply, body=json.dumps({"results": results}).encode()), results


def _verdict(script: Any, event: dict[str, Any]) -> Verdict | None:
    if script is None:
        return None
    if callable(script):
        return script(event)  # type: ignore[no-any-return]
    return script.get(event["uuid"])  # type: ignore[no-any-return]


def _decoded(encoding: str | None, raw: bytes) -> bytes:
    return gzip.decompress(raw) if encoding == "gzip" else raw


def _v1_request_problem(h: dict[str, str], raw: bytes) -> tuple[int, str] | None:
    auth = h.get("authorization")
    if auth is None:
        return 401, "missing Authorization"
    missing = [name for name in _V1_HEADERS if name not in h]
    if missing:
        return 400, f"missing required headers: {missing}"
    if auth[:7].lower() != "bearer " or not auth[7:].strip().startswith("phc_"):
        return 400, "Authorization must be 'Bearer <project key>'"
    if h["content-type"].split(";")[0].strip().lower() != "application/json":
        return 400, "Content-Type must be application/json"
    if h.get("content-encoding", "gzip") not in ("gzip", "deflate", "br", "zstd"):
        return 400, "unsupported Content-Encoding"
    try:
        _uuid.UUID(h["posthog-request-id"])
        assert int(h["posthog-attempt"]) >= 1
        stamp = dt.datetime.fromisoformat(h["posthog-request-timestamp"].replace("Z", "+00:00"))
        assert stamp.tzinfo is not None
        body = json.loads(_decoded(h.get("content-encoding"), raw))
        assert isinstance(body["created_at"], str) and isinstance(body["batch"], list) and body["batch"]
        for e in body["batch"]:
            for key in ("event", "uuid", "distinct_id", "timestamp"):
                assert isinstance(e[key], str), key
            _uuid.UUID(e["uuid"])
    except (AssertionError, ValueError, KeyError, TypeError) as exc:
        return 400, f"invalid request: {type(exc).__name__} {exc}"
    return None


def _options_ok(options: Any) -> bool:
    """PostHog drops an event whose options it cannot read (details `invalid_options`)."""
    if options is None:
        return True
    if not isinstance(options, dict):
        return False
    for key in _V1_BOOL_OPTIONS:
        value = options.get(key)
        readable = isinstance(value, (bool, int, float)) or (
            isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0")
        )
        if value is not None and not readable:
            return False
    tour = options.get("product_tour_id")
    return tour is None or isinstance(tour, (str, int))


def free_port() -> int:
    """A 127.0.0.1 port that was just free: connecting to it is refused until someone listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def refused_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


if __name__ == "__main__":  # a separate process for benchmarks: prints its URL, serves until stdin closes
    srv = CaptureServer(record=False).start()
    print(srv.url, flush=True)
    while line := sys.stdin.readline():
        if line.strip() == "hang":  # from now on, hold every request without answering (benchmarks)
            srv.default = Reply(hang=True, delay=3600)
        print(srv.count_events, flush=True)
    srv.stop()
