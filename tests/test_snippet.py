"""`obs.browser_snippet`: what it writes into a page, for which user, and that nothing can break out of it.

The page is parsed back the way a browser would: the JSON argument of the script is read out and decoded,
so these tests check the values that reach posthog-js, not substrings of the HTML.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

import pytest

import obs
from obs import _snippet, _web

SCOPE_HOST = [(b"host", b"app.example.com:8443")]


def scope(user: Any = None, **state: Any) -> dict[str, Any]:
    s: dict[str, Any] = {"type": "http", "headers": list(SCOPE_HOST), "state": dict(state)}
    if user is not None:
        s["state"]["user"] = user
    return s


def parsed(html: str) -> dict[str, Any]:
    """The object the snippet hands to its script, decoded as JavaScript would read it."""
    assert html.startswith("<script data-obs-snippet") and html.endswith("</script>")
    assert html.count("</script") == 1  # nothing inside closes the tag early
    data = html.split("})(window, document, ", 1)[1].rsplit(");\n</script>", 1)[0]
    return json.loads(data)  # type: ignore[no-any-return]


def on(**overrides: Any) -> None:
    obs.init(api_key="phc_snippet", sinks=["memory"], **overrides)


def test_off_is_empty() -> None:
    assert obs.browser_snippet(scope({"id": "u1"})) == ""


def test_defaults() -> None:
    on(environment="prod", release="v9")
    data = parsed(obs.browser_snippet(scope()))
    assert data["key"] == "phc_snippet"
    assert data["src"] == "https://eu-assets.i.posthog.com/static/array.js"
    c = data["config"]
    assert c["api_host"] == "https://eu.i.posthog.com"
    assert c["defaults"] == _snippet.DEFAULTS
    assert c["person_profiles"] == "identified_only"
    assert c["capture_pageleave"] is True and c["capture_pageview"] == "history_change"
    assert c["capture_exceptions"] == {"capture_unhandled_errors": True, "capture_unhandled_rejections": True}
    assert c["disable_session_recording"] is False
    assert c["session_recording"] == {
        "maskAllInputs": True,
        "maskTextSelector": ".data-cell, .query-result, .sql-output, pre, code, [data-sensitive]",
    }
    assert c["tracing_headers"] == ["app.example.com"]
    assert "bootstrap" not in c and "asset_host" not in c
    assert data["register"] == {"environment": "prod", "release": "v9"}
    assert data["identify"] is None
    assert data["unregister"] == ["user_id", "user_email", "user_name"]  # no stale user after a logout


def test_us_host_assets_and_script_url_override() -> None:
    on(host="https://us.i.posthog.com")
    assert parsed(obs.browser_snippet())["src"] == "https://us-assets.i.posthog.com/static/array.js"
    obs.shutdown()
    on(script_url="https://cdn.example.com/ph/static/array.full.js")
    data = parsed(obs.browser_snippet())
    assert data["src"] == "https://cdn.example.com/ph/static/array.full.js"
    assert data["config"]["asset_host"] == "https://cdn.example.com/ph"  # extensions from the same place


def test_a_bad_script_url_is_a_config_error() -> None:
    refused = "script_url='javascript:alert(1)': must be an http(s) URL or a path starting with /"
    with pytest.raises(obs.ConfigError, match=re.escape(refused)):
        on(script_url="javascript:alert(1)")


def test_replay_off_and_extra_mask_selector() -> None:
    on(replay=False, replay_mask_selector=".card-number, #ssn")
    c = parsed(obs.browser_snippet())["config"]
    assert c["disable_session_recording"] is True
    assert c["session_recording"]["maskTextSelector"].endswith("[data-sensitive], .card-number, #ssn")


USER = {"id": "u-7", "email": "ada@example.com", "name": "Ada"}


@pytest.mark.parametrize(
    ("mode", "register", "person"),
    [
        ("none", {}, None),
        ("id", {"user_id": "u-7"}, {}),
        ("email", {"user_id": "u-7", "user_email": "ada@example.com"}, {"email": "ada@example.com"}),
        (
            "full",
            {"user_id": "u-7", "user_email": "ada@example.com", "user_name": "Ada"},
            {"email": "ada@example.com", "name": "Ada"},
        ),
    ],
)
def test_identify_modes(mode: str, register: dict[str, str], person: dict[str, str] | None) -> None:
    on(identify_pii=mode, environment="e")
    data = parsed(obs.browser_snippet(scope(USER)))
    assert data["register"] == {"environment": "e", **register}
    if person is None:
        assert data["identify"] is None and "bootstrap" not in data["config"]
        assert "u-7" not in json.dumps(data)
    else:
        assert data["identify"] == ["u-7", person]
        assert data["config"]["bootstrap"] == {"distinctID": "u-7", "isIdentifiedID": True}


def test_user_as_an_object_and_from_a_jwt() -> None:
    on()

    class Account:
        id = 42
        email = "obj@example.com"
        name = None

    assert parsed(obs.browser_snippet(scope(Account())))["identify"] == ["42", {"email": "obj@example.com"}]
    import base64

    claims = base64.urlsafe_b64encode(b'{"sub":"jwt-user"}').decode().rstrip("=")
    s = {"type": "http", "headers": [(b"authorization", f"Bearer aaa.{claims}.sig".encode())]}
    assert parsed(obs.browser_snippet(s))["identify"] == ["jwt-user", {}]


def test_bootstrap_carries_the_flags_seen_for_this_user_only() -> None:
    on()
    from obs._flags import _seen

    with obs.context(distinct_id="u-7"):
        _seen.remember("u-7", "new-nav", True)
        _seen.remember("u-7", "pricing", "test")
        data = parsed(obs.browser_snippet(scope(USER)))
        assert data["config"]["bootstrap"]["featureFlags"] == {"new-nav": True, "pricing": "test"}
        other = parsed(obs.browser_snippet(scope({"id": "someone-else"})))
        assert "featureFlags" not in other["config"]["bootstrap"]


HOSTILE = [
    "</script><script>alert(1)</script>",
    "<!--<script>",
    "\"'`${x}\\",
    "line\u2028sep\u2029para",
    "&lt;encoded&gt;",
    "]]></script>",
    "\U0001f600 ünïcode",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_stay_values(value: str) -> None:
    on(identify_pii="full", environment=value)
    html = str(obs.browser_snippet(scope({"id": value, "email": value, "name": value}), nonce='a"b<c>'))
    head, _, rest = html.partition(">")
    assert head == '<script data-obs-snippet nonce="a&quot;b&lt;c&gt;"'  # the attribute cannot be left
    data_text = rest.split("})(window, document, ", 1)[1]
    assert not {"<", ">", "&"} & set(data_text[: data_text.rindex(");")])  # no tag, comment or CDATA
    assert "\u2028" not in html and "\u2029" not in html
    data = parsed(html)
    assert data["register"]["environment"] == value
    assert data["identify"] == [value, {"email": value, "name": value}]
    assert data["nonce"] == 'a"b<c>'


def test_only_the_project_key_reaches_the_page() -> None:
    on(personal_api_key="phx_secret_personal_key")
    html = str(obs.browser_snippet())
    assert "phc_snippet" in html and "phx_secret_personal_key" not in html


def test_nonce_from_request_state_and_resolver() -> None:
    on()
    assert parsed(obs.browser_snippet(scope(csp_nonce="from-state")))["nonce"] == "from-state"
    web = _web.WebRequest(scope(), nonce_resolver=lambda s: "from-resolver")
    token = _web.current.set(web)
    try:
        html = str(obs.browser_snippet())
    finally:
        _web.current.reset(token)
    assert ' nonce="from-resolver"' in html and parsed(html)["nonce"] == "from-resolver"


def test_markup_so_jinja_does_not_escape_it_again() -> None:
    import jinja2
    from markupsafe import Markup

    from obs.integrations import jinja as obs_jinja

    on()
    assert isinstance(obs.browser_snippet(), Markup)
    env = obs_jinja.install(jinja2.Environment(autoescape=True))
    page = env.from_string("<head>{{ browser_snippet() }}</head>").render()
    assert page.startswith("<head><script data-obs-snippet>") and "&lt;" not in page


def test_never_raises() -> None:
    on()

    class Broken:
        @property
        def id(self) -> str:
            raise RuntimeError("boom")

    assert obs.browser_snippet(scope(Broken())) == ""


def test_import_obs_and_the_snippet_do_not_import_web_frameworks() -> None:
    code = (
        "import sys, obs; obs.browser_snippet; import obs.integrations.asgi;"
        "print([m for m in sys.modules if m.split('.')[0] in ('fastapi', 'starlette', 'jinja2', 'pydantic')])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
