"""Server-side flags in Jinja templates: `obs.integrations.jinja.install(env)`, against the flags server."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import jinja2

import obs
from obs.integrations import jinja as obs_jinja
from tests.flags_server import FlagsServer

TEMPLATE = (
    "{% if feature_enabled('new-nav') %}new nav{% else %}old nav{% endif %}"
    " | {{ feature_flag('pricing', default='control') }}"
    " | {{ feature_flag_payload('banner', default={}).get('text', '-') }}"
)


def _server(srv: FlagsServer) -> None:
    srv.flags = {"new-nav": True, "pricing": "test", "banner": True}
    srv.payloads = {"banner": {"text": "Hello"}}


def test_sync_environment(flags_server: FlagsServer) -> None:
    _server(flags_server)
    obs.init(api_key="phc_test", host=flags_server.url, sinks=["memory"])
    env = obs_jinja.install(jinja2.Environment(autoescape=True))
    template = env.from_string(TEMPLATE)
    with obs.context(distinct_id="u1"):
        assert template.render() == "new nav | test | Hello"
    assert template.render() == "old nav | control | -"  # no user: the defaults
    assert [r.body["distinct_id"] for r in flags_server.flag_requests] == ["u1"] * 3


def test_async_environment_awaits_the_async_versions(flags_server: FlagsServer) -> None:
    _server(flags_server)
    obs.init(api_key="phc_test", host=flags_server.url, sinks=["memory"])
    env = obs_jinja.install(jinja2.Environment(enable_async=True, autoescape=True))
    assert env.globals["feature_enabled"] is obs.afeature_enabled

    async def render() -> str:
        async with obs.context(distinct_id="u2"):
            return await env.from_string(TEMPLATE).render_async()

    assert asyncio.run(render()) == "new nav | test | Hello"


def test_disabled_renders_the_defaults_without_requests(flags_server: FlagsServer) -> None:
    _server(flags_server)
    obs.init(host=flags_server.url)  # no key
    env = obs_jinja.install(jinja2.Environment(autoescape=True))
    with obs.context(distinct_id="u1"):
        assert env.from_string(TEMPLATE).render() == "old nav | control | -"
    assert flags_server.received == []


def test_importing_the_integration_does_not_import_jinja2() -> None:
    code = "import sys, obs.integrations.jinja\nassert 'jinja2' not in sys.modules\nprint('ok')\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
