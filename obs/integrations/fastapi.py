"""``instrument(app)``: obs for a FastAPI or Starlette application, in one call.

    app = obs.integrations.fastapi.instrument(FastAPI(), user_resolver=current_user)

Adds :class:`obs.integrations.asgi.ObsMiddleware` (request context, unhandled errors, the browser snippet,
the lifespan flush, the debug route) and gives it the route template starlette will match, so events
captured before routing carry it too. It also watches the app's exception handlers: a handler's answer
of 500 or more (``HTTPException(503)`` through FastAPI's own handler, or your handler turning an error
into a 500) is captured with the exception it handled, which the middleware alone could not see. Answers
under 500 (a 404, a validation error) are not errors. FastAPI is imported only by the caller.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .. import _web
from .._log import warn_every
from .asgi import ObsMiddleware, Scope, capture_for_request

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request

A = TypeVar("A", bound="Starlette")
_WATCHED = "__obs_watched__"


def instrument(
    app: A,
    *,
    user_resolver: Callable[[Request], Any] | None = None,
    inject_snippet: bool = True,
    debug_route: bool | None = None,
    csp_nonce: Callable[[Request], str | None] | None = None,
) -> A:
    """Instrument ``app`` (before it serves its first request) and return it.

    - ``user_resolver(request)``: the user (a dict or object with ``id``, ``email``, ``name``), sync or
      async, asked when ``request.state.user`` is not set at the start of a request.
    - ``inject_snippet``: write the browser snippet into every ``text/html`` response.
    - ``debug_route``: serve ``GET /api/debug/throw``; by default only when ``DEBUG=1``.
    - ``csp_nonce(request)``: the CSP nonce, when it is not in ``request.state.csp_nonce``.
    """
    from starlette.requests import Request

    def as_request(fn: Callable[[Request], Any] | None) -> Callable[[Scope], Any] | None:
        return None if fn is None else lambda scope: fn(Request(scope))

    app.add_middleware(
        ObsMiddleware,
        user_resolver=as_request(user_resolver),
        inject_snippet=inject_snippet,
        debug_route=debug_route,
        csp_nonce=as_request(csp_nonce),
        route_template=lambda scope: _route_template(app, scope),
    )
    handlers = _Handlers()
    handlers.update(app.exception_handlers)
    app.exception_handlers = handlers
    return app


class _Handlers(dict[Any, Callable[..., Any]]):
    """``app.exception_handlers`` wrapping every handler put in, now or later (``@app.exception_handler``)."""

    def __setitem__(self, key: Any, handler: Callable[..., Any]) -> None:
        super().__setitem__(key, _watch(handler))

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, handler in dict(*args, **kwargs).items():
            self[key] = handler

    def setdefault(self, key: Any, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]


def _watch(handler: Callable[..., Any]) -> Callable[..., Any]:
    if getattr(handler, _WATCHED, False):
        return handler

    async def watched(request: Request, exc: Exception) -> Any:
        if inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
            getattr(handler, "__call__", None)  # noqa: B004 - an async callable object
        ):
            response = await handler(request, exc)
        else:
            from starlette.concurrency import run_in_threadpool

            response = await run_in_threadpool(handler, request, exc)
        try:
            status = getattr(response, "status_code", 500)
            if isinstance(status, int) and status >= 500:
                capture_for_request(exc, _web.for_request(request), status)
        except Exception as e:
            warn_every("fastapi-handler", 60, "obs: capturing a handled 5xx failed: %r", e)
        return response

    setattr(watched, _WATCHED, True)
    watched.__name__ = getattr(handler, "__name__", "handler")
    return watched


def _route_template(app: Starlette, scope: Scope) -> str | None:
    """The path template of the route starlette will pick for ``scope`` (as its router does)."""
    from starlette.routing import Match

    if scope.get("type") not in ("http", "websocket"):
        return None
    for route in app.router.routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return _web.clean(getattr(route, "path_format", None) or getattr(route, "path", None))
    return None
