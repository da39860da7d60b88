"""`obs.integrations.fastapi.instrument`: a real uvicorn serving a FastAPI app, httpx as the browser, and the
capture server receiving what obs sends (reached as `localhost`)."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import obs
from tests.capture_server import CaptureServer
from tests.integrations.web_apps import ALICE, create_app
from tests.uvicorn_server import UvicornServer

ROOT = Path(__file__).resolve().parents[2]


def local(server: CaptureServer) -> str:
    return server.url.replace("127.0.0.1", "localhost")


def start_obs(server: CaptureServer, **overrides: Any) -> None:
    obs.init(api_key="phc_web", host=local(server), flush_interval=0.05, **overrides)


def events(server: CaptureServer, name: str, n: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The `name` events received, waiting until there are `n` of them."""
    deadline = time.monotonic() + timeout
    while True:
        obs.flush(5)
        found = [e for e in server.events("/batch/") if e["event"] == name]
        if len(found) >= n or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


@pytest.fixture
def serve(server: CaptureServer) -> Iterator[Any]:
    started: list[UvicornServer] = []

    def serve(**options: Any) -> UvicornServer:
        srv = UvicornServer(create_app(**options)).__enter__()
        started.append(srv)
        return srv

    yield serve
    for srv in started:
        srv.__exit__(None, None, None)


# ---------------------------------------------------------------- unhandled errors


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("none", {}),
        ("id", {"user_id": "u-alice"}),
        ("email", {"user_id": "u-alice", "user_email": "alice@example.com"}),
        ("full", {"user_id": "u-alice", "user_email": "alice@example.com", "user_name": "Alice Liddell"}),
    ],
)
def test_500_is_captured_once_with_the_request_and_the_user(
    server: CaptureServer, serve: Any, mode: str, expected: dict[str, str]
) -> None:
    start_obs(server, identify_pii=mode)
    app = serve()
    r = httpx.get(
        f"{app.url}/boom/7?token=secret-in-query",
        headers={"X-Test-User": "alice", "User-Agent": "test-agent/1", "X-Request-ID": "req-123"},
    )
    assert r.status_code == 500
    assert r.text == "Internal Server Error"  # the app's usual 500
    (event,) = events(server, "$exception")
    p = event["properties"]
    assert event["distinct_id"] == "u-alice"  # set by the app's dependency, after the request started
    assert p["$exception_list"][0]["type"] == "ValueError"
    assert p["$exception_list"][0]["value"] == "boom 7"
    assert p["$exception_list"][0]["mechanism"]["handled"] is False
    assert p["$request_method"] == "GET"
    assert p["$request_path"] == "/boom/7"
    assert p["$request_route"] == "/boom/{item_id}"
    assert p["$current_url"] == f"{app.url}/boom/7"  # no query string
    assert p["$response_status_code"] == 500
    assert p["$request_id"] == "req-123"
    assert p["$user_agent"] == "test-agent/1"
    assert {k: v for k, v in p.items() if k.startswith("user_")} == expected
    time.sleep(0.3)
    assert len(events(server, "$exception")) == 1  # once, although the exception passed several handlers


def test_anonymous_500_uses_posthog_js_tracing_headers(server: CaptureServer, serve: Any) -> None:
    start_obs(server)
    app = serve()
    r = httpx.get(
        f"{app.url}/sync-boom",
        headers={
            "X-POSTHOG-DISTINCT-ID": "browser-\tanon",
            "X-POSTHOG-SESSION-ID": b"sess-1\x85" + b"x" * 3000,
        },
    )
    assert r.status_code == 500
    (event,) = events(server, "$exception")
    p = event["properties"]
    assert event["distinct_id"] == "browser-anon"  # control characters stripped
    assert p["$session_id"] == ("sess-1" + "x" * 3000)[:1000]  # capped as posthog-python does
    assert not any(k.startswith("user_") for k in p)
    assert p["$exception_list"][0]["type"] == "KeyError"


def test_anonymous_without_headers_is_personless(server: CaptureServer, serve: Any) -> None:
    start_obs(server)
    app = serve()
    assert httpx.get(f"{app.url}/boom/1").status_code == 500
    (event,) = events(server, "$exception")
    assert event["properties"]["$process_person_profile"] is False


def test_every_event_in_the_request_carries_its_context(server: CaptureServer, serve: Any) -> None:
    start_obs(server)
    app = serve(user_resolver=lambda request: ALICE if request.headers.get("x-login") else None)
    r = httpx.get(f"{app.url}/track", headers={"X-Login": "1", "X-POSTHOG-SESSION-ID": "s-9"})
    assert r.status_code == 200
    (event,) = events(server, "thing_done")
    p = event["properties"]
    assert event["distinct_id"] == "u-alice"
    assert p["$session_id"] == "s-9"
    assert p["$request_route"] == "/track"
    assert p["$request_path"] == "/track"
    assert p["user_email"] == "alice@example.com"
    assert p["n"] == 1


def test_async_user_resolver(server: CaptureServer, serve: Any) -> None:
    async def resolve(request: Any) -> Any:
        return {"id": "u-async", "email": "async@example.com"}

    start_obs(server)
    app = serve(user_resolver=resolve)
    httpx.get(f"{app.url}/track")
    (event,) = events(server, "thing_done")
    assert event["distinct_id"] == "u-async"


def test_a_failing_user_resolver_leaves_the_request_anonymous(server: CaptureServer, serve: Any) -> None:
    def resolve(request: Any) -> Any:
        raise RuntimeError("auth backend down")

    start_obs(server)
    app = serve(user_resolver=resolve)
    assert httpx.get(f"{app.url}/track").status_code == 200  # never raised into the app
    (event,) = events(server, "thing_done")
    assert event["properties"]["$process_person_profile"] is False
    assert obs.get_client().stats()["integration_errors"] == 1


def _jwt(claims: dict[str, Any]) -> str:
    def part(d: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


def test_bearer_jwt_sub_is_the_user_and_the_token_goes_nowhere(server: CaptureServer, serve: Any) -> None:
    start_obs(server)
    app = serve()
    token = _jwt({"sub": "user-from-jwt", "email": "jwt@example.com"})
    assert httpx.get(f"{app.url}/boom/2", headers={"Authorization": f"Bearer {token}"}).status_code == 500
    (event,) = events(server, "$exception")
    assert event["distinct_id"] == "user-from-jwt"
    assert event["properties"]["user_id"] == "user-from-jwt"
    raw = b"".join(r.raw for r in server.received)
    assert token.encode() not in raw and b"Bearer" not in raw and b"authorization" not in raw.lower()


def test_a_bearer_token_that_is_not_a_jwt_is_anonymous(server: CaptureServer, serve: Any) -> None:
    start_obs(server)
    app = serve()
    httpx.get(f"{app.url}/track", headers={"Authorization": "Bearer opaque-token"})
    (event,) = events(server, "thing_done")
    assert event["properties"]["$process_person_profile"] is False


# ---------------------------------------------------------------- HTTPException


def test_http_exception_under_500_is_not_an_error(server: CaptureServer, serve: Any) -> None:
    start_obs(server)
    app = serve()
    assert httpx.get(f"{app.url}/missing-item").status_code == 404
    assert httpx.get(f"{app.url}/http/404").status_code == 404
    assert httpx.get(f"{app.url}/no-such-route").status_code == 404
    assert httpx.get(f"{app.url}/boom/not-an-int").status_code == 422
    assert httpx.get(f"{app.url}/track").status_code == 200
    events(server, "thing_done")  # delivered after everything above
    assert [e for e in server.events("/batch/") if e["event"] == "$exception"] == []


def test_http_exception_503_is_an_error(server: CaptureServer, serve: Any) -> None:
    start_obs(server)
    app = serve()
    r = httpx.get(f"{app.url}/http/503", headers={"X-Test-User": "alice"})
    assert r.status_code == 503
    assert r.json() == {"detail": "status 503"}  # FastAPI's own handler still answered
    (event,) = events(server, "$exception")
    p = event["properties"]
    assert p["$exception_list"][0]["type"] == "HTTPException"
    assert p["$response_status_code"] == 503
    assert p["$request_route"] == "/http/{code}"


def test_the_apps_own_500_handler_still_runs(server: CaptureServer) -> None:
    from fastapi import Request
    from fastapi.responses import JSONResponse

    start_obs(server)
    app = create_app()

    @app.exception_handler(ValueError)  # registered after instrument()
    async def on_value_error(request: Request, exc: ValueError) -> JSONResponse:
        return JSONResponse({"sorry": str(exc)}, status_code=500)

    with UvicornServer(app) as srv:
        r = httpx.get(f"{srv.url}/boom/3")
        assert r.status_code == 500 and r.json() == {"sorry": "boom 3"}
        (event,) = events(server, "$exception")
        assert event["properties"]["$exception_list"][0]["value"] == "boom 3"


# ---------------------------------------------------------------- streaming and background tasks


def test_error_while_streaming_a_body_is_captured(server: CaptureServer, serve: Any) -> None:
    start_obs(server)
    app = serve()
    with pytest.raises(httpx.HTTPError):  # the response had started: the connection is cut short
        httpx.get(f"{app.url}/stream", headers={"X-Test-User": "alice", "X-POSTHOG-SESSION-ID": "s-st"})
    (event,) = events(server, "$exception")
    p = event["properties"]
    assert p["$exception_list"][0]["value"] == "broke mid-stream"
    assert event["distinct_id"] == "u-alice"
    assert p["$session_id"] == "s-st"
    assert p["$request_route"] == "/stream"
    assert p["$response_status_code"] == 200  # what the client had already been told


def test_error_in_a_background_task_is_captured_and_the_task_ran(server: CaptureServer) -> None:
    start_obs(server)
    app = create_app()
    with UvicornServer(app) as srv:
        r = httpx.get(f"{srv.url}/background", headers={"X-Test-User": "alice"})
        assert r.status_code == 200 and r.json() == {"queued": "yes"}
        (event,) = events(server, "$exception")
    assert app.state.ran == ["task"]
    p = event["properties"]
    assert p["$exception_list"][0]["type"] == "ZeroDivisionError"
    assert event["distinct_id"] == "u-alice"
    assert p["$request_path"] == "/background"


# ---------------------------------------------------------------- debug route


def test_debug_route_with_debug_1(server: CaptureServer, serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEBUG", "1")
    start_obs(server)
    app = serve(user_resolver=lambda request: ALICE)
    r = httpx.get(f"{app.url}/api/debug/throw", params={"kind": "TimeoutError", "msg": "debug <b>boom</b>"})
    assert r.status_code == 500
    (event,) = events(server, "$exception")
    entry = event["properties"]["$exception_list"][0]
    assert (entry["type"], entry["value"]) == ("TimeoutError", "debug <b>boom</b>")
    assert event["distinct_id"] == "u-alice"  # the user was resolved first
    assert event["properties"]["$request_path"] == "/api/debug/throw"


def test_debug_route_unknown_kind_is_400(server: CaptureServer, serve: Any) -> None:
    start_obs(server)
    app = serve(debug_route=True)
    for kind in ("SystemExit", "os.system", "KeyboardInterrupt", "BaseException", "__import__"):
        r = httpx.get(f"{app.url}/api/debug/throw", params={"kind": kind})
        assert r.status_code == 400, kind
        assert "ValueError" in r.text
    assert httpx.get(f"{app.url}/track").status_code == 200
    events(server, "thing_done")
    assert [e for e in server.events("/batch/") if e["event"] == "$exception"] == []


def test_debug_route_is_404_without_debug(
    server: CaptureServer, serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DEBUG", raising=False)
    start_obs(server)
    assert httpx.get(f"{serve().url}/api/debug/throw?kind=ValueError").status_code == 404
    monkeypatch.setenv("DEBUG", "1")
    assert httpx.get(f"{serve(debug_route=False).url}/api/debug/throw?kind=ValueError").status_code == 404


# ---------------------------------------------------------------- SDK off, lifespan


def test_sdk_off_changes_nothing(server: CaptureServer, serve: Any) -> None:
    obs.init(host=local(server))  # no key
    app = serve(debug_route=True)
    assert httpx.get(f"{app.url}/boom/1").status_code == 500
    page = httpx.get(f"{app.url}/page")
    assert "posthog" not in page.text
    assert httpx.get(f"{app.url}/api/debug/throw").status_code == 404
    assert server.received == []


def test_lifespan_flushes_when_uvicorn_gets_sigterm(server: CaptureServer) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("POSTHOG_", "OBS_"))},
        "POSTHOG_API_KEY": "phc_sigterm",
        "POSTHOG_HOST": local(server),
        "POSTHOG_DEBUG": "1",
        "OBS_FLUSH_INTERVAL": "60",  # nothing is sent on its own while the app runs
        "OBS_FLUSH_AT": "1000",
    }
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "tests.integrations.web_apps:app", "--host", "127.0.0.1",
         "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                r = httpx.get(f"http://localhost:{port}/capture")
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail(f"uvicorn did not start: {proc.stdout.read() if proc.stdout else ''}")
                time.sleep(0.1)
        assert r.status_code == 200
        time.sleep(0.3)
        assert server.received == []  # held by the 60 s flush interval
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode in (0, -signal.SIGTERM), out  # uvicorn re-raises the signal once it is done
    names = [e["event"] for e in server.events()]
    assert "before_sigterm" in names and "app_stopping" in names, out
    # Flushed by the lifespan, after the app's own shutdown code and before uvicorn reported it done.
    flushed = out.index("app shutdown: events flushed (all)")
    assert flushed < out.index("Application shutdown complete"), out


def test_the_example_app_works_as_documented(server: CaptureServer) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("fastapi_example", ROOT / "examples" / "fastapi_app.py")
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    start_obs(server)
    with UvicornServer(example.app) as srv:
        page = httpx.get(srv.url + "/", cookies={"session": "demo-token"})
        assert page.status_code == 200 and page.text.count("data-obs-snippet") == 1
        assert httpx.get(srv.url + "/orders/3", cookies={"session": "demo-token"}).status_code == 500
        (error,) = events(server, "$exception")
    assert error["distinct_id"] == "user-42"
    assert error["properties"]["$request_route"] == "/orders/{order_id}"
    (viewed,) = events(server, "dashboard_viewed")
    assert viewed["distinct_id"] == "user-42" and viewed["properties"]["user_email"] == "ada@example.com"
