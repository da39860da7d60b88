"""A PostHog-shaped feature flags server for tests and benchmarks, on 127.0.0.1 only.

- `POST /flags/` (remote evaluation) answers from `flags` (key → value, or a callable given the request
  body) and `payloads`, in the shape named by `shape`: `"v4"` (what `/flags/?v=4` answers today: `flags`
  records with a typed `value`, `enabled`, `variant`, `reason` and `metadata` — `id`, `version`, `payload`,
  `description` — beside `errorsWhileComputingFlags`, `requestId` and `evaluatedAt`), `"v2"` (the same
  records without `value`), or `"legacy"` (`featureFlags`/`featureFlagPayloads`). `records` adds fields to
  a flag's record (its `reason` and `metadata` merged), `extra` to the answer. Only the keys in
  `flag_keys_to_evaluate` are answered (all of them without it), as PostHog does.
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


EVALUATED_AT = 1_767_225_600_000  # `evaluatedAt` of every answer: ms since the epoch
SHAPES = ("v4", "v2", "legacy")


def flag_id(key: str) -> int:
    """The id PostHog gives flag ``key`` here: the same in definitions and in `/flags/` answers."""
    return zlib.crc32(key.encode()) % 10_000


def flag(key: str, rollout: int = 100, **filters: Any) -> dict[str, Any]:
    """A flag definition as the local evaluation endpoint serves it (one condition set, no properties)."""
    groups = filters.pop("groups", [{"properties": [], "rollout_percentage": rollout}])
    extra = {k: filters.pop(k) for k in ("active", "ensure_experience_continuity") if k in filters}
    return {
        "id": flag_id(key),
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


def flags_answer(
    values: dict[str, Any],
    payloads: dict[str, Any],
    request_id: str = "req-1",
    *,
    shape: str = "v4",
    records: dict[str, dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
) -> bytes:
    """A `/flags/` answer in ``shape``: each flag in ``values`` (True/False or a variant) as matched, with
    its payload from ``payloads``; ``records`` adds fields to a flag's record, ``extra`` to the answer."""
    if shape not in SHAPES:
        raise ValueError(f"shape is one of {SHAPES}, not {shape!r}")
    if shape == "legacy":
        answer: dict[str, Any] = {
            "featureFlags": values,
            "featureFlagPayloads": {k: json.dumps(payloads[k]) for k in values if k in payloads},
        }
        return json.dumps({**answer, **(extra or {})}).encode()
    flags = {}
    for key, value in values.items():
        matched = value is not False
        record: dict[str, Any] = {
            "key": key,
            "enabled": bool(value),
            "variant": value if isinstance(value, str) else None,
            "reason": {
                "code": "condition_match" if matched else "no_condition_match",
                "condition_index": 0 if matched else None,
                "description": "Matched condition set 1" if matched else "No matching condition set",
            },
            "metadata": {
                "id": flag_id(key),
                "version": 3,
                "payload": json.dumps(payloads[key]) if key in payloads else None,
                "description": f"The {key} flag",
            },
        }
        if shape == "v4":
            record = {"key": key, "value": value, "failed": False, **record}
        more = dict((records or {}).get(key) or {})
        for part in ("reason", "metadata"):
            if isinstance(more.get(part), dict):
                record[part] = {**record[part], **more.pop(part)}
        flags[key] = {**record, **more}
    answer = {
        "flags": flags,
        "errorsWhileComputingFlags": False,
        "requestId": request_id,
        "evaluatedAt": EVALUATED_AT,
    }
    return json.dumps({**answer, **(extra or {})}).encode()


class FlagsServer(LocalServer):
    def __init__(self) -> None:
        self.flags: dict[str, Any] = {}
        self.payloads: dict[str, Any] = {}
        self.shape = "v4"  # or "v2", "legacy": see flags_answer
        self.records: dict[str, dict[str, Any]] = {}  # more fields for a flag's record
        self.extra: dict[str, Any] = {}  # more fields for the answer
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
        return flags_answer(values, self.payloads, shape=self.shape, records=self.records, extra=self.extra)

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
