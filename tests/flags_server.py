"""A PostHog-shaped feature flags server for tests and benchmarks, on 127.0.0.1 only.

- `POST /flags/` (remote evaluation) answers from `flags` (key → value, or a callable given the request
  body) in the v2 shape (`flags` records with `enabled`, `variant`, `metadata.payload`), or in the legacy
  shape (`featureFlags`/`featureFlagPayloads`) with `legacy = True`. Only the keys in
  `flag_keys_to_evaluate` are answered, as PostHog does.
- `GET /flags/definitions` and `GET /api/feature_flag/local_evaluation` (local evaluation) serve
  `definitions` to a request bearing `personal_key`, 401 otherwise, after `definitions_delay` seconds.
- `script()` queues how to answer the next `/flags/` requests: a status, a body, a delay, a hang or a
  dropped connection (`tests.capture_server.Reply`).

Run it as a separate process for benchmarks: `python tests/flags_server.py` prints its URL, then serves
`DEMO_DEFINITIONS` until stdin closes.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
import time
import zlib
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `tests` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.capture_server import LocalServer, Reply

PERSONAL_KEY = "phx_test_personal_key_do_not_leak"
DEFINITION_PATHS = ("/flags/definitions", "/api/feature_flag/local_evaluation")


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    raw: bytes
    status: int

    @property
    def body(self) -> dict[str, Any]:
        return json.loads(self.raw)  # type: ignore[no-any-return]


def flag(key: str, rollout: int = 100, **filters: Any) -> dict[str, Any]:
    """A flag definition as the local evaluation endpoint serves it (one condition set, no properties)."""
    groups = filters.pop("groups", [{"properties": [], "rollout_percentage": rollout}])
    extra = {k: filters.pop(k) for k in ("active", "ensure_experience_continuity") if k in filters}
    return {
        "id": zlib.crc32(key.encode()) % 10_000,
        "key": key,
        "name": key,
        "active": extra.get("active", True),
        "ensure_experience_continuity": extra.get("ensure_experience_continuity", False),
        "version": 1,
        "filters": {"groups": groups, **filters},
    }


DEMO_DEFINITIONS: dict[str, Any] = {
    "flags": [flag("new-checkout", 100)],
    "group_type_mapping": {},
    "cohorts": {},
}


class _Quiet(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):  # a client gave up
            super().handle_error(request, client_address)


def flags_answer(values: dict[str, Any], payloads: dict[str, Any], request_id: str = "req-1") -> bytes:
    """A current-shape `/flags/` answer: each flag in ``values`` (True/False or a variant) as matched."""
    records = {
        key: {
            "key": key,
            "enabled": bool(value),
            "variant": value if isinstance(value, str) else None,
            "reason": {"code": "condition_match", "description": "Matched condition set 1"},
            "metadata": {
                "id": 7,
                "version": 3,
                "payload": json.dumps(payloads[key]) if key in payloads else None,
            },
        }
        for key, value in values.items()
    }
    return json.dumps(
        {"flags": records, "errorsWhileComputingFlags": False, "requestId": request_id}
    ).encode()


class FlagsServer(LocalServer):
    def __init__(self) -> None:
        self.flags: dict[str, Any] = {}
        self.payloads: dict[str, Any] = {}
        self.legacy = False
        self.definitions: dict[str, Any] | None = None
        self.definitions_delay = 0.0  # seconds before answering a definitions request
        self.personal_key = PERSONAL_KEY
        self.received: list[Request] = []
        self._script: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0].rstrip("/")
                if path not in DEFINITION_PATHS:
                    return self._answer("GET", b"", 404, b'{"detail":"not found"}')
                if self.headers.get("authorization") != f"Bearer {server.personal_key}":
                    return self._answer("GET", b"", 401, b'{"detail":"invalid personal api key"}')
                if server.definitions_delay:
                    time.sleep(server.definitions_delay)
                if server.definitions is None:
                    return self._answer("GET", b"", 503, b'{"detail":"no definitions"}')
                self._answer("GET", b"", 200, json.dumps(server.definitions).encode())

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                if not self.path.startswith("/flags"):
                    return self._answer("POST", raw, 404, b'{"detail":"not found"}')
                reply = server._next_reply()
                if reply is None:
                    try:
                        body = server.answer(json.loads(raw))
                    except Exception as e:
                        body = json.dumps({"detail": repr(e)}).encode()
                        return self._answer("POST", raw, 400, body)
                    return self._answer("POST", raw, 200, body)
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.hang or reply.close:
                    server._note("POST", self.path, self.headers, raw, 0)
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self._answer("POST", raw, reply.status, reply.body)

            def _answer(self, method: str, raw: bytes, status: int, body: bytes) -> None:
                server._note(method, self.path, self.headers, raw, status)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._serve(Handler, _Quiet)  # `script()` queues answers for `/flags/`; then back to `flags`

    def _next_reply(self) -> Reply | None:
        with self._lock:
            return self._script.popleft() if self._script else None

    def answer(self, body: dict[str, Any]) -> bytes:
        """The `/flags/` answer to ``body`` from `flags` and `payloads`."""
        keys = body.get("flag_keys_to_evaluate") or list(self.flags)
        values: dict[str, Any] = {}
        for key in keys:
            if key in self.flags:
                v = self.flags[key]
                values[key] = v(body) if callable(v) else v
        if self.legacy:
            return json.dumps(
                {
                    "featureFlags": values,
                    "featureFlagPayloads": {
                        k: json.dumps(self.payloads[k]) for k in values if k in self.payloads
                    },
                }
            ).encode()
        return flags_answer(values, self.payloads)

    def _note(self, method: str, path: str, headers: Any, raw: bytes, status: int) -> None:
        rec = Request(method, path, {k.lower(): v for k, v in headers.items()}, raw, status)
        with self._cond:
            self.received.append(rec)
            self._cond.notify_all()

    # ---- what tests look at
    @property
    def flag_requests(self) -> list[Request]:
        """The `POST /flags/` requests (remote evaluations), answered or not."""
        return [r for r in self.received if r.method == "POST" and r.path.startswith("/flags")]

    @property
    def definition_requests(self) -> list[Request]:
        return [r for r in self.received if r.method == "GET"]

    def wait_for_requests(self, n: int, timeout: float = 10.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.received) >= n, timeout)


if __name__ == "__main__":  # a separate process for benchmarks: prints its URL, serves until stdin closes
    srv = FlagsServer()
    srv.definitions = DEMO_DEFINITIONS
    srv.flags = {"new-checkout": True}
    srv.start()
    print(srv.url, flush=True)
    while sys.stdin.readline():
        print(len(srv.flag_requests), flush=True)
    srv.stop()
