"""The viewer's web application (Starlette): the page, its two static files and the JSON API it reads.

Endpoints (all ``GET``; every answer is JSON except the page and its assets; docs/cli.md documents them):

- ``/``, ``/app.js``, ``/app.css``, ``/favicon.svg``: the page, shipped in the package (``static/``);
  nothing is fetched from elsewhere.
- ``/api/info``: the store's path, whether it exists, ``store_id``, ``last_id`` and counts by kind.
- ``/api/events?after=&before=&limit=&event=&kind=&distinct_id=&q=``: a page of events (see
  :meth:`Store.events`).
- ``/api/events/{uuid}``: one event with all its properties.
- ``/api/facets``: event names, kinds and distinct ids to filter by.
- ``/api/exceptions?limit=``: the exceptions grouped as issues, most recently seen first.
- ``/api/traces?limit=``: the LLM traces, newest first; ``/api/traces/{trace_id}``: one as a tree.
- ``/api/charts?minutes=``: events per minute by kind, LLM generations with cost and latency.

Events hold user data, and the page shows them on a port any local process or web page could try to
reach, so :class:`Guard` (pure ASGI, in front of everything) answers only requests addressed to a
loopback name with its port (``127.0.0.1``, ``localhost``, ``[::1]`` or the address it listens on): a
web page that points its own domain at 127.0.0.1 (DNS rebinding) is refused by its ``Host`` header. It
also puts a strict Content-Security-Policy and no-sniff/no-frame/no-referrer headers on every answer.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from typing import Any, overload

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .store import BadQuery, Filters, Store, StoreError

# Scripts and styles only from the page's own files, data only from its own API; no inline script or
# style, no frames, no forms, no plugins. Charts are SVG built in the page; the only image is the icon.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self';"
    " base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
_ASSETS = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/app.css": ("app.css", "text/css; charset=utf-8"),
    "/favicon.svg": ("favicon.svg", "image/svg+xml"),
}


class Guard:
    """Refuses requests whose ``Host`` is not a loopback name with our port (DNS rebinding) and adds the
    security headers to every response."""

    def __init__(self, app: ASGIApp, port: int, host: str = "127.0.0.1") -> None:
        self.app = app
        names = {*LOOPBACK_NAMES, f"[{host}]" if ":" in host else host}
        self.hosts = {f"{name}:{port}".lower().encode() for name in names}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = next((v for k, v in scope["headers"] if k == b"host"), b"").lower()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        if host not in self.hosts:
            response = JSONResponse(
                {"error": "this viewer answers only at http://127.0.0.1, localhost or [::1] on its port"},
                status_code=421,
            )
            await response(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)


def create_app(store: Store, port: int, host: str = "127.0.0.1") -> ASGIApp:
    """The viewer for ``store``, answering at ``port`` on the loopback address ``host``."""
    assets = {
        path: ((resources.files(__package__) / "static" / name).read_bytes(), media)
        for path, (name, media) in _ASSETS.items()
    }

    def asset(request: Request) -> Response:
        body, media = assets[request.url.path]
        return Response(body, media_type=media)

    def api(answer: Callable[[Request], Any]) -> Callable[[Request], Response]:
        """A JSON endpoint: its answer, 400 for a bad parameter, 404 for None, 500 for an unreadable
        store — each with an ``error`` message the page shows."""

        def endpoint(request: Request) -> Response:
            try:
                body = answer(request)
            except BadQuery as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            except StoreError as exc:
                return JSONResponse({"error": str(exc)}, status_code=500)
            if body is None:
                return JSONResponse({"error": "not found"}, status_code=404)
            return JSONResponse(body)

        return endpoint

    def events(request: Request) -> Any:
        q = request.query_params
        filters = Filters(
            event=q.get("event") or None,
            kind=q.get("kind") or None,
            distinct_id=q.get("distinct_id") or None,
            q=q.get("q") or None,
        )
        return store.events(
            filters,
            after=_int(q, "after"),
            before=_int(q, "before"),
            limit=_int(q, "limit", 200),
        )

    routes = [Route(path, asset) for path in assets]
    routes += [
        Route("/api/info", api(lambda r: store.info())),
        Route("/api/events", api(events)),
        Route("/api/events/{uuid}", api(lambda r: store.event(r.path_params["uuid"]))),
        Route("/api/facets", api(lambda r: store.facets())),
        Route("/api/exceptions", api(lambda r: store.exceptions(_int(r.query_params, "limit", 100)))),
        Route("/api/traces", api(lambda r: store.traces(_int(r.query_params, "limit", 100)))),
        Route("/api/traces/{trace_id}", api(lambda r: store.trace(r.path_params["trace_id"]))),
        Route("/api/charts", api(lambda r: store.charts(_int(r.query_params, "minutes", 60)))),
    ]
    return Guard(Starlette(routes=routes), port, host)


@overload
def _int(params: Any, name: str) -> int | None: ...


@overload
def _int(params: Any, name: str, default: int) -> int: ...


def _int(params: Any, name: str, default: int | None = None) -> int | None:
    value = params.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise BadQuery(f"{name} must be a whole number, not {value!r}") from None
