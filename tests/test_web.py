"""`obs._web`: who a request's user is and what its events carry, from the raw ASGI scope."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from obs import _web


def jwt(claims: Any) -> bytes:
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"Bearer eyJhbGciOiJub25lIn0.{body}.sig".encode()


@pytest.mark.parametrize(
    ("auth", "sub"),
    [
        (jwt({"sub": "u-1"}), "u-1"),
        (jwt({"sub": 42}), "42"),
        (jwt({"sub": True}), None),
        (jwt({"sub": "a\x00b\nc"}), "abc"),
        (jwt({"sub": "x" * 999}), "x" * 256),
        (jwt(["not", "claims"]), None),
        (jwt({"name": "no sub"}), None),
        (b"Basic dXNlcjpwYXNz", None),
        (b"Bearer not-a-jwt", None),
        (b"Bearer a.%%%.c", None),
        (b"bearer " + jwt({"sub": "lower"})[7:], "lower"),
    ],
)
def test_jwt_subject(auth: bytes, sub: str | None) -> None:
    assert _web.jwt_subject({"headers": [(b"authorization", auth)]}) == sub


def test_user_from_dicts_objects_and_nothing() -> None:
    assert _web.user_from({"id": 7, "email": " a@b.c ", "name": None}) == _web.User("7", "a@b.c", None)

    class U:
        id = "u"
        email = "e"

    assert _web.user_from(U()) == _web.User("u", "e", None)
    assert _web.user_from({"email": "no-id@example.com"}) is None
    assert _web.user_from(None) is None


@pytest.mark.parametrize(
    ("mode", "props"),
    [
        ("none", {}),
        ("id", {"user_id": "1"}),
        ("email", {"user_id": "1", "user_email": "e@x"}),
        ("full", {"user_id": "1", "user_email": "e@x", "user_name": "N"}),
    ],
)
def test_user_properties_by_mode(mode: str, props: dict[str, str]) -> None:
    assert _web.user_properties(_web.User("1", "e@x", "N"), mode) == props
    assert _web.user_properties(None, mode) == {}


def test_request_properties_never_carry_the_query_or_secrets() -> None:
    scope = {
        "type": "http",
        "scheme": "https",
        "method": "POST",
        "path": "/pay",
        "query_string": b"card=4111111111111111",
        "headers": [(b"host", b"shop.example"), (b"user-agent", b"UA/1"), (b"authorization", b"Bearer t")],
    }
    assert _web.request_properties(scope) == {
        "$request_method": "POST",
        "$request_path": "/pay",
        "$user_agent": "UA/1",
        "$raw_user_agent": "UA/1",
        "$current_url": "https://shop.example/pay",
    }


def test_current_url_from_the_server_address_without_a_host_header() -> None:
    scope = {"scheme": "http", "path": "/", "server": ("::1", 8000), "headers": []}
    assert _web.request_properties(scope)["$current_url"] == "http://[::1]:8000/"


def test_tracing_headers_first_usable_value_wins() -> None:
    scope: dict[str, Any] = {
        "headers": [
            (b"x-posthog-session-id", b" \x01 "),
            (b"X-PostHog-Session-ID", b"s-2"),
            (b"x-request-id", b"r"),
        ]
    }
    web = _web.WebRequest(scope)
    assert web.session_id == "s-2" and web.request_id == "r"
    assert web.distinct_id() is None
