"""Who and what a web request is: its user, its tracing headers and the properties its events carry.

Shared by the ASGI middleware (which resolves the user when the request starts) and the browser snippet
(which renders later, once the app may have set ``request.state.user``). Everything here works on the raw
ASGI ``scope``, so no web framework is imported. Values that come from the client (headers, a JWT's
``sub``) are analytics context, never authentication: control characters are stripped and lengths capped.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any, NamedTuple

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
MAX_HEADER = 1000  # as posthog-python's ASGI middleware
MAX_PATH = 2048
MAX_FIELD = 256  # a user's id, email or name, a request id
MAX_TOKEN = 16_384  # a JWT with many claims is longer than other headers; past this it is not read
Scope = dict[str, Any]


def clean(value: Any, cap: int = MAX_HEADER) -> str | None:
    """``value`` as a string without control characters, stripped and cut at ``cap``; None when empty."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return _CONTROL.sub("", str(value)).strip()[:cap] or None


def header(scope: Mapping[str, Any], name: bytes, cap: int = MAX_HEADER) -> str | None:
    """The first usable value of header ``name`` (lower case), cleaned and cut at ``cap``."""
    for item in scope.get("headers") or ():
        try:
            key, value = item
        except (TypeError, ValueError):
            continue
        if isinstance(key, bytes) and key.lower() == name:
            v = clean(value, cap)
            if v:
                return v
    return None


# ---------------------------------------------------------------- the user


class User(NamedTuple):
    id: str
    email: str | None = None
    name: str | None = None


def user_from(obj: Any) -> User | None:
    """A user from a dict or an object with ``id`` (required), ``email`` and ``name``; None otherwise."""
    if obj is None:
        return None
    if isinstance(obj, User):
        return obj
    get: Callable[[str], Any] = obj.get if isinstance(obj, Mapping) else lambda k: getattr(obj, k, None)
    uid = clean(get("id"), MAX_FIELD)
    if uid is None:
        return None
    return User(uid, clean(get("email"), MAX_FIELD), clean(get("name"), MAX_FIELD))


def jwt_subject(scope: Mapping[str, Any]) -> str | None:
    """The ``sub`` claim of an ``Authorization: Bearer`` JWT, read WITHOUT verifying the signature.

    For analytics attribution only: anyone can forge it, exactly like the ``X-POSTHOG-DISTINCT-ID`` header.
    The token itself is never kept or sent anywhere.
    """
    auth = header(scope, b"authorization", MAX_TOKEN)
    if not auth or auth[:7].lower() != "bearer ":
        return None
    parts = auth[7:].strip().split(".")
    if len(parts) != 3:
        return None
    try:
        payload = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except Exception:  # not a JWT after all: no user from it
        return None
    sub = claims.get("sub") if isinstance(claims, dict) else None
    return clean(sub, MAX_FIELD) if isinstance(sub, (str, int)) and not isinstance(sub, bool) else None


def user_properties(user: User | None, mode: str) -> dict[str, str]:
    """What ``POSTHOG_IDENTIFY_PII`` lets every event of the request carry about its user."""
    if user is None or mode == "none":
        return {}
    props = {"user_id": user.id}
    if mode in ("email", "full") and user.email:
        props["user_email"] = user.email
    if mode == "full" and user.name:
        props["user_name"] = user.name
    return props


def person_properties(user: User, mode: str) -> dict[str, str]:
    """The person properties the browser's ``identify`` may set, by the same rule."""
    props: dict[str, str] = {}
    if mode in ("email", "full") and user.email:
        props["email"] = user.email
    if mode == "full" and user.name:
        props["name"] = user.name
    return props


# ---------------------------------------------------------------- one request


class WebRequest:
    """What obs knows about the request being served; ``current`` holds it for the request's duration."""

    __slots__ = ("nonce_resolver", "request_id", "scope", "session_id", "snippet_rendered", "start_user")

    def __init__(
        self,
        scope: Scope,
        start_user: User | None = None,
        nonce_resolver: Callable[[Scope], Any] | None = None,
    ) -> None:
        self.scope = scope
        self.start_user = start_user  # from request.state, the app's resolver or a JWT, at the start
        self.nonce_resolver = nonce_resolver
        self.session_id = header(scope, b"x-posthog-session-id")
        self.request_id = clean(header(scope, b"x-request-id"), MAX_FIELD)
        self.snippet_rendered = False

    def user(self) -> User | None:
        """``request.state.user`` as it is now (a dependency may have set it meanwhile), else the start's."""
        state = self.scope.get("state")
        found = user_from(state.get("user")) if isinstance(state, Mapping) else None
        return found or self.start_user

    def distinct_id(self, user: User | None = None) -> str | None:
        """The logged-in user's id, else posthog-js's ``X-POSTHOG-DISTINCT-ID``, else None (anonymous)."""
        user = user or self.user()
        if user is not None:
            return user.id
        return clean(header(self.scope, b"x-posthog-distinct-id"), MAX_FIELD)

    def nonce(self) -> str | None:
        state = self.scope.get("state")
        value = state.get("csp_nonce") if isinstance(state, Mapping) else None
        if value is None and self.nonce_resolver is not None:
            value = self.nonce_resolver(self.scope)
        return clean(value, MAX_FIELD)

    def host(self) -> str | None:
        """The host the browser asked for (``example.com:8000``), for posthog-js's tracing headers."""
        return clean(header(self.scope, b"host"), 255)


current: ContextVar[WebRequest | None] = ContextVar("obs_web_request", default=None)


def for_request(request: Any) -> WebRequest | None:
    """The WebRequest of ``request`` (a Starlette ``Request``, an ASGI scope, or None: the current one)."""
    web = current.get()
    if request is None:
        return web
    scope = request if isinstance(request, dict) else getattr(request, "scope", None)
    if not isinstance(scope, dict):
        return web
    if web is not None and web.scope is scope:
        return web
    return WebRequest(scope, user_from_jwt(scope))


def user_from_jwt(scope: Mapping[str, Any]) -> User | None:
    sub = jwt_subject(scope)
    return None if sub is None else User(sub)


def request_properties(scope: Mapping[str, Any]) -> dict[str, Any]:
    """posthog-python's request properties (``$current_url`` without the query string, method, path, user
    agent); not ``$ip``, which is personal data the server's events do not need."""
    props: dict[str, Any] = {}
    method = clean(scope.get("method"), 32)
    if method:
        props["$request_method"] = method
    path = clean(scope.get("path"), MAX_PATH)
    if path:
        props["$request_path"] = path
    agent = header(scope, b"user-agent")
    if agent:
        props["$user_agent"] = props["$raw_user_agent"] = agent
    scheme = clean(scope.get("scheme"), 16) or "http"
    host = header(scope, b"host") or _server_host(scope)
    if host and path:
        props["$current_url"] = f"{scheme}://{host}{path}"  # never the query: secrets live there
    return props


def _server_host(scope: Mapping[str, Any]) -> str | None:
    server = scope.get("server")
    if not isinstance(server, (list, tuple)) or len(server) != 2:
        return None
    host, port = server
    host = clean(host, 255)
    if host is None or not isinstance(port, int):
        return None
    if ":" in host:
        host = f"[{host}]"
    return host if port in (80, 443) else f"{host}:{port}"
