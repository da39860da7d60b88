"""PostHog as posthog-js sees it, on 127.0.0.1 only: the script, its config, its flags, and its ingestion.

One server plays posthog-js's `api_host` and asset host:

- `GET /static/<file>` serves posthog-js's own `dist/` from `tests/web/node_modules` (installed from the npm
  registry by `.ci/run`), so `array.js` and the extensions it loads lazily (recorder, exception
  autocapture) are the real ones.
- `GET /array/<key>/config.js` and `/array/<key>/config` answer the remote config, with session replay
  and exception autocapture on; `/flags/` and `/decide/` answer the flags.
- Every `POST` (`/e/`, `/i/v0/e/`, `/s/`, `/batch/`, …) is recorded and decoded as PostHog would:
  gzip (`compression=gzip-js`, or a gzip body), base64 form data (`data=…`, sendBeacon), or plain JSON;
  replay snapshots' fields that posthog-js compresses itself (`cv: 2024-10`) are inflated too.

Answers carry CORS headers: the page under test is on another origin.
"""

from __future__ import annotations

import base64
import gzip
import json
import mimetypes
import threading
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.capture_server import LocalServer, Reply

WEB = Path(__file__).resolve().parent / "web"
DIST = WEB / "node_modules" / "posthog-js" / "dist"


@dataclass
class Posted:
    path: str
    query: dict[str, list[str]]
    events: list[dict[str, Any]]


def decode_body(raw: bytes, query: dict[str, list[str]], content_type: str) -> Any:
    """A posthog-js request body → its JSON value."""
    compression = (query.get("compression") or [""])[0]
    if raw[:2] == b"\x1f\x8b" or compression in ("gzip-js", "gzip"):
        raw = gzip.decompress(raw)
    elif "application/x-www-form-urlencoded" in content_type or raw.startswith(b"data="):
        data = parse_qs(raw.decode("latin-1"))["data"][0]
        raw = base64.b64decode(data + "=" * (-len(data) % 4))
    return json.loads(raw.decode("utf-8"))


def as_events(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, dict) and "batch" in value:
        value = value["batch"]
    return [e for e in (value if isinstance(value, list) else [value]) if isinstance(e, dict)]


def inflate_snapshot(item: Any) -> Any:
    """One rrweb event of `$snapshot_data`, with the fields posthog-js gzipped (latin-1 strings) decoded."""
    if not isinstance(item, dict) or item.get("cv") != "2024-10":
        return item

    def unpack(v: Any) -> Any:
        return json.loads(gzip.decompress(v.encode("latin-1"))) if isinstance(v, str) else v

    data = item.get("data")
    if isinstance(data, str):
        return {**item, "data": unpack(data)}
    if isinstance(data, dict):
        return {**item, "data": {k: unpack(v) if k in ("texts", "attributes", "removes", "adds") else v
                                 for k, v in data.items()}}  # fmt: skip
    return item


def remote_config(key: str) -> dict[str, Any]:
    return {
        "token": key,
        "supportedCompression": ["gzip", "gzip-js"],
        "hasFeatureFlags": True,
        "captureDeadClicks": False,
        "capturePerformance": False,
        "autocapture_opt_out": True,
        "autocaptureExceptions": True,
        "errorTracking": {"autocaptureExceptions": True, "suppressionRules": []},
        "sessionRecording": {"endpoint": "/s/", "consoleLogRecordingEnabled": False, "recorderVersion": "v2"},
        "heatmaps": False,
        "surveys": False,
        "productTours": False,
        "defaultIdentifiedOnly": True,
        "elementsChainAsString": True,
        "siteApps": [],
        "isAuthenticated": False,
        "toolbarParams": {},
        "toolbarVersion": "toolbar",
    }


class PostHogJSServer(LocalServer):
    def __init__(self, flags: dict[str, Any] | None = None) -> None:
        self.posted: list[Posted] = []
        self.gets: list[str] = []
        self.flags = flags or {}
        self.errors: list[str] = []  # requests that could not be decoded
        self._script: deque[Reply] = deque()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Access-Control-Allow-Origin", self.headers.get("Origin") or "*")
                self.send_header("Access-Control-Allow-Credentials", "true")
                self.send_header("Access-Control-Allow-Headers", "*")
                self.send_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
                self.end_headers()
                self.wfile.write(body)

            def do_OPTIONS(self) -> None:
                self._answer(204, b"")

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                with server._lock:
                    server.gets.append(url.path)
                parts = url.path.strip("/").split("/")
                if parts[0] == "static" and len(parts) in (2, 3):  # /static/[<version>/]<file>
                    file = DIST / parts[-1]
                    if file.is_file() and file.parent == DIST:
                        ctype = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
                        self._answer(200, file.read_bytes(), ctype)
                        return
                elif parts[0] == "array" and len(parts) == 3 and parts[2] in ("config", "config.js"):
                    config = remote_config(parts[1])
                    if parts[2] == "config":
                        self._answer(200, json.dumps(config).encode())
                    else:
                        js = (
                            "(function(){window._POSTHOG_REMOTE_CONFIG=window._POSTHOG_REMOTE_CONFIG||{};"
                            f"window._POSTHOG_REMOTE_CONFIG[{json.dumps(parts[1])}]="
                            f"{{config:{json.dumps(config)},siteApps:[]}};}})();"
                        )
                        self._answer(200, js.encode(), "application/javascript")
                    return
                elif parts[0] in ("flags", "decide"):
                    self._answer(200, server._flags_answer())
                    return
                self._answer(404, b"{}")

            def do_POST(self) -> None:
                url = urlsplit(self.path)
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                if url.path.strip("/") in ("flags", "decide"):
                    self._answer(200, server._flags_answer())
                    return
                query = parse_qs(url.query)
                try:
                    value = decode_body(raw, query, self.headers.get("content-type", ""))
                    events = as_events(value)
                except Exception as e:
                    with server._lock:
                        server.errors.append(f"{url.path}: {e!r}")
                    events = []
                with server._lock:
                    server.posted.append(Posted(url.path, query, events))
                self._answer(200, b'{"status":1}')

        self._serve(Handler)

    def _flags_answer(self) -> bytes:
        return json.dumps(
            {
                "flags": {
                    k: {"key": k, "enabled": bool(v), "variant": v if isinstance(v, str) else None}
                    for k, v in self.flags.items()
                },
                "featureFlags": self.flags,
                "featureFlagPayloads": {},
                "errorsWhileComputingFlags": False,
                "requestId": "req-flags",
            }
        ).encode()

    # ---- what tests look at

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            found = [e for p in self.posted for e in p.events]
        return [e for e in found if name is None or e.get("event") == name]

    def snapshot_text(self) -> str:
        """Every replay snapshot received, decoded, as one JSON text to search."""
        items = [
            inflate_snapshot(item)
            for e in self.events("$snapshot")
            for item in (e.get("properties", {}).get("$snapshot_data") or [])
        ]
        return json.dumps(items, ensure_ascii=False)
