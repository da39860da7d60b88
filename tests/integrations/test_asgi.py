"""`obs.integrations.asgi.ObsMiddleware` around plain ASGI apps served by a real uvicorn: the snippet in HTML
responses (and nowhere else), streaming, caps, compression, and what must pass through untouched."""

from __future__ import annotations

import asyncio
import gzip
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
from starlette.middleware.gzip import GZipMiddleware

import obs
from obs.integrations.asgi import ObsMiddleware
from tests.capture_server import CaptureServer
from tests.uvicorn_server import UvicornServer

MARK = b"data-obs-snippet"
Scope = dict[str, Any]
ASGI = Callable[[Scope, Any, Any], Awaitable[None]]


def html_app(body: bytes, content_type: bytes = b"text/html; charset=utf-8", **headers: bytes) -> ASGI:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return
        extra = [(k.replace("_", "-").encode(), v) for k, v in headers.items()]
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", content_type),
                    (b"content-length", str(len(body)).encode()),
                    *extra,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


@pytest.fixture
def on(server: CaptureServer) -> None:
    obs.init(api_key="phc_asgi", host=server.url.replace("127.0.0.1", "localhost"), flush_interval=0.05)


@pytest.fixture
def get() -> Iterator[Callable[..., httpx.Response]]:
    servers: list[UvicornServer] = []

    def get(app: ASGI, path: str = "/", method: str = "GET", **kw: Any) -> httpx.Response:
        srv = UvicornServer(app).__enter__()
        servers.append(srv)
        return httpx.request(method, srv.url + path, **kw)

    yield get
    for srv in servers:
        srv.__exit__(None, None, None)


def checked(r: httpx.Response) -> bytes:
    """The body, after checking that Content-Length (when sent) matches it."""
    if "content-length" in r.headers:
        assert int(r.headers["content-length"]) == len(r.content)
    return r.content


# ---------------------------------------------------------------- where the snippet goes


@pytest.mark.usefixtures("on")
def test_before_head_end(get: Any) -> None:
    page = b"<!doctype html><html><HEAD><title>x</title></HEAD ><body><p>hi</p></body></html>"
    body = checked(get(ObsMiddleware(html_app(page))))
    assert body.count(MARK) == 1
    head_end = body.index(b"</HEAD >")
    assert body.index(MARK) < head_end
    assert body.startswith(b"<!doctype html><html><HEAD><title>x</title><script data-obs-snippet")
    assert body.endswith(b"</script></HEAD ><body><p>hi</p></body></html>")
    assert b"phc_asgi" in body


@pytest.mark.usefixtures("on")
def test_before_body_end_without_head(get: Any) -> None:
    page = b"<html><body><p>no head</p></body></html>"
    body = checked(get(ObsMiddleware(html_app(page))))
    assert body.startswith(b"<html><body><p>no head</p><script data-obs-snippet")
    assert body.endswith(b"</script></body></html>")


@pytest.mark.usefixtures("on")
def test_at_the_end_of_a_standalone_fragment(get: Any) -> None:
    page = b"<h1>standalone</h1>"
    body = checked(get(ObsMiddleware(html_app(page))))
    assert body.startswith(page + b"<script data-obs-snippet")
    assert body.endswith(b"</script>")


@pytest.mark.usefixtures("on")
def test_fastapi_pages_get_it_and_other_types_do_not(server: CaptureServer) -> None:
    from tests.integrations.web_apps import create_app

    with UvicornServer(create_app()) as srv:
        page = httpx.get(srv.url + "/page", headers={"X-Test-User": "alice"})
        assert checked(page).count(MARK) == 1
        assert b'"distinctID":"u-alice"' in page.content  # the user the dependency set, for the browser
        assert checked(httpx.get(srv.url + "/standalone")).count(MARK) == 1
        assert httpx.get(srv.url + "/json").json() == {"html": "</head>"}
        assert httpx.get(srv.url + "/text").text == "<html><head></head></html>"


@pytest.mark.usefixtures("on")
@pytest.mark.parametrize("ctype", [b"application/json", b"text/plain", b"application/xhtml+xml", b"text/htm"])
def test_never_into_non_html(get: Any, ctype: bytes) -> None:
    page = b"<html><head></head><body></body></html>"
    assert get(ObsMiddleware(html_app(page, ctype))).content == page


@pytest.mark.usefixtures("on")
def test_head_requests_are_untouched(get: Any) -> None:
    page = b"<html><head></head><body></body></html>"
    r = get(ObsMiddleware(html_app(page)), method="HEAD")
    assert r.headers["content-length"] == str(len(page))


# ---------------------------------------------------------------- never twice


@pytest.mark.usefixtures("on")
def test_never_twice_when_the_page_already_has_it(get: Any) -> None:
    page = b"<html><head><script data-obs-snippet>/* placed by the template */</script></head></html>"
    assert get(ObsMiddleware(html_app(page))).content == page


@pytest.mark.usefixtures("on")
def test_never_twice_with_the_jinja_global_anywhere_in_the_page(get: Any) -> None:
    import jinja2

    from obs.integrations import jinja as obs_jinja

    env = obs_jinja.install(jinja2.Environment(autoescape=True))
    template = env.from_string(
        "<html><head><title>j</title></head><body>{{ browser_snippet() }}</body></html>"
    )

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return
        body = template.render().encode()  # inside the request, like a view rendering its template
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/html")]}
        )
        await send({"type": "http.response.body", "body": body})

    body = get(ObsMiddleware(app)).content
    assert body.count(MARK) == 1
    assert body.index(MARK) > body.index(b"<body>")  # where the template put it


@pytest.mark.usefixtures("on")
def test_two_middlewares_inject_once(get: Any) -> None:
    page = b"<html><head></head><body></body></html>"
    assert checked(get(ObsMiddleware(ObsMiddleware(html_app(page))))).count(MARK) == 1


def test_never_when_the_sdk_is_off(get: Any) -> None:
    obs.init()  # no key
    page = b"<html><head></head><body></body></html>"
    r = get(ObsMiddleware(html_app(page)))
    assert r.content == page and r.headers["content-length"] == str(len(page))


# ---------------------------------------------------------------- compression


@pytest.mark.usefixtures("on")
def test_compressed_html_passes_untouched_with_one_debug_line(
    get: Any, caplog: pytest.LogCaptureFixture
) -> None:
    page = b"<html><head><title>zip</title></head><body>" + b"<p>x</p>" * 200 + b"</body></html>"
    caplog.set_level("DEBUG", logger="obs")
    app = ObsMiddleware(GZipMiddleware(html_app(page), minimum_size=10))  # obs outside GZip: too late
    r = get(app, headers={"Accept-Encoding": "gzip"})
    assert r.headers["content-encoding"] == "gzip"
    assert r.content == page  # httpx decoded it: exactly the app's page
    assert [m for m in caplog.messages if "GZipMiddleware" in m] != []


@pytest.mark.usefixtures("on")
def test_inside_gzip_the_snippet_is_compressed_with_the_page(get: Any) -> None:
    page = b"<html><head><title>zip</title></head><body>" + b"<p>x</p>" * 200 + b"</body></html>"
    app = GZipMiddleware(ObsMiddleware(html_app(page)), minimum_size=10)  # the documented order
    r = get(app, headers={"Accept-Encoding": "gzip"})
    assert r.headers["content-encoding"] == "gzip"
    assert r.content.count(MARK) == 1


# ---------------------------------------------------------------- streaming and the cap


def streaming_app(
    chunks: list[bytes], gate: threading.Event | None = None, report: list[str] | None = None
) -> ASGI:
    """Sends `chunks`; before the last one it waits (≤5 s) until the client has read the head."""

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/html")]}
        )
        for i, chunk in enumerate(chunks):
            if gate is not None and report is not None and i == len(chunks) - 1:
                seen = await asyncio.to_thread(gate.wait, 5)
                report.append("client saw the head first" if seen else "client waited for everything")
            await send({"type": "http.response.body", "body": chunk, "more_body": i < len(chunks) - 1})

    return app


@pytest.mark.usefixtures("on")
def test_streaming_html_is_held_only_until_head_end() -> None:
    gate, report = threading.Event(), []
    chunks = [b"<html><head><title>s</title>", b"</head><body><p>1</p>", b"<p>2</p></body></html>"]
    with UvicornServer(ObsMiddleware(streaming_app(chunks, gate, report))) as srv:
        with httpx.stream("GET", srv.url) as r:
            received = b""
            for part in r.iter_raw():
                received += part
                if b"</head>" in received:
                    gate.set()
        assert report == ["client saw the head first"]
    assert received.count(MARK) == 1
    assert received.index(MARK) < received.index(b"</head>")
    assert received.endswith(b"<p>2</p></body></html>")


@pytest.mark.usefixtures("on")
def test_streaming_html_without_head_gets_it_at_body_end(get: Any) -> None:
    chunks = [b"<html><body>", b"<p>1</p>", b"</body></html>"]
    body = get(ObsMiddleware(streaming_app(chunks))).content
    assert body.startswith(b"<html><body><p>1</p><script data-obs-snippet")
    assert body.endswith(b"</script></body></html>")


def test_bodies_over_the_cap_pass_untouched_with_a_warning(
    server: CaptureServer, get: Any, caplog: pytest.LogCaptureFixture
) -> None:
    obs.init(api_key="phc_asgi", host=server.url, inject_max_bytes=1024)
    big = b"<html><head><title>big</title></head><body>" + b"x" * 5000 + b"</body></html>"
    r = get(ObsMiddleware(html_app(big)))
    assert r.content == big and r.headers["content-length"] == str(len(big))
    streamed = [b"<html><body>", b"y" * 3000, b"<p>after the cap</p></body></html>"]
    assert get(ObsMiddleware(streaming_app(streamed))).content == b"".join(streamed)
    assert any("OBS_INJECT_MAX_BYTES" in m for m in caplog.messages)


# ---------------------------------------------------------------- passing through untouched


@pytest.mark.usefixtures("on")
def test_trailers_and_background_work_after_the_body_pass_through() -> None:
    sent: list[dict[str, Any]] = []
    after: list[str] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/html")],
                "trailers": True,
            }
        )
        await send({"type": "http.response.body", "body": b"<html><head></head></html>"})
        await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc")]})
        after.append("background work ran")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "query_string": b""}
    asyncio.run(ObsMiddleware(app)(scope, receive, send))
    assert [m["type"] for m in sent] == [
        "http.response.start",
        "http.response.body",
        "http.response.trailers",
    ]
    assert sent[0]["trailers"] is True
    assert sent[2] == {"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc")]}
    assert after == ["background work ran"]


@pytest.mark.usefixtures("on")
def test_websockets_pass_through_with_the_request_context() -> None:
    import websockets.sync.client

    seen: list[Any] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return
        from obs._context import current

        seen.append(current.get())
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        message = await receive()
        await send({"type": "websocket.send", "text": "echo " + message["text"]})
        await send({"type": "websocket.close"})

    with (
        UvicornServer(ObsMiddleware(app)) as srv,
        websockets.sync.client.connect(
            srv.url.replace("http", "ws") + "/ws", additional_headers={"X-POSTHOG-SESSION-ID": "ws-s"}
        ) as ws,
    ):
        ws.send("<html><head></head>")
        assert ws.recv() == "echo <html><head></head>"
    (frame,) = seen
    assert frame.session_id == "ws-s" and frame.properties["$request_path"] == "/ws"


@pytest.mark.usefixtures("on")
def test_lifespan_passes_through_to_the_app() -> None:
    phases: list[str] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        while True:
            message = await receive()
            phases.append(message["type"])
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return

    with UvicornServer(ObsMiddleware(app)):
        assert obs.get_client().enabled
    assert phases == ["lifespan.startup", "lifespan.shutdown"]
    assert obs.capture("after") is None  # shut down with the app


@pytest.mark.usefixtures("on")
def test_gzip_response_of_a_real_gzip_body_is_valid(get: Any) -> None:
    """An app that compresses itself: obs passes the bytes through exactly."""
    page = b"<html><head></head><body>self-compressed</body></html>"
    packed = gzip.compress(page)
    r = get(ObsMiddleware(html_app(packed, content_encoding=b"gzip")))
    assert r.content == page


def test_a_client_that_went_away_is_not_an_error(server: CaptureServer) -> None:
    obs.init(api_key="phc_asgi", host=server.url.replace("127.0.0.1", "localhost"), flush_interval=0.05)
    failed: list[str] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return
        if scope["path"] == "/fine":
            obs.capture("fine")
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        while (await receive())["type"] != "http.disconnect":
            pass
        failed.append("gone")
        raise OSError("the client went away")  # what writing to a closed connection ends in

    with UvicornServer(ObsMiddleware(app)) as srv:
        with httpx.stream("GET", srv.url + "/slow") as r:
            assert next(r.iter_raw()) == b"first"  # then the client hangs up
        deadline = time.monotonic() + 5
        while not failed and time.monotonic() < deadline:
            time.sleep(0.02)
        assert failed == ["gone"]
        assert httpx.get(srv.url + "/fine").status_code == 204
        obs.flush(5)
    names = [e["event"] for e in server.events("/batch/")]
    assert names == ["fine"]
