"""A local collector for benchmarks/peers.py: one HTTP server on 127.0.0.1 that accepts every peer's protocol.

    python benchmarks/_collector.py [--hang]

It answers 200 to every request (HTTP/1.1, keep-alive, TCP_NODELAY) and counts what was delivered, in the
unit each protocol carries:

- PostHog ``/batch/`` (obs, posthog-python): the items of ``batch`` (also a bare list, or one event);
- Sentry envelopes (``/api/<project>/envelope/``): the items whose type is ``event``;
- OTLP/HTTP protobuf (langfuse ``/api/public/otel/v1/traces``, logfire ``/v1/traces`` and ``/v1/logs``):
  spans and log records (metrics are accepted and not counted).

Bodies may be gzip-compressed (``Content-Encoding: gzip``). ``GET /v1/info`` (logfire's token check) gets
a project description, everything else ``{}``. With ``--hang`` no request is ever answered: the endpoint
is "paused", so an SDK's events stay queued in its process (the memory measurement).

Protocol with the parent: the URL on stdout; each line on stdin is answered with the count so far (one
integer); closing stdin stops the server.
"""

from __future__ import annotations

import gzip
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_count = 0
_lock = threading.Lock()
_INFO = json.dumps({"project_name": "bench", "project_url": "http://127.0.0.1/bench"}).encode()


def _envelope_events(body: bytes) -> int:
    """Items of type ``event`` in a Sentry envelope (header line, then item header + payload pairs)."""
    n, pos = 0, body.find(b"\n") + 1
    while 0 < pos < len(body):
        end = body.find(b"\n", pos)
        end = len(body) if end < 0 else end
        line = body[pos:end].strip()
        pos = end + 1
        if not line:
            continue
        header = json.loads(line)
        n += header.get("type") == "event"
        length = header.get("length")
        if length is None:  # the payload runs to the next newline
            nxt = body.find(b"\n", pos)
            pos = len(body) if nxt < 0 else nxt + 1
        else:
            pos += int(length) + 1
    return n


def _otlp_items(path: str, body: bytes) -> int:
    if path.endswith("/v1/traces"):
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        req: Any = ExportTraceServiceRequest.FromString(body)
        return sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)
    if path.endswith("/v1/logs"):
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

        req = ExportLogsServiceRequest.FromString(body)
        return sum(len(sl.log_records) for rl in req.resource_logs for sl in rl.scope_logs)
    return 0  # metrics


def items(path: str, content_type: str, body: bytes) -> int:
    """How many delivered units this request carries (see the module docstring)."""
    if "envelope" in path:
        return _envelope_events(body)
    if "protobuf" in content_type:
        return _otlp_items(path, body)
    try:
        data = json.loads(body)
    except ValueError:
        return 0
    if isinstance(data, dict) and isinstance(data.get("batch"), list):
        return len(data["batch"])
    if isinstance(data, list):
        return len(data)
    return 1 if isinstance(data, dict) and "event" in data else 0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a peer reuses its connection as it would in production
    disable_nagle_algorithm = True
    hang = False

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.hang:
            time.sleep(3600)
        self._answer(_INFO if self.path.endswith("/v1/info") else b"{}")

    def do_POST(self) -> None:
        global _count
        if self.hang:
            time.sleep(3600)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Content-Encoding", "").lower() == "gzip" or body[:2] == b"\x1f\x8b":
            body = gzip.decompress(body)
        try:
            n = items(self.path.split("?")[0], self.headers.get("Content-Type", ""), body)
        except Exception as e:  # a body we cannot read is reported, never counted as delivered
            print(f"collector: unreadable body on {self.path}: {e!r}", file=sys.stderr, flush=True)
            n = 0
        self._answer(b"{}")
        with _lock:
            _count += n


def main() -> None:
    Handler.hang = "--hang" in sys.argv
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
    for _ in sys.stdin:
        with _lock:
            print(_count, flush=True)
    server.shutdown()


if __name__ == "__main__":
    main()
