"""``ObsMiddleware``: obs for any ASGI application (FastAPI, Starlette, Litestar, Quart, a raw ASGI app).

    app = ObsMiddleware(app, user_resolver=current_user)

Per HTTP request (and websocket): an ``obs.context`` whose distinct id is the user (``request.state.user``,
else ``user_resolver(scope)``, else a Bearer JWT's ``sub``, else posthog-js's ``X-POSTHOG-DISTINCT-ID``),
whose session is posthog-js's ``X-POSTHOG-SESSION-ID``, and whose properties say what was asked
(``$current_url`` without the query string, ``$request_method``, ``$request_path``, ``$request_route``,
``$user_agent``, ``$request_id``) plus the user as ``POSTHOG_IDENTIFY_PII`` allows. An exception escaping
the app is sent once as an `$exception` (``mechanism.handled: false``) with the response status, and
re-raised so the app's usual 500 is sent; that includes errors raised while a ``StreamingResponse`` is
streaming and in background tasks, which run inside the response. ``text/html`` responses get the
browser snippet (:mod:`obs.integrations._inject`). With the app's lifespan, the client starts, and is
flushed and shut down after the app's own shutdown, so nothing is lost when the server stops on SIGTERM.

``GET /api/debug/throw?kind=ValueError&msg=…`` raises the named builtin exception after resolving the user,
to prove the whole path; it exists only with ``debug_route=True`` or, by default, ``DEBUG=1``.

No ASGI framework is imported; a starlette ``HTTPException`` under 500 that escapes is recognised by
class when starlette is loaded. Trouble inside obs is logged and counted, never raised into the app.
"""

from __future__ import annotations

import inspect
import os
import sys
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from .. import _api, _current, _exceptions, _web
from .._context import context
from .._log import log, warn_every
from .._snippet import browser_snippet
from ._inject import Injector

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
UserResolver = Callable[[Scope], Any]  # returns a user (dict/object with id, email, name) or an awaitable

DEBUG_PATH = "/api/debug/throw"
# What the debug route may raise: builtin exceptions by name, never an arbitrary class lookup.
DEBUG_KINDS: dict[str, type[Exception]] = {
    e.__name__: e
    for e in (
        Exception,
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        LookupError,
        AttributeError,
        RuntimeError,
        NotImplementedError,
        ZeroDivisionError,
        ArithmeticError,
        AssertionError,
        OSError,
        ConnectionError,
        TimeoutError,
        PermissionError,
        FileNotFoundError,
        UnicodeError,
    )
}


class ObsMiddleware:
    """Pure ASGI middleware: request context, error capture, snippet injection, lifespan, debug route."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        user_resolver: UserResolver | None = None,
        inject_snippet: bool = True,
        debug_route: bool | None = None,
        csp_nonce: Callable[[Scope], str | None] | None = None,
        route_template: Callable[[Scope], str | None] | None = None,
    ) -> None:
        self.app = app
        self.user_resolver = user_resolver
        self.inject_snippet = inject_snippet
        self.debug_route = _debug_env() if debug_route is None else bool(debug_route)
        self.csp_nonce = csp_nonce
        self.route_template = route_template

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope.get("type")
        if kind == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if kind not in ("http", "websocket") or not _api.get_client().enabled:
            await self.app(scope, receive, send)
            return
        await self._request(scope, receive, send)

    # ---------------------------------------------------------------- one request

    async def _request(self, scope: Scope, receive: Receive, send: Send) -> None:
        web, props = await self._begin(scope)
        token = _web.current.set(web)
        sent = {"status": 0, "disconnected": False}

        async def receive_(*args: Any) -> Message:
            message = await receive()
            if message.get("type") in ("http.disconnect", "websocket.disconnect"):
                sent["disconnected"] = True
            return message

        async def send_(message: Message) -> None:
            if message.get("type") == "http.response.start":
                sent["status"] = message.get("status", 0)
            await send(message)

        downstream: Send = send_
        if self.inject_snippet and scope.get("type") == "http" and scope.get("method") != "HEAD":
            downstream = Injector(send_, lambda: _snippet_for(web), _max_bytes())
        try:
            with context(web.distinct_id(), web.session_id, props):
                try:
                    if self.debug_route and scope.get("path") == DEBUG_PATH and scope.get("type") == "http":
                        await self._debug(scope, receive_, downstream)
                    else:
                        await self.app(scope, receive_, downstream)
                except Exception as exc:
                    if not sent["disconnected"] and not _is_client_error(exc):
                        self._capture(exc, web, sent["status"] or 500)
                    raise
        finally:
            _web.current.reset(token)

    async def _begin(self, scope: Scope) -> tuple[_web.WebRequest, dict[str, Any]]:
        """The request's WebRequest (its user resolved now) and its context properties; never raises."""
        scope.setdefault("state", {})  # request.state: shared with the app, read again later
        web = _web.WebRequest(scope, nonce_resolver=self.csp_nonce)  # type: ignore[arg-type]
        props: dict[str, Any] = {}
        try:
            web.start_user = await self._start_user(scope)
            props = _web.request_properties(scope)
            route = self._route(scope)
            if route:
                props["$request_route"] = route
            web.request_id = web.request_id or uuid.uuid4().hex
            props["$request_id"] = web.request_id
            props.update(_web.user_properties(web.user(), _identify_mode()))
        except Exception as e:
            _trouble("request", "obs: reading the request failed: %r", e)
        return web, props

    async def _start_user(self, scope: Scope) -> _web.User | None:
        state = scope.get("state") or {}
        user = _web.user_from(state.get("user"))
        if user is None and self.user_resolver is not None:
            try:
                found = self.user_resolver(scope)
                if inspect.isawaitable(found):
                    found = await found
                user = _web.user_from(found)
            except Exception as e:  # the app's resolver failed: this request is anonymous for obs
                _trouble("user-resolver", "obs: user_resolver raised %r; the request is anonymous", e)
        return user or _web.user_from_jwt(scope)

    def _route(self, scope: Scope) -> str | None:
        if self.route_template is not None:
            try:
                return self.route_template(scope)
            except Exception as e:
                _trouble("route", "obs: route_template raised %r", e)
        return None

    def _capture(self, exc: BaseException, web: _web.WebRequest, status: int) -> None:
        try:
            capture_for_request(exc, web, status)
        except Exception as e:
            _trouble("capture", "obs: capturing a request's exception failed: %r", e)

    # ---------------------------------------------------------------- debug route

    async def _debug(self, scope: Scope, receive: Receive, send: Send) -> None:
        query = parse_qs((scope.get("query_string") or b"").decode("latin-1"))
        kind = (query.get("kind") or ["ValueError"])[0]
        message = _web.clean((query.get("msg") or ["obs debug route"])[0], 200) or "obs debug route"
        if scope.get("method") != "GET" or kind not in DEBUG_KINDS:
            status = 405 if scope.get("method") != "GET" else 400
            text = f"unknown kind; one of: {', '.join(DEBUG_KINDS)}" if status == 400 else "GET only"
            body = text.encode()
            headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        raise DEBUG_KINDS[kind](message)

    # ---------------------------------------------------------------- lifespan

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def receive_() -> Message:
            message = await receive()
            if message.get("type") == "lifespan.startup":
                _start_client()
            return message

        async def send_(message: Message) -> None:
            if message.get("type") in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await _stop_client()  # after the app's own shutdown code, which may still capture
            await send(message)

        await self.app(scope, receive_, send_)


def capture_for_request(exc: BaseException, web: _web.WebRequest | None, status: int) -> str | None:
    """Send ``exc`` as the request's unhandled `$exception`, with its user as it is now and its status."""
    if _exceptions.is_captured(exc):
        return None
    props: dict[str, Any] = {"$response_status_code": status}
    did = None
    if web is not None:
        user = web.user()
        did = web.distinct_id(user)
        props.update(_web.user_properties(user, _identify_mode()))
        route = _route_of(web.scope)
        if route:
            props["$request_route"] = route
    return _exceptions.capture(
        exc,
        distinct_id=did,
        properties=props,
        handled=False,
        source="obs.integrations.asgi",
        mechanism="obs.asgi",
    )


def _route_of(scope: Scope) -> str | None:
    """The route template starlette's router matched (``/items/{item_id}``), once it has run."""
    route = scope.get("route")
    value = getattr(route, "path_format", None) or getattr(route, "path", None)
    return _web.clean(value, _web.MAX_PATH)


def _snippet_for(web: _web.WebRequest) -> str:
    if web.snippet_rendered:  # the page placed it itself
        return ""
    return browser_snippet(web.scope)


def _is_client_error(exc: BaseException) -> bool:
    """A starlette HTTPException under 500 (and a client that went away) is not the server's error."""
    exceptions = sys.modules.get("starlette.exceptions")
    if exceptions is not None and isinstance(exc, exceptions.HTTPException):
        return bool(exc.status_code < 500)
    requests = sys.modules.get("starlette.requests")
    return requests is not None and isinstance(exc, requests.ClientDisconnect)


def _identify_mode() -> str:
    return getattr(_api.get_client().settings, "identify_pii", "email")


def _max_bytes() -> int:
    return getattr(_api.get_client().settings, "inject_max_bytes", 4 * 1024 * 1024)


def _debug_env() -> bool:
    # DEBUG is the app's own switch (not an obs setting): the debug route follows it.
    return os.environ.get("DEBUG", "").strip().lower() in ("1", "true", "yes", "on")


def _start_client() -> None:
    """At app startup: the client as configured (the same overrides again if an earlier app stopped it)."""
    try:
        client = _api.get_client()
        if getattr(client, "_closed", False):
            _api.init(**(_current.overrides[0] if _current.overrides else {}))
    except Exception as e:
        _trouble("startup", "obs: starting with the app failed: %r", e)


async def _stop_client() -> None:
    try:
        client = _current.client
        settings = getattr(client, "settings", None)
        if client is None or settings is None:
            return
        ok = await _api.ashutdown(settings.shutdown_timeout)
        log.debug("obs: app shutdown: events flushed (%s), client shut down", "all" if ok else "timed out")
    except Exception as e:
        _trouble("shutdown", "obs: flushing at app shutdown failed: %r", e)


def _trouble(key: str, msg: str, *args: Any) -> None:
    client = _current.client
    stats = getattr(client, "_stats", None)
    if stats is not None:
        stats.incr("integration_errors")
    warn_every(f"asgi-{key}", 60, msg, *args)
