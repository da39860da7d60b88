"""The browser snippet in a real browser: Debian's Chromium driven by Playwright loads pages of an
instrumented FastAPI app (real uvicorn); the snippet loads the real posthog-js (npm package, served locally by
`tests/posthog_js_server.py`, which also receives and decodes what posthog-js sends).

Nothing here is skipped: without Chromium, Playwright or posthog-js the tests fail and say what to install
(`.ci/run` installs all three).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

import obs
from obs.integrations.fastapi import instrument
from tests.browser import launch_chromium
from tests.integrations.web_apps import ALICE, HOSTILE
from tests.posthog_js_server import DIST, PostHogJSServer
from tests.uvicorn_server import UvicornServer

USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # posthog-js drops events from browsers it takes for bots (a HeadlessChrome user agent, webdriver). The
    # agent is the browser's own, not only Playwright's per-page override: a page being unloaded (where
    # $pageleave is captured) sees the browser's.
    "--disable-blink-features=AutomationControlled",
    f"--user-agent={USER_AGENT}",
]
USERS = {"alice": ALICE, "mallory": HOSTILE}
NONCE = "n0nce-Rand0m+/="

PAGE = """<!doctype html>
<html><head><title>obs browser test</title></head>
<body>
  <h1>Visible heading text</h1>
  <div class="sql-output">SELECT secret_sql_value FROM vault</div>
  <pre>pre-formatted-secret</pre>
  <p data-sensitive>sensitive-paragraph-secret</p>
  <form onsubmit="return false">
    <input id="password" type="password">
    <input id="comment" type="text">
  </form>
  <button id="throw" onclick="setTimeout(function () { throw new Error('browser boom'); })">throw</button>
  <button id="reject" onclick="Promise.reject(new Error('rejected boom'))">reject</button>
  <a id="next" href="/next">next</a>
</body></html>"""


def create_browser_app() -> FastAPI:
    app = FastAPI()

    @app.get("/", response_class=HTMLResponse)
    async def home(request: Request) -> str:
        await obs.afeature_enabled("new-nav")  # evaluated for this user: bootstrapped into the page
        return PAGE

    @app.get("/next", response_class=HTMLResponse)
    async def next_page() -> str:
        return "<html><head><title>next</title></head><body><p>next page</p></body></html>"

    @app.get("/api/echo")
    async def echo() -> dict[str, str]:
        obs.capture("backend_event")  # joins the browser's session through its tracing headers
        return {"ok": "yes"}

    @app.get("/csp", response_class=HTMLResponse)
    async def csp(request: Request) -> HTMLResponse:
        request.state.csp_nonce = NONCE
        page = "<html><head><title>csp</title></head><body><h1>strict page</h1></body></html>"
        policy = f"script-src 'nonce-{NONCE}'; object-src 'none'; base-uri 'none'"
        return HTMLResponse(page, headers={"Content-Security-Policy": policy})

    def user(request: Request) -> Any:
        return USERS.get(request.cookies.get("test_user", ""))

    return instrument(app, user_resolver=user)


# ---------------------------------------------------------------- module fixtures: one browser, one app


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if not (DIST / "array.js").is_file():
        pytest.fail(f"posthog-js is missing ({DIST}): run `npm install` in tests/web; .ci/run does")
    with launch_chromium(ARGS) as browser:
        yield browser


@pytest.fixture(scope="module")
def phjs() -> Iterator[PostHogJSServer]:
    with PostHogJSServer(flags={"new-nav": True}) as srv:
        srv.url = srv.url.replace("127.0.0.1", "localhost")
        yield srv


@pytest.fixture(scope="module")
def site() -> Iterator[UvicornServer]:
    with UvicornServer(create_browser_app()) as srv:
        yield srv


def start_obs(phjs: PostHogJSServer, **overrides: Any) -> None:
    obs.init(
        api_key="phc_browser",
        host=phjs.url,
        script_url=f"{phjs.url}/static/array.js",
        environment="browser-test",
        release="1.2.3",
        flush_interval=0.05,
        **overrides,
    )


def wait_for(
    what: str, check: Callable[[], Any], timeout: float = 20.0, seen: Callable[[], Any] | None = None
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}" + (f"; received: {seen()}" if seen else ""))
        time.sleep(0.1)


def visit(chromium: Any, site: UvicornServer, user: str | None) -> Any:
    context = chromium.new_context(user_agent=USER_AGENT)
    if user:
        context.add_cookies([{"name": "test_user", "value": user, "url": site.url}])
    return context, context.new_page()


def from_page(events: list[dict[str, Any]], path: str) -> list[dict[str, Any]]:
    return [e for e in events if str(e["properties"].get("$current_url", "")).split("?")[0].endswith(path)]


# ---------------------------------------------------------------- one visit, observed from every side


@pytest.fixture(scope="module")
def alice_visit(chromium: Any, phjs: PostHogJSServer, site: UvicornServer) -> dict[str, Any]:
    """Alice opens `/`, types secrets, throws, rejects a promise, calls the API, then follows a link."""
    start_obs(phjs)
    context, page = visit(chromium, site, "alice")
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(site.url + "/")
    page.wait_for_function("() => window.posthog && window.posthog.__loaded === true")
    page.wait_for_function("() => window.posthog.sessionRecordingStarted()", timeout=15000)
    # Exception autocapture is a lazily loaded extension: on a busy machine it can arrive after the clicks
    # below. Wait until it has wrapped window.onerror and onunhandledrejection.
    page.wait_for_function(
        "() => [window.onerror, window.onunhandledrejection].every(f => f && f.__POSTHOG_INSTRUMENTED__)",
        timeout=15000,
    )
    html = page.content()
    seen = page.evaluate(
        "() => [posthog.get_distinct_id(), posthog.get_session_id(), posthog.isFeatureEnabled('new-nav')]"
    )
    page.fill("#password", "hunter2-typed-secret")
    page.fill("#comment", "typed-visible-secret")
    page.click("#throw")
    page.click("#reject")
    page.evaluate("() => fetch('/api/echo').then(r => r.json())")
    # Received while the page is still open (posthog-js sends its queue every few seconds), so they do not
    # depend on the beacon a navigation sends as the page unloads.
    wait_for(
        "both $exception events",
        lambda: len(phjs.events("$exception")) >= 2,
        seen=lambda: ([e.get("event") for e in phjs.events()], phjs.errors, errors),
    )
    time.sleep(2.5)  # posthog-js sends replay data every 2 s
    page.click("#next")
    page.wait_for_url(site.url + "/next")
    page.wait_for_function("() => window.posthog && window.posthog.__loaded === true")
    wait_for("$pageleave", lambda: phjs.events("$pageleave"))
    wait_for("replay snapshots", lambda: "Visible heading text" in phjs.snapshot_text())
    obs.flush(5)
    context.close()
    return {"html": html, "seen": seen, "errors": errors}


def test_pageview_carries_environment_release_and_the_user(
    alice_visit: dict[str, Any], phjs: PostHogJSServer, site: UvicornServer
) -> None:
    (view,) = from_page(phjs.events("$pageview"), "/")
    p = view["properties"]
    assert p["distinct_id"] == "u-alice"
    assert p["environment"] == "browser-test"
    assert p["release"] == "1.2.3"
    assert p["user_id"] == "u-alice"
    assert p["user_email"] == "alice@example.com"
    assert "user_name" not in p  # POSTHOG_IDENTIFY_PII=email (the default)
    assert p["$current_url"] == site.url + "/"
    assert alice_visit["seen"][0] == "u-alice"  # bootstrapped with the server's distinct id
    assert phjs.errors == []


def test_identify_sets_the_person_properties(alice_visit: dict[str, Any], phjs: PostHogJSServer) -> None:
    sets = [
        e
        for e in phjs.events()
        if e["event"] in ("$identify", "$set") and e["properties"].get("distinct_id") == "u-alice"
    ]
    assert any((e["properties"].get("$set") or {}).get("email") == "alice@example.com" for e in sets), sets


def test_flags_already_evaluated_are_bootstrapped(alice_visit: dict[str, Any]) -> None:
    assert '"featureFlags":{"new-nav":true}' in alice_visit["html"]
    assert alice_visit["seen"][2] is True


def test_thrown_error_and_unhandled_rejection_become_exceptions(
    alice_visit: dict[str, Any], phjs: PostHogJSServer
) -> None:
    values = {
        entry.get("value") for e in phjs.events("$exception") for entry in e["properties"]["$exception_list"]
    }
    assert any("browser boom" in str(v) for v in values), values
    assert any("rejected boom" in str(v) for v in values), values


def test_pageleave_on_navigation(alice_visit: dict[str, Any], phjs: PostHogJSServer) -> None:
    leaves = phjs.events("$pageleave")
    assert from_page(leaves, "/"), [e["properties"].get("$current_url") for e in leaves]


def test_replay_masks_inputs_and_sensitive_text(alice_visit: dict[str, Any], phjs: PostHogJSServer) -> None:
    text = phjs.snapshot_text()
    assert "Visible heading text" in text  # the recording is there and decoded
    for secret in (
        "secret_sql_value",
        "pre-formatted-secret",
        "sensitive-paragraph-secret",
        "hunter2-typed-secret",
        "typed-visible-secret",
    ):
        assert secret not in text, secret


def test_backend_events_join_the_browser_session(alice_visit: dict[str, Any], phjs: PostHogJSServer) -> None:
    distinct_id, session_id, _ = alice_visit["seen"]
    (event,) = wait_for("backend_event", lambda: phjs.events("backend_event"))
    assert event["properties"]["$session_id"] == session_id
    assert event["distinct_id"] == distinct_id == "u-alice"


def test_only_the_project_key_reaches_the_page(alice_visit: dict[str, Any]) -> None:
    html = alice_visit["html"]
    assert "phc_browser" in html
    assert "phx_" not in html and "personal_api_key" not in html


# ---------------------------------------------------------------- hostile values, CSP, identify modes


def test_a_hostile_email_cannot_run_script(chromium: Any, phjs: PostHogJSServer, site: UvicornServer) -> None:
    start_obs(phjs, identify_pii="full")
    context, page = visit(chromium, site, "mallory")
    page.goto(site.url + "/next")
    page.wait_for_function("() => window.posthog && window.posthog.__loaded === true")
    assert page.evaluate("() => typeof window.__pwned") == "undefined"
    assert page.evaluate("() => document.querySelectorAll('script[data-obs-snippet]').length") == 1
    assert page.evaluate("() => document.querySelectorAll('img').length") == 0
    view = wait_for(
        "Mallory's pageview",
        lambda: [e for e in phjs.events("$pageview") if e["properties"].get("user_id") == "u-mallory"],
    )[0]
    assert view["properties"]["user_email"] == HOSTILE["email"]  # exactly the value, not broken out of
    assert view["properties"]["user_name"] == HOSTILE["name"]
    context.close()


def test_csp_nonce_lets_posthog_js_and_its_extensions_load(
    chromium: Any, phjs: PostHogJSServer, site: UvicornServer
) -> None:
    start_obs(phjs)
    context, page = visit(chromium, site, "alice")
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    page.goto(site.url + "/csp")
    page.wait_for_function("() => window.posthog && window.posthog.__loaded === true")
    page.wait_for_function("() => window.posthog.sessionRecordingStarted()", timeout=15000)  # lazy-loaded
    assert page.evaluate("() => document.querySelector('script[data-obs-snippet]').nonce") == NONCE
    wait_for("the /csp pageview", lambda: from_page(phjs.events("$pageview"), "/csp"))
    assert violations == []
    context.close()


def test_identify_mode_none_puts_no_user_in_the_page(
    chromium: Any, phjs: PostHogJSServer, site: UvicornServer
) -> None:
    start_obs(phjs, identify_pii="none")
    html = httpx.get(site.url + "/next", cookies={"test_user": "alice"}).text
    assert "u-alice" not in html and "alice@example.com" not in html
    data = json.loads(html.split("})(window, document, ")[1].split(");\n</script>")[0])
    assert data["identify"] is None and "bootstrap" not in data["config"]
    assert data["register"] == {"environment": "browser-test", "release": "1.2.3"}
