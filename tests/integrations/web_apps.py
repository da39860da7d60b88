"""FastAPI apps the web tests serve with a real uvicorn (also ``uvicorn tests.integrations.web_apps:app``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import BackgroundTasks, Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, StreamingResponse

import obs
from obs.integrations.fastapi import instrument

ALICE = {"id": "u-alice", "email": "alice@example.com", "name": "Alice Liddell"}
HOSTILE = {
    "id": "u-mallory",
    "email": "m</script><script>window.__pwned=1</script><!--@x.io",
    "name": "Mal\u2028lory \"'</SCRIPT><img src=x onerror=window.__pwned=2>",
}
USERS = {"alice": ALICE, "mallory": HOSTILE}


def current_user(request: Request) -> dict[str, Any] | None:
    """The app's login, as a dependency: `X-Test-User: alice` logs Alice in for this request."""
    user = USERS.get(request.headers.get("x-test-user", ""))
    if user is not None:
        request.state.user = user
    return user


LoggedIn = Annotated[Any, Depends(current_user)]


def create_app(**instrument_options: Any) -> FastAPI:
    ran: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        obs.capture("app_stopping", distinct_id="lifespan")  # the app's own shutdown code still reports

    app = FastAPI(lifespan=lifespan)
    app.state.ran = ran

    @app.get("/boom/{item_id}")
    async def boom(item_id: int, user: LoggedIn) -> None:
        raise ValueError(f"boom {item_id}")

    @app.get("/sync-boom")
    def sync_boom(user: LoggedIn) -> None:
        raise KeyError("sync")

    @app.get("/http/{code}")
    async def http_error(code: int) -> None:
        raise HTTPException(status_code=code, detail=f"status {code}")

    @app.get("/missing-item")
    async def missing() -> None:
        raise HTTPException(status_code=404)

    @app.get("/track")
    async def track(user: LoggedIn) -> dict[str, str]:
        obs.capture("thing_done", {"n": 1})
        return {"ok": "yes"}

    @app.get("/stream")
    async def stream(user: LoggedIn) -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            yield b"first chunk\n"
            await asyncio.sleep(0.01)
            raise RuntimeError("broke mid-stream")

        return StreamingResponse(body(), media_type="text/plain")

    @app.get("/background")
    async def background(tasks: BackgroundTasks, user: LoggedIn) -> dict[str, str]:
        def task() -> None:
            ran.append("task")
            raise ZeroDivisionError("in the background")

        tasks.add_task(task)
        return {"queued": "yes"}

    @app.get("/page", response_class=HTMLResponse)
    async def page(user: LoggedIn) -> str:
        return "<!doctype html><html><head><title>t</title></head><body><h1>Hello</h1></body></html>"

    @app.get("/standalone", response_class=HTMLResponse)
    async def standalone() -> str:
        return "<h1>No head, no body tags</h1><p>standalone fragment</p>"

    @app.get("/json")
    async def json_() -> JSONResponse:
        return JSONResponse({"html": "</head>"})

    @app.get("/text")
    async def text() -> PlainTextResponse:
        return PlainTextResponse("<html><head></head></html>")

    return instrument(app, **instrument_options)


# What `uvicorn tests.integrations.web_apps:app` serves (the SIGTERM test), configured from the environment.
app = create_app()


@app.get("/capture")
async def capture_one() -> dict[str, Any]:
    obs.capture("before_sigterm", {"k": json.dumps([1])}, distinct_id="u-sig")
    return {"ok": True}
