"""A FastAPI app with obs: errors with their user, request context, and posthog-js in every page.

    pip install 'obs[fastapi]' uvicorn
    POSTHOG_API_KEY=phc_… DEBUG=1 uvicorn examples.fastapi_app:app

Then open http://localhost:8000/ (pageviews, replay with the SQL result masked, a button that throws in
the browser) and http://localhost:8000/api/debug/throw?kind=ValueError&msg=hello (a server error with the
user, captured and flushed). See docs/web.md.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse

import obs
from obs.integrations.fastapi import instrument

USERS = {"demo-token": {"id": "user-42", "email": "ada@example.com", "name": "Ada Lovelace"}}


async def current_user(request: Request) -> dict[str, Any] | None:
    """Your login: here a cookie; obs reads whatever this puts on request.state.user."""
    user = USERS.get(request.cookies.get("session", ""))
    request.state.user = user
    return user


User = Annotated[dict[str, Any] | None, Depends(current_user)]
app = instrument(FastAPI(), user_resolver=current_user)


@app.get("/", response_class=HTMLResponse)
async def home(user: User) -> str:
    beta = await obs.afeature_enabled("beta-dashboard")  # bootstrapped into posthog-js: no flicker
    obs.capture("dashboard_viewed", {"beta": beta})  # carries the user, the URL and the browser's session
    return f"""<!doctype html>
<html><head><title>obs demo</title></head>
<body>
  <h1>Hello {"Ada" if user else "stranger"}</h1>
  <div class="sql-output">SELECT * FROM payroll  -- masked in replays</div>
  <input type="password" placeholder="masked in replays too">
  <button onclick="throw new Error('a browser error')">throw in the browser</button>
  <button onclick="document.cookie='session=demo-token'; location.reload()">log in</button>
</body></html>"""


@app.get("/orders/{order_id}")
async def order(order_id: int, user: User) -> dict[str, int]:
    return {"total": 100 // (order_id - order_id)}  # ZeroDivisionError: a 500, captured with the user
