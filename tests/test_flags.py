"""Feature flags against a real local flags server: remote and local evaluation, the cache, failures,
`$feature_flag_called`, flags on errors and `@track`, and the off switch."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import posthog
import pytest

import obs
import obs.testing
from obs import _log
from obs._client import Client
from obs.sinks import MemorySink
from tests.capture_server import Reply, refused_url
from tests.flags_server import EVALUATED_AT, PERSONAL_KEY, SHAPES, FlagsServer, flag, flag_id
from tests.runners import RUNNERS

Memory = tuple[Client, MemorySink]


@pytest.fixture(autouse=True)
def _fresh_warnings() -> Iterator[None]:
    """warn_every remembers causes process-wide; each test starts with none logged (conftest resets the
    flags remembered outside any obs.context)."""
    _log._last.clear()
    yield
    _log._last.clear()


@pytest.fixture
def remote(flags_server: FlagsServer) -> Iterator[tuple[FlagsServer, MemorySink]]:
    """obs enabled against the flags server (remote evaluation only), events into memory."""
    flags_server.flags = {"on": True, "off": False, "pricing": "test"}
    flags_server.payloads = {"pricing": {"price": 9}, "on": [1, 2]}
    sink = MemorySink()
    obs.init(api_key="phc_test", host=flags_server.url, sinks=[sink])
    yield flags_server, sink


def _events(sink: MemorySink, name: str) -> list[dict[str, Any]]:
    assert obs.flush(5)
    return sink.named(name)


def _flag_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("obs-flags")]


# ---------------------------------------------------------------- off by default, no surprise requests


def test_disabled_returns_defaults_without_any_request(
    flags_server: FlagsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    flags_server.flags = {"on": True}
    monkeypatch.setenv("POSTHOG_HOST", flags_server.url)  # a host, but no key
    assert obs.init().flags is None
    assert obs.get_feature_flag("on", "u") is None
    assert obs.get_feature_flag("on", "u", default="control") == "control"
    assert obs.feature_enabled("on", "u") is False
    assert obs.feature_enabled("on", "u", default=True) is True
    assert obs.get_feature_flag_payload("on", "u", default={"x": 1}) == {"x": 1}

    async def main() -> tuple[Any, ...]:
        return (
            await obs.aget_feature_flag("on", "u", default="d"),
            await obs.afeature_enabled("on", "u"),
            await obs.aget_feature_flag_payload("on", "u"),
        )

    assert asyncio.run(main()) == ("d", False, None)
    assert not flags_server.wait_for_requests(1, timeout=0.3)
    assert flags_server.received == [] and _flag_threads() == []
    # The same calls with a key do reach this server: the silence above is the SDK being off.
    obs.init(api_key="phc_test", sinks=["memory"])
    assert obs.get_feature_flag("on", "u") is True
    assert len(flags_server.flag_requests) == 1


def test_disabled_flag_calls_import_nothing_heavy() -> None:
    code = (
        "import sys, threading, asyncio, obs\n"
        "assert obs.get_feature_flag('f', 'u', default='d') == 'd'\n"
        "assert obs.feature_enabled('f', 'u') is False\n"
        "assert asyncio.run(obs.afeature_enabled('f', 'u', default=True)) is True\n"
        "gated = obs.feature_gate('f', fallback='off')(lambda: 'on')\n"
        "snapshot = obs.evaluate_flags('u')\n"
        "assert snapshot.get_flag('f', default='d') == 'd' and snapshot.keys == []\n"
        "assert asyncio.run(obs.aevaluate_flags('u')).is_enabled('f', True) is True\n"
        "assert obs.capture('e', distinct_id='u', flags=snapshot) is None\n"
        "assert gated() == 'off'\n"
        "assert threading.active_count() == 1, threading.enumerate()\n"
        "heavy = [m for m in ('httpx', 'anyio', 'pydantic', 'posthog', 'jinja2') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "print('ok')\n"
    )
    env = {"PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_no_request_on_init_or_ordinary_captures(flags_server: FlagsServer) -> None:
    flags_server.definitions = {"flags": [flag("f")], "group_type_mapping": {}, "cohorts": {}}
    obs.init(api_key="phc_test", host=flags_server.url, sinks=["memory"], personal_api_key=PERSONAL_KEY)
    obs.capture("signed_up", {"plan": "pro"}, distinct_id="u")
    obs.identify("u", {"email": "a@b.c"})
    try:
        raise ValueError("boom")
    except ValueError:
        obs.capture_exception(distinct_id="u")
    assert obs.flush(5)
    assert not flags_server.wait_for_requests(1, timeout=0.3)
    assert flags_server.received == [] and _flag_threads() == []


# ---------------------------------------------------------------- remote evaluation


def test_request_body_is_the_one_posthog_python_sends(remote: tuple[FlagsServer, MemorySink]) -> None:
    srv, _ = remote
    kwargs: dict[str, Any] = {
        "groups": {"company": "acme"},
        "person_properties": {"plan": "pro", "age": 40},
        "group_properties": {"company": {"size": 50}, "other": {"ignored": True}},
    }
    ph = posthog.Client("phc_test", host=srv.url, send=False)
    for i, geoip in enumerate((None, False, True)):
        theirs_value = ph.get_feature_flag_result(
            "pricing", f"u{i}", send_feature_flag_events=False, disable_geoip=geoip, **kwargs
        )
        assert theirs_value is not None and theirs_value.get_value() == "test"
        assert obs.get_feature_flag("pricing", f"u{i}", disable_geoip=geoip, **kwargs) == "test"
        theirs, ours = srv.flag_requests[-2], srv.flag_requests[-1]
        assert "sent_at" in theirs.body and "sent_at" in ours.body
        assert _without(ours.body, "sent_at") == _without(theirs.body, "sent_at")
        assert ours.path == theirs.path == "/flags/?v=4"
    bodies = [r.body for r in srv.flag_requests[1::2]]
    # obs's default is OBS_DISABLE_GEOIP=1; posthog-python's client default (disable_geoip=True) agrees
    assert [b["geoip_disable"] for b in bodies] == [True, False, True]
    ours = srv.flag_requests[1]
    assert ours.body["api_key"] == "phc_test" and ours.body["flag_keys_to_evaluate"] == ["pricing"]
    assert ours.body["group_properties"] == {"company": {"$group_key": "acme", "size": 50}}
    assert ours.headers["content-type"] == "application/json"
    assert ours.headers["user-agent"].startswith("obs/")


def _without(d: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in keys}


@pytest.mark.parametrize("shape", SHAPES)
def test_values_variants_and_payloads(remote: tuple[FlagsServer, MemorySink], shape: str) -> None:
    srv, _ = remote
    srv.shape = shape
    assert obs.get_feature_flag("on", "u") is True
    assert obs.get_feature_flag("off", "u") is False
    assert obs.get_feature_flag("pricing", "u") == "test"
    assert obs.get_feature_flag("missing", "u") is None
    assert obs.get_feature_flag("missing", "u", default="control") == "control"
    assert obs.feature_enabled("pricing", "u") is True
    assert obs.feature_enabled("off", "u", default=True) is False  # a real False is not the default
    assert obs.feature_enabled("missing", "u", default=True) is True
    assert obs.get_feature_flag_payload("pricing", "u") == {"price": 9}
    assert obs.get_feature_flag_payload("on", "u") == [1, 2]
    assert obs.get_feature_flag_payload("off", "u", default="none") == "none"
    assert obs.get_client().stats()["flag_errors"] == 0


@pytest.fixture(params=list(RUNNERS))
def run(request: pytest.FixtureRequest) -> Callable[[Callable[[], Awaitable[Any]]], Any]:
    return RUNNERS[request.param]


def test_every_flag_function_on_asyncio_trio_and_anyio(
    remote: tuple[FlagsServer, MemorySink],
    run: Callable[[Callable[[], Awaitable[Any]]], Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    srv, sink = remote

    async def main() -> list[Any]:
        snapshot = await obs.aevaluate_flags("u-snap", disable_geoip=False)
        gated = obs.feature_gate("on", fallback="closed")(_async_open)
        return [
            await obs.aget_feature_flag("pricing", "u1"),
            await obs.afeature_enabled("on", "u2"),
            await obs.afeature_enabled("off", "u3", default=True),
            await obs.aget_feature_flag_payload("pricing", "u4"),
            await obs.aget_feature_flag("missing", "u5", default="d"),
            await obs.aget_feature_flag("pricing", "u6", disable_geoip=False),
            await gated(),
            obs.get_feature_flag("pricing", "u7"),  # the sync twins too: they block this loop, briefly
            obs.feature_enabled("on", "u8"),
            obs.evaluate_flags("u9").get_flag("pricing"),
            snapshot.get_flag("pricing"),
            snapshot.get_flag_payload("on"),
        ]

    with caplog.at_level(logging.WARNING, logger="obs"), obs.context(distinct_id="u-gate"):
        got = run(main)
    expected = ["test", True, False, {"price": 9}, "d", "test", "open", "test", True, "test", "test", [1, 2]]
    assert got == expected
    assert [r.getMessage() for r in caplog.records if r.name == "obs"] == []
    assert obs.get_client().stats()["flag_errors"] == 0
    assert len(srv.flag_requests) == 11  # every one asked the flags server: nothing was cached before
    called = _events(sink, "$feature_flag_called")
    assert {e["distinct_id"] for e in called} == {
        "u1",
        "u2",
        "u3",
        "u6",
        "u-gate",
        "u7",
        "u8",
        "u9",
        "u-snap",
    }  # fmt: skip: not u4 (a payload read) nor u5 (no such flag)


async def _async_open() -> str:
    return "open"


def test_async_evaluation_never_blocks_the_loop_and_can_be_cancelled(
    remote: tuple[FlagsServer, MemorySink], run: Callable[[Callable[[], Awaitable[Any]]], Any]
) -> None:
    srv, _ = remote
    release = threading.Event()

    def slow(body: dict[str, Any]) -> str:
        release.wait(10)
        return "test"

    srv.flags["slow"] = slow

    async def main() -> tuple[Any, ...]:
        ticks = 0
        with anyio.move_on_after(0.5) as scope:  # cancelled while waiting: gives up, nothing breaks
            async with anyio.create_task_group() as tg:

                async def ticker() -> None:
                    nonlocal ticks
                    while True:
                        await anyio.sleep(0.02)
                        ticks += 1

                tg.start_soon(ticker)
                await obs.aget_feature_flag("slow", "u")
        release.set()
        return scope.cancelled_caught, ticks, await obs.aget_feature_flag("slow", "u")

    cancelled, ticks, value = run(main)
    assert cancelled and value == "test"
    assert ticks >= 10  # the loop kept running while the answer was awaited
    assert len(srv.flag_requests) == 1  # the cancelled wait's request answered the later check


def test_cache_per_user_flag_and_properties(remote: tuple[FlagsServer, MemorySink]) -> None:
    srv, _ = remote
    for _ in range(5):
        assert obs.get_feature_flag("on", "u1") is True
        assert obs.get_feature_flag_payload("on", "u1") == [1, 2]  # the same evaluation
    assert len(srv.flag_requests) == 1
    obs.get_feature_flag("on", "u2")
    obs.get_feature_flag("off", "u1")
    obs.get_feature_flag("on", "u1", person_properties={"plan": "pro"})
    obs.get_feature_flag("on", "u1", person_properties={"plan": "pro"})
    obs.get_feature_flag("on", "u1", groups={"company": "acme"})
    assert len(srv.flag_requests) == 5
    assert obs.get_client().stats()["flag_requests"] == 5


def test_disable_geoip_per_call_on_every_flag_function(remote: tuple[FlagsServer, MemorySink]) -> None:
    """Each function sends the call's `geoip_disable` (default OBS_DISABLE_GEOIP, on), caches per
    value, and marks its `$feature_flag_called` with it as posthog-python does."""
    srv, sink = remote
    gate = obs.feature_gate("on", fallback="closed", distinct_id="gate", disable_geoip=False)
    agate = obs.feature_gate("on", fallback="closed", distinct_id="agate", disable_geoip=False)

    async def checks() -> list[Any]:
        return [
            await obs.aget_feature_flag("pricing", "a1", disable_geoip=False),
            await obs.afeature_enabled("on", "a2", disable_geoip=False),
            await obs.aget_feature_flag_payload("pricing", "a3", disable_geoip=False),
            (await obs.aevaluate_flags("a4", disable_geoip=False)).get_flag("on"),
            await agate(_async_open)(),
        ]

    got = [
        obs.get_feature_flag("pricing", "s1", disable_geoip=False),
        obs.feature_enabled("on", "s2", disable_geoip=False),
        obs.get_feature_flag_payload("pricing", "s3", disable_geoip=False),
        obs.evaluate_flags("s4", disable_geoip=False).get_flag("on"),
        gate(lambda: "open")(),
        *asyncio.run(checks()),
    ]
    assert got == ["test", True, {"price": 9}, True, "open"] * 2
    assert [r.body["geoip_disable"] for r in srv.flag_requests] == [False] * 10
    # The cache keeps answers per geoip choice: the default (on) is another request, then cached.
    assert obs.get_feature_flag("pricing", "s1", disable_geoip=False) == "test"
    assert len(srv.flag_requests) == 10
    assert obs.get_feature_flag("pricing", "s1") == "test"
    assert obs.get_feature_flag("pricing", "s1", disable_geoip=True) == "test"
    assert [r.body["geoip_disable"] for r in srv.flag_requests[10:]] == [True]
    called = {e["distinct_id"]: e["properties"] for e in _events(sink, "$feature_flag_called")}
    assert {did: p["$geoip_disable"] for did, p in called.items()} == {
        **dict.fromkeys(["s1", "s2", "s4", "gate", "a1", "a2", "a4", "agate"], False)
    }  # the call's choice over OBS_DISABLE_GEOIP's `$geoip_disable: true` on every event


def test_cache_ttl(flags_server: FlagsServer) -> None:
    flags_server.flags = {"on": True}
    obs.init(api_key="phc_test", host=flags_server.url, sinks=["memory"], flags_cache_ttl=0.3)
    obs.get_feature_flag("on", "u")
    obs.get_feature_flag("on", "u")
    assert len(flags_server.flag_requests) == 1
    flags_server.flags = {"on": False}  # changed in PostHog: seen once the cached answer expires
    assert obs.get_feature_flag("on", "u") is True
    time.sleep(0.35)
    assert obs.get_feature_flag("on", "u") is False
    assert len(flags_server.flag_requests) == 2
    obs.init(api_key="phc_test", host=flags_server.url, sinks=["memory"], flags_cache_ttl=0)
    for _ in range(3):
        obs.get_feature_flag("on", "u")
    assert len(flags_server.flag_requests) == 5  # no cache at all


def test_concurrent_misses_share_one_request(remote: tuple[FlagsServer, MemorySink]) -> None:
    srv, _ = remote

    def slow(body: dict[str, Any]) -> bool:
        time.sleep(0.3)
        return True

    srv.flags["slow"] = slow
    with ThreadPoolExecutor(16) as pool:
        values = list(pool.map(lambda _: obs.get_feature_flag("slow", "u"), range(16)))

    async def many() -> list[Any]:
        return list(await asyncio.gather(*(obs.aget_feature_flag("slow", "v") for _ in range(16))))

    assert values == [True] * 16
    assert asyncio.run(many()) == [True] * 16
    assert len(srv.flag_requests) == 2


def test_one_retry_on_502_and_504(remote: tuple[FlagsServer, MemorySink]) -> None:
    srv, _ = remote
    srv.script(502)
    assert obs.get_feature_flag("on", "a") is True
    assert [r.status for r in srv.flag_requests] == [502, 200]
    srv.script(504)
    assert obs.get_feature_flag("on", "b") is True
    srv.script(504, 502)  # a second failure is not retried again
    assert obs.get_feature_flag("on", "c", default="d") == "d"
    srv.script(500)  # neither is anything but 502/504
    assert obs.get_feature_flag("on", "e", default="d") == "d"
    assert [r.status for r in srv.flag_requests] == [502, 200, 504, 200, 504, 502, 500]
    srv.script(Reply(close=True))  # a dropped connection is retried too
    assert obs.get_feature_flag("on", "f") is True
    assert [r.status for r in srv.flag_requests[-2:]] == [0, 200]
    assert obs.get_client().stats()["flag_errors"] == 2


def test_a_refused_connection_is_not_retried(flags_server: FlagsServer) -> None:
    """posthog-python retries a dropped connection but not a refused one; so does obs (`_refused`)."""
    import httpx

    from obs._flags._remote import _refused

    with pytest.raises(httpx.ConnectError) as refused:
        httpx.post(refused_url() + "/flags/?v=4", content=b"{}")
    assert _refused(refused.value)
    flags_server.script(Reply(close=True))
    with pytest.raises(httpx.TransportError) as dropped:
        httpx.post(flags_server.url + "/flags/?v=4", content=b"{}")
    assert not _refused(dropped.value)

    async def refused_async() -> BaseException:
        async with httpx.AsyncClient() as http:
            try:
                await http.post(refused_url() + "/flags/?v=4", content=b"{}")
            except httpx.ConnectError as e:
                return e
        raise AssertionError("the connection was not refused")

    assert _refused(asyncio.run(refused_async()))  # through anyio's connect, as obs's flag thread does


def test_timeout_returns_the_default_without_waiting_for_the_answer(
    flags_server: FlagsServer, caplog: pytest.LogCaptureFixture
) -> None:
    flags_server.flags = {"on": True}
    obs.init(api_key="phc_test", host=flags_server.url, sinks=["memory"], flags_timeout=0.3)
    flags_server.script(*[Reply(delay=3)] * 4)
    with caplog.at_level(logging.WARNING, logger="obs"):
        t0 = time.monotonic()
        assert obs.get_feature_flag("on", "u", default="d") == "d"
        assert obs.feature_enabled("on", "v", default=True) is True
        elapsed = time.monotonic() - t0
    assert elapsed < 3  # neither waited for the server's late answer (two tries of 0.3 s each)
    assert flags_server.wait_for_requests(4)  # each check tried twice (noted as the late answers go)
    assert len(flags_server.flag_requests) == 4
    timeouts = [r for r in caplog.records if "within" in r.getMessage()]
    assert len(timeouts) == 1  # once per cause, not per call
    assert obs.get_client().stats()["flag_errors"] == 2
    assert obs.get_feature_flag("on", "u") is True  # failures are not cached


@pytest.mark.parametrize(
    ("reply", "cause"),
    [
        (Reply(status=500, body=b'{"detail":"x"}'), "HTTP 500"),
        (Reply(status=401, body=b'{"detail":"bad key"}'), "HTTP 401"),
        (Reply(body=b"<html>not json"), "unusable answer"),
        (Reply(body=b'{"quotaLimited": ["feature_flags"], "flags": {}}'), "quota limited"),
        (Reply(body=b'{"flags": {}, "errorsWhileComputingFlags": true}'), "errors while computing"),
        (
            Reply(body=b'{"flags": {"on": {"key": "on", "enabled": true, "failed": true}}}'),
            "failed to evaluate",
        ),
        (
            Reply(body=b'{"flags": {"on": {"key": "on", "value": true, "failed": true}}}'),
            "failed to evaluate",
        ),
        (Reply(body=b'{"flags": {"on": {"key": "on", "value": [1]}}}'), "malformed `value`"),
        (
            Reply(body=b'{"flags": {"on": {"key": "on", "value": true, "metadata": {"id": "x"}}}}'),
            "malformed `metadata.id`",
        ),
        (Reply(body=b'{"flags": {"on": {"key": "on", "enabled": "yes"}}}'), "malformed `enabled`"),
        (Reply(body=b'{"flags": []}'), "`flags` is not an object"),
        (Reply(body=b'{"featureFlags": {"on": 3}}'), "not a bool or a variant"),
        (Reply(body=b"[]"), "not a JSON object"),
        (Reply(close=True), "request to"),
    ],
)
def test_failures_return_the_default_logged_once(
    remote: tuple[FlagsServer, MemorySink], caplog: pytest.LogCaptureFixture, reply: Reply, cause: str
) -> None:
    srv, sink = remote
    srv.script(*[reply] * 6)  # enough for a retry of each check (a dropped connection is retried)
    with caplog.at_level(logging.WARNING, logger="obs"):
        assert obs.get_feature_flag("on", "u", default="d") == "d"
        assert obs.get_feature_flag("on", "u", default="d") == "d"
        assert asyncio.run(obs.afeature_enabled("on", "u", default=True)) is True
    logged = [r.getMessage() for r in caplog.records if r.name == "obs"]
    assert len(logged) == 1 and cause in logged[0] and "returning the default" in logged[0], logged
    assert obs.get_client().stats()["flag_errors"] == 3
    assert _events(sink, "$feature_flag_called") == []  # a failed evaluation is no exposure


def test_connection_refused_returns_the_default(caplog: pytest.LogCaptureFixture) -> None:
    obs.init(api_key="phc_test", host=refused_url(), sinks=["memory"])
    with caplog.at_level(logging.WARNING, logger="obs"):
        assert obs.get_feature_flag("on", "u", default="d") == "d"
        assert obs.feature_enabled("on", "u") is False
    assert len([r for r in caplog.records if "ConnectError" in r.getMessage()]) == 1


def test_sync_twins_inside_a_running_loop_and_from_threads(remote: tuple[FlagsServer, MemorySink]) -> None:
    async def main() -> list[Any]:
        inside = obs.get_feature_flag("pricing", "loop-user")  # blocks this loop, but cannot deadlock
        in_thread = await asyncio.to_thread(obs.get_feature_flag, "pricing", "thread-user")
        return [inside, in_thread]

    assert asyncio.run(main()) == ["test", "test"]
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(lambda i: obs.feature_enabled("on", f"t{i}"), range(24))) == [True] * 24


def test_distinct_id_comes_from_obs_context(
    remote: tuple[FlagsServer, MemorySink], caplog: pytest.LogCaptureFixture
) -> None:
    srv, _ = remote
    with obs.context(distinct_id="ctx-user"):
        assert obs.get_feature_flag("pricing") == "test"
    assert srv.flag_requests[-1].body["distinct_id"] == "ctx-user"
    with caplog.at_level(logging.WARNING, logger="obs"):
        assert obs.get_feature_flag("pricing", default="d") == "d"  # nobody to evaluate it for
        assert obs.feature_enabled("pricing") is False
    assert len(srv.flag_requests) == 1
    assert len([r for r in caplog.records if "no distinct_id" in r.getMessage()]) == 1


# ---------------------------------------------------------------- $feature_flag_called


def test_feature_flag_called_once_per_user_flag_value_and_groups(flags_server: FlagsServer) -> None:
    flags_server.flags = {"pricing": "test"}
    flags_server.payloads = {"pricing": {"price": 9}}
    sink = MemorySink()
    obs.init(api_key="phc_test", host=flags_server.url, sinks=[sink], flags_cache_ttl=0)
    for _ in range(5):  # five evaluations (no cache), one event
        obs.get_feature_flag("pricing", "u1")
    obs.get_feature_flag_payload("pricing", "u2")  # a payload read is not an exposure
    acme = {"company": "acme", "team": 7}
    obs.get_feature_flag("pricing", "u1", groups=acme)  # same user, flag and value, but for a group
    obs.get_feature_flag("pricing", "u1", groups={"team": "7", "company": "acme"})  # the same groups
    obs.get_feature_flag("pricing", "u1", groups={"company": "other"})
    obs.get_feature_flag("pricing", "u3", groups=acme)
    flags_server.flags = {"pricing": "control"}
    obs.get_feature_flag("pricing", "u1")
    obs.get_feature_flag("missing", "u1")  # nothing to report
    events = _events(sink, "$feature_flag_called")
    assert [
        (e["distinct_id"], e["properties"]["$feature_flag_response"], e["properties"].get("$groups"))
        for e in events
    ] == [
        ("u1", "test", None),
        ("u1", "test", {"company": "acme", "team": "7"}),
        ("u1", "test", {"company": "other"}),
        ("u3", "test", {"company": "acme", "team": "7"}),
        ("u1", "control", None),
    ]
    first = events[0]["properties"]
    assert first["$feature_flag"] == "pricing" and first["$feature/pricing"] == "test"
    assert first["locally_evaluated"] is False and first["$feature_flag_payload"] == {"price": 9}
    assert first["$feature_flag_request_id"] == "req-1" and first["$feature_flag_id"] == flag_id("pricing")
    assert first["$feature_flag_version"] == 3 and first["$feature_flag_reason"] == "Matched condition set 1"
    assert first["$feature_flag_evaluated_at"] == EVALUATED_AT


# Config version 2 records (v4 only): an experiment split, a targeting match, and a rule id that is not a
# UUID (so no rule is reported), as PostHog's /flags/?v=4 describes them.
RULE_A = "0191b1c2-3d4e-7f80-9a1b-2c3d4e5f6a7b"
RULE_B = "0191b1c2-3d4e-7f80-9a1b-2c3d4e5f6a7c"
EXPERIMENT_RECORDS: dict[str, dict[str, Any]] = {
    "pricing": {
        "reason": {"code": "experiment_split", "description": "Matched experiment"},
        "metadata": {
            "config_version": 2,
            "rule_type": "experiment",
            "rule_id": RULE_A,
            "variant_key": "test",
            "has_experiment": True,
        },
    },
    "on": {
        "reason": {"code": "targeting_match"},
        "metadata": {
            "config_version": 2,
            "rule_type": "percentage_rollout",
            "rule_id": RULE_B,
            "has_experiment": False,
        },
    },
    "off": {
        "reason": {"code": "rollout_miss"},
        "metadata": {"config_version": 2, "rule_type": "percentage_rollout", "rule_id": "not-a-uuid"},
    },
}
SCENARIOS: dict[str, dict[str, Any]] = {
    "plain": {},
    "experiments": {"records": EXPERIMENT_RECORDS},
    "errors-while-computing": {"extra": {"errorsWhileComputingFlags": True}},
}
# The reads both SDKs make, in order: (flag, distinct_id, groups).
READS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("pricing", "u1", None),
    ("pricing", "u1", None),
    ("pricing", "u1", {"company": "acme"}),
    ("pricing", "u1", {"company": "acme"}),
    ("pricing", "u1", {"company": "other"}),
    ("on", "u1", None),
    ("off", "u2", None),
    ("on", "u2", {"company": "acme", "team": "3"}),
    ("pricing", "u2", None),
    ("on", "u1", None),
]


def _posthog(srv: FlagsServer, **kwargs: Any) -> tuple[posthog.Client, list[dict[str, Any]]]:
    """posthog-python against the same server, keeping the events it would send."""
    sent: list[dict[str, Any]] = []

    def keep(msg: dict[str, Any]) -> dict[str, Any]:
        sent.append(msg)
        return msg

    return posthog.Client("phc_test", host=srv.url, send=False, before_send=keep, **kwargs), sent


def _flag_events(events: list[dict[str, Any]]) -> list[tuple[str, str, dict[str, Any]]]:
    """The flag events and their flag properties (what either SDK adds of its own left out; None values
    left out too: obs omits them)."""
    return [
        (
            e["event"],
            e["distinct_id"],
            {
                k: v
                for k, v in e["properties"].items()
                if k.startswith(("$feature", "$groups", "$active_feature_flags", "locally_evaluated"))
                and v is not None
            },
        )
        for e in events
        if e["event"] in ("$feature_flag_called", "$experiment_exposure", "page")
    ]


def _scenario(srv: FlagsServer, shape: str, scenario: str) -> None:
    srv.flags = {"on": True, "off": False, "pricing": "test"}
    srv.payloads = {"pricing": {"price": 9}, "on": [1, 2]}
    srv.shape = shape
    srv.records = SCENARIOS[scenario].get("records", {})
    srv.extra = SCENARIOS[scenario].get("extra", {})


@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize("shape", SHAPES)
def test_feature_flag_called_matches_posthog_python(
    flags_server: FlagsServer, shape: str, scenario: str
) -> None:
    _scenario(flags_server, shape, scenario)
    ph, theirs = _posthog(flags_server)
    sink = MemorySink()
    obs.init(api_key="phc_test", host=flags_server.url, sinks=[sink])
    for key, did, groups in READS:
        their_result = ph.get_feature_flag_result(key, did, groups=groups)
        assert their_result is not None
        assert obs.get_feature_flag(key, did, groups=groups) == their_result.get_value(), (key, did)
        assert obs.get_feature_flag_payload(key, did, groups=groups) == their_result.payload
    ph.shutdown()
    assert obs.flush(5)
    ours = _flag_events(sink.events)
    assert ours == _flag_events(theirs)
    if shape == "v4" and scenario == "experiments":  # what the comparison covered
        names = [name for name, _, _ in ours]
        assert names.count("$experiment_exposure") == 4  # per user, groups, rule and variant
        called = [props for name, _, props in ours if name == "$feature_flag_called"]
        assert called[0]["$feature_flag_rule_id"] == RULE_A and "$feature_flag_reason" not in called[0]
        assert called[0]["$feature_flag_has_experiment"] is True


def test_every_answer_shape_gives_the_same_values_and_events(flags_server: FlagsServer) -> None:
    """v4 and v2 answers bring the same events; the legacy answer the same values and payloads (it has
    no ids, versions, reasons or request id to report)."""
    seen: dict[str, tuple[list[Any], list[Any]]] = {}
    for shape in SHAPES:
        _scenario(flags_server, shape, "plain")
        sink = MemorySink()
        obs.init(api_key="phc_test", host=flags_server.url, sinks=[sink], flags_cache_ttl=0)
        values = []
        for key, did, groups in READS:
            values.append(obs.get_feature_flag(key, did, groups=groups))
            values.append(obs.get_feature_flag_payload(key, did, groups=groups))
        snapshot = obs.evaluate_flags("u3")
        values += [snapshot.get_flag(k) for k in ("on", "off", "pricing")]
        values += [snapshot.get_flag_payload(k) for k in ("on", "off", "pricing")]
        assert obs.flush(5)
        seen[shape] = values, _flag_events(sink.events)
        obs.shutdown()
    assert seen["v4"] == seen["v2"]
    assert seen["legacy"][0] == seen["v4"][0]
    assert [(n, d) for n, d, _ in seen["legacy"][1]] == [(n, d) for n, d, _ in seen["v4"][1]]


# ---------------------------------------------------------------- evaluate_flags: one snapshot per user


def _read_snapshot(snapshot: Any) -> list[Any]:
    """The same reads, in the same order, on posthog-python's snapshot or obs's."""
    return [
        snapshot.is_enabled("on"),
        snapshot.get_flag("pricing"),
        snapshot.get_flag("pricing"),
        snapshot.is_enabled("off", True),
        snapshot.get_flag("missing"),
        snapshot.is_enabled("missing"),
        snapshot.get_flag_payload("pricing"),
        snapshot.get_flag_payload("on"),
        snapshot.get_flag("on", send_feature_flag_events=False),
        sorted(snapshot.keys),
    ]


@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize("shape", SHAPES)
def test_evaluate_flags_matches_posthog_python(flags_server: FlagsServer, shape: str, scenario: str) -> None:
    _scenario(flags_server, shape, scenario)
    ph, theirs = _posthog(flags_server)
    sink = MemorySink()
    obs.init(api_key="phc_test", host=flags_server.url, sinks=[sink])
    groups = {"company": "acme"}
    their_snapshot = ph.evaluate_flags("u1", groups=groups)
    snapshot = obs.evaluate_flags("u1", groups=groups)
    theirs_request, ours_request = flags_server.flag_requests
    assert _without(ours_request.body, "sent_at") == _without(theirs_request.body, "sent_at")
    assert "flag_keys_to_evaluate" not in ours_request.body  # every flag, in one request
    assert _read_snapshot(snapshot) == _read_snapshot(their_snapshot)
    for snap, capture in ((their_snapshot, ph.capture), (snapshot, obs.capture)):
        capture("page", distinct_id="u1", properties={"$feature/on": "mine"}, flags=snap)
        capture("page", distinct_id="u1", flags=snap.only_accessed())
        capture("page", distinct_id="u1", flags=snap.only(["off", "pricing"]))
    ph.shutdown()
    assert obs.flush(5)
    ours = _flag_events(sink.events)
    assert ours == _flag_events(theirs)
    assert len(flags_server.flag_requests) == 2  # reads and captures asked nothing more
    pages = [props for name, _, props in ours if name == "page"]
    assert pages[0] == {
        "$feature/on": "mine",  # the event's own properties win
        "$feature/off": False,
        "$feature/pricing": "test",
        "$active_feature_flags": ["on", "pricing"],
    }
    missing = [p for n, _, p in ours if n == "$feature_flag_called" and p["$feature_flag"] == "missing"]
    assert missing and "flag_missing" in missing[0]["$feature_flag_error"]


def test_evaluate_flags_with_local_evaluation_matches_posthog_python(flags_server: FlagsServer) -> None:
    flags_server.definitions = {
        "flags": [
            flag("local-on", 100),
            flag("local-off", 0),
            {**flag("sticky", 100, ensure_experience_continuity=True), "has_experiment": False},
        ],
        "group_type_mapping": {},
        "cohorts": {},
    }
    flags_server.flags = {"sticky": "remote", "remote-only": True, "local-on": False}
    ph, theirs = _posthog(flags_server, secret_key=PERSONAL_KEY)
    ph.load_feature_flags()
    sink = MemorySink()
    obs.init(api_key="phc_test", host=flags_server.url, sinks=[sink], personal_api_key=PERSONAL_KEY)

    def reads(snapshot: Any) -> list[Any]:
        return [snapshot.get_flag(k) for k in ("local-on", "local-off", "sticky", "remote-only")]

    their_snapshot = ph.evaluate_flags("u1")
    snapshot = obs.evaluate_flags("u1")
    assert reads(snapshot) == reads(their_snapshot) == [True, False, "remote", True]
    # Local evaluation decided two, and `sticky` needs the server: one request for every flag (as
    # posthog-python asks), whose answers fill in what local evaluation did not decide (not `local-on`).
    theirs_request, ours_request = flags_server.flag_requests
    assert _without(ours_request.body, "sent_at") == _without(theirs_request.body, "sent_at")
    keys = obs.evaluate_flags("u2", flag_keys=["local-on", "remote-only"])
    assert [keys.get_flag("local-on"), keys.get_flag("remote-only")] == [True, True]
    assert flags_server.flag_requests[-1].body["flag_keys_to_evaluate"] == ["local-on", "remote-only"]
    assert obs.evaluate_flags("u3", flag_keys=["local-on"]).get_flag("local-on") is True
    assert len(flags_server.flag_requests) == 3  # all decided locally: no request
    ph.shutdown()
    assert obs.flush(5)
    called = [e for e in sink.events if e["distinct_id"] == "u1"]
    assert _flag_events(called) == _flag_events(theirs)
    local = next(e for e in called if e["properties"]["$feature_flag"] == "local-on")["properties"]
    assert local["locally_evaluated"] is True and local["$feature_flag_reason"] == "Evaluated locally"
    assert local["$feature_flag_id"] == flag_id("local-on") and local["$feature_flag_version"] == 1


def test_evaluate_flags_flag_keys_and_nothing_to_ask(remote: tuple[FlagsServer, MemorySink]) -> None:
    srv, _ = remote
    snapshot = obs.evaluate_flags("u1", flag_keys=["pricing", "missing"])
    assert srv.flag_requests[-1].body["flag_keys_to_evaluate"] == ["pricing", "missing"]
    assert snapshot.keys == ["pricing"] and "pricing" in snapshot and "on" not in snapshot
    assert snapshot.get_flag("on") is None  # not asked for
    empty = obs.evaluate_flags("u1", flag_keys=[])
    assert empty.keys == [] and empty.distinct_id == "u1"
    assert len(srv.flag_requests) == 1
    with obs.context(distinct_id="ctx-user"):
        assert obs.evaluate_flags().distinct_id == "ctx-user"
    assert srv.flag_requests[-1].body["distinct_id"] == "ctx-user"
    assert repr(snapshot) == "FeatureFlagEvaluations(distinct_id='u1', flags={'pricing': 'test'})"


def test_evaluate_flags_reads_are_remembered_for_errors_and_track(
    remote: tuple[FlagsServer, MemorySink],
) -> None:
    _, sink = remote
    with obs.context(distinct_id="u1"):
        snapshot = obs.evaluate_flags()
        assert snapshot.get_flag("pricing") == "test"
        obs.capture_exception(ValueError("boom"))
    (error,) = _events(sink, "$exception")
    assert error["properties"]["$feature/pricing"] == "test"
    assert "$feature/on" not in error["properties"]  # evaluated, but not read


def test_evaluate_flags_when_it_cannot_tell(
    flags_server: FlagsServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    flags_server.flags = {"on": True}
    monkeypatch.setenv("POSTHOG_HOST", flags_server.url)
    off = obs.evaluate_flags("u1")  # obs is off: nothing asked, nothing sent
    assert off.get_flag("on", default="d") == "d" and off.is_enabled("on", True) is True
    assert flags_server.received == []
    sink = MemorySink()
    obs.init(api_key="phc_test", sinks=[sink])
    with caplog.at_level(logging.WARNING, logger="obs"):
        nobody = obs.evaluate_flags()
        assert nobody.distinct_id == "" and nobody.get_flag("on") is None
        flags_server.script(
            Reply(status=500), Reply(body=b'{"quotaLimited": ["feature_flags"], "flags": {}}')
        )
        failed = obs.evaluate_flags("u1")
        quota = obs.evaluate_flags("u2")
        assert failed.get_flag("on", default="d") == "d" and quota.is_enabled("on") is False
    logged = [r.getMessage() for r in caplog.records if r.name == "obs"]
    assert any("evaluate_flags: no distinct_id" in m for m in logged)
    assert any("HTTP 500" in m for m in logged) and any("quota limited" in m for m in logged)
    assert obs.get_client().stats()["flag_errors"] == 2
    errors = {
        e["distinct_id"]: e["properties"]["$feature_flag_error"]
        for e in _events(sink, "$feature_flag_called")
    }
    assert errors == {"u1": "flag_missing", "u2": "quota_limited,flag_missing"}  # as posthog-python sends


def test_evaluate_flags_under_obs_testing(flags_server: FlagsServer) -> None:
    obs.init(api_key="phc_test", host=flags_server.url, sinks=["memory"])
    with obs.testing.capture_events(flags={"on": True, "pricing": "control"}) as captured:
        captured.flags.set("pricing", "test", payload={"price": 9}, distinct_id="vip")
        snapshot = obs.evaluate_flags("vip")
        assert (snapshot.get_flag("pricing"), snapshot.get_flag_payload("pricing")) == ("test", {"price": 9})
        assert sorted(snapshot.keys) == ["on", "pricing"]
        assert obs.evaluate_flags("other", flag_keys=["pricing"]).keys == ["pricing"]
        obs.capture("page", distinct_id="vip", flags=snapshot)
    assert flags_server.received == []
    captured.assert_captured("$feature_flag_called", "vip", **{"$feature_flag_response": "test"})
    captured.assert_captured("page", "vip", **{"$feature/pricing": "test", "$feature/on": True})


def test_feature_flag_called_dedup_is_bounded(
    flags_server: FlagsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from obs._flags import _events as flag_events

    monkeypatch.setattr(flag_events, "_MAX_REPORTED", 3)
    flags_server.flags = {"on": True}
    sink = MemorySink()
    obs.init(api_key="phc_test", host=flags_server.url, sinks=[sink], flags_cache_ttl=0)
    for i in range(6):
        obs.get_feature_flag("on", f"u{i}")
    flags = obs.get_client().flags
    assert flags is not None and len(flags._reported) == 3
    obs.get_feature_flag("on", "u0")  # forgotten, so reported again
    obs.get_feature_flag("on", "u5")  # still remembered
    assert [e["distinct_id"] for e in _events(sink, "$feature_flag_called")] == [
        f"u{i}" for i in range(6)
    ] + ["u0"]


# ---------------------------------------------------------------- flags on errors and @track


def test_errors_and_track_carry_the_flags_the_user_saw(remote: tuple[FlagsServer, MemorySink]) -> None:
    _, sink = remote

    @obs.capture_errors(reraise=False)
    def checkout() -> None:
        raise RuntimeError("payment failed")

    @obs.track("exported")
    def export() -> int:
        return 1

    with obs.context(distinct_id="u1"):
        export()  # before any flag: nothing to carry
        assert obs.feature_enabled("on") and obs.get_feature_flag("pricing") == "test"
        assert obs.get_feature_flag("off") is False
        checkout()
        export()
        try:
            raise KeyError("k")
        except KeyError as e:
            obs.capture_exception(e, distinct_id="someone-else")  # not their flags
        with obs.context(properties={"step": "pay"}):  # an inner level, same user: still theirs
            try:
                raise KeyError("inner")
            except KeyError as e:
                obs.capture_exception(e)
    try:
        raise KeyError("outside")
    except KeyError as e:
        obs.capture_exception(e, distinct_id="u1")  # the level they were evaluated in has ended
    assert obs.flush(5)
    seen = {"$feature/on": True, "$feature/pricing": "test", "$feature/off": False}
    before, after = _events(sink, "exported")
    assert not any(k.startswith("$feature") or k == "$active_feature_flags" for k in before["properties"])
    mine, other, inner, outside = _events(sink, "$exception")
    for props in (after["properties"], mine["properties"], inner["properties"]):
        assert {k: props[k] for k in seen} == seen
        assert props["$active_feature_flags"] == ["on", "pricing"]
    for props in (other["properties"], outside["properties"]):
        assert not any(k.startswith("$feature") or k == "$active_feature_flags" for k in props)


def test_flags_are_kept_per_context_and_per_user(remote: tuple[FlagsServer, MemorySink]) -> None:
    _, sink = remote

    async def request(user: str, key: str) -> None:
        async with obs.context(distinct_id=user):
            await obs.aget_feature_flag(key)
            await asyncio.sleep(0.01)
            obs.capture_exception(ValueError(user))

    async def main() -> None:
        await asyncio.gather(request("a", "on"), request("b", "pricing"))

    asyncio.run(main())
    with obs.context(distinct_id="c"):
        obs.get_feature_flag("on")
        with obs.context(distinct_id="d"):  # another user: a fresh record, c's flags never on d's events
            obs.get_feature_flag("pricing")
            obs.capture_exception(ValueError("d"))
    by_user = {e["distinct_id"]: e["properties"] for e in _events(sink, "$exception")}
    assert by_user["a"]["$active_feature_flags"] == ["on"] and "$feature/pricing" not in by_user["a"]
    assert by_user["b"]["$active_feature_flags"] == ["pricing"] and "$feature/on" not in by_user["b"]
    assert by_user["d"]["$active_feature_flags"] == ["pricing"] and "$feature/on" not in by_user["d"]


# ---------------------------------------------------------------- the personal key


def test_a_project_key_as_personal_key_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(obs.ConfigError) as e:
        obs.init(api_key="phc_test", personal_api_key="phc_secret_project_key", sinks=["memory"])
    assert "personal API key (phx_" in str(e.value) and "phc_secret_project_key" not in str(e.value)
    monkeypatch.setenv("POSTHOG_PERSONAL_API_KEY", "phc_from_env")
    with pytest.raises(obs.ConfigError, match="POSTHOG_PERSONAL_API_KEY"):
        obs.init(api_key="phc_test", sinks=["memory"])
    monkeypatch.setenv("POSTHOG_PERSONAL_API_KEY", " phs_secure ")
    settings = obs.init(api_key="phc_test", sinks=["memory"]).settings
    assert settings is not None and settings.personal_api_key is not None
    assert settings.personal_api_key.get_secret_value() == "phs_secure"
    assert "phs_secure" not in repr(settings) and "phs_secure" not in str(settings.model_dump())


def test_the_personal_key_goes_nowhere_but_the_definitions_request(
    flags_server: FlagsServer, caplog: pytest.LogCaptureFixture
) -> None:
    flags_server.definitions = {
        "flags": [flag("local", 100), flag("sticky", 100, ensure_experience_continuity=True)],
        "group_type_mapping": {},
        "cohorts": {},
    }
    flags_server.flags = {"sticky": "test"}
    sink = MemorySink()
    with caplog.at_level(logging.DEBUG):
        obs.init(api_key="phc_test", host=flags_server.url, sinks=[sink], personal_api_key=PERSONAL_KEY)
        assert obs.get_feature_flag("local", "u") is True
        assert obs.get_feature_flag("sticky", "u") == "test"
        try:
            raise ValueError("boom")
        except ValueError:
            obs.capture_exception(distinct_id="u")
        assert obs.flush(5)
    assert all(PERSONAL_KEY not in r.getMessage() for r in caplog.records)
    assert PERSONAL_KEY not in repr(sink.events)
    assert all(PERSONAL_KEY.encode() not in r.raw for r in flags_server.received)
    definitions = flags_server.definition_requests
    assert definitions and all(r.headers["authorization"] == f"Bearer {PERSONAL_KEY}" for r in definitions)
    assert all("authorization" not in r.headers for r in flags_server.flag_requests)


# ---------------------------------------------------------------- local evaluation


def _hash(key: str, distinct_id: str, salt: str = "") -> float:
    """PostHog's rollout hash, written out here as an oracle independent of both SDKs."""
    return int(hashlib.sha1(f"{key}.{distinct_id}{salt}".encode()).hexdigest()[:15], 16) / 0xFFFFFFFFFFFFFFF


DEFINITIONS: dict[str, Any] = {
    "flags": [
        flag("r10", 10),
        flag("r50", 50),
        flag("r90", 90),
        flag(
            "mv",
            100,
            multivariate={
                "variants": [
                    {"key": "control", "rollout_percentage": 34},
                    {"key": "test", "rollout_percentage": 33},
                    {"key": "other", "rollout_percentage": 33},
                ]
            },
            payloads={"test": '{"color": "blue"}', "control": '{"color": "grey"}'},
        ),
        flag(
            "pro-only",
            groups=[
                {
                    "properties": [{"key": "plan", "value": ["pro"], "operator": "exact", "type": "person"}],
                    "rollout_percentage": 100,
                }
            ],
        ),
        flag(
            "big-companies",
            groups=[
                {
                    "properties": [
                        {
                            "key": "size",
                            "value": 100,
                            "operator": "gte",
                            "type": "group",
                            "group_type_index": 0,
                        }
                    ],
                    "rollout_percentage": 100,
                }
            ],
            aggregation_group_type_index=0,
        ),
        flag("inactive", 100, active=False),
    ],
    "group_type_mapping": {"0": "company"},
    "cohorts": {},
}


def _user(i: int) -> dict[str, Any]:
    return {
        "distinct_id": f"user-{i}",
        "person_properties": {"plan": "pro" if i % 3 == 0 else "free"},
        "groups": {"company": f"co-{i % 7}"},
        "group_properties": {"company": {"size": 50 * (i % 4)}},
    }


def test_local_evaluation_matches_posthog_python(flags_server: FlagsServer) -> None:
    flags_server.definitions = DEFINITIONS
    sink = MemorySink()
    obs.init(api_key="phc_test", host=flags_server.url, sinks=[sink], personal_api_key=PERSONAL_KEY)
    ph = posthog.Client("phc_test", host=flags_server.url, send=False, secret_key=PERSONAL_KEY)
    ph.load_feature_flags()
    keys = [f["key"] for f in DEFINITIONS["flags"]]
    ours: dict[tuple[str, str], Any] = {}
    for i in range(200):
        u = _user(i)
        did = u.pop("distinct_id")
        for key in keys:
            theirs = ph.get_feature_flag_result(
                key, did, only_evaluate_locally=True, send_feature_flag_events=False, **u
            )
            assert theirs is not None, key
            value = obs.get_feature_flag(key, did, **u)
            assert value == theirs.get_value(), (key, did)
            assert obs.get_feature_flag_payload(key, did, **u) == theirs.payload, (key, did)
            ours[key, did] = value
    ph.shutdown()
    assert flags_server.flag_requests == []  # every one of them decided locally
    # Independent checks, so that agreeing with posthog-python cannot hide a shared mistake.
    for key, pct in (("r10", 10), ("r50", 50), ("r90", 90)):
        for i in range(200):
            assert ours[key, f"user-{i}"] is (_hash(key, f"user-{i}") <= pct / 100)
        share = sum(ours[key, f"user-{i}"] for i in range(200)) / 200
        assert abs(share - pct / 100) < 0.1, (key, share)
    assert {ours["mv", f"user-{i}"] for i in range(200)} == {"control", "test", "other"}
    assert all(ours["pro-only", f"user-{i}"] is (i % 3 == 0) for i in range(200))
    assert all(ours["big-companies", f"user-{i}"] is (50 * (i % 4) >= 100) for i in range(200))
    assert not any(ours["inactive", f"user-{i}"] for i in range(200))
    called = _events(sink, "$feature_flag_called")
    assert called and all(e["properties"]["locally_evaluated"] is True for e in called)


def test_local_evaluation_falls_back_to_remote(flags_server: FlagsServer) -> None:
    flags_server.definitions = {
        "flags": [flag("local", 100), flag("sticky", 100, ensure_experience_continuity=True)],
        "group_type_mapping": {},
        "cohorts": {},
    }
    flags_server.flags = {"sticky": "from-remote", "newer": True, "local": False}
    obs.init(api_key="phc_test", host=flags_server.url, sinks=["memory"], personal_api_key=PERSONAL_KEY)
    assert len(flags_server.received) == 0  # definitions load with the first flag, not at init
    assert obs.get_feature_flag("local", "u") is True
    assert flags_server.flag_requests == []
    assert obs.get_feature_flag("sticky", "u") == "from-remote"  # cannot be decided locally
    assert obs.get_feature_flag("newer", "u") is True  # not in the definitions (yet)
    assert [r.body["flag_keys_to_evaluate"] for r in flags_server.flag_requests] == [["sticky"], ["newer"]]
    assert len(flags_server.definition_requests) == 1


def test_local_evaluation_without_definitions_asks_remote(
    flags_server: FlagsServer, caplog: pytest.LogCaptureFixture
) -> None:
    flags_server.definitions = {"flags": [flag("f", 0)], "group_type_mapping": {}, "cohorts": {}}
    flags_server.flags = {"f": True}
    flags_server.personal_key = "phx_another_key"  # ours is refused: 401
    with caplog.at_level(logging.WARNING, logger="obs"):
        obs.init(api_key="phc_test", host=flags_server.url, sinks=["memory"], personal_api_key=PERSONAL_KEY)
        assert obs.get_feature_flag("f", "u") is True
        assert obs.get_feature_flag("f", "v") is True
    assert [r.status for r in flags_server.definition_requests] == [401]
    assert len(flags_server.flag_requests) == 2
    assert len([r for r in caplog.records if "no flag definitions" in r.getMessage()]) == 1
    stats = obs.get_client().stats()
    assert (stats["flag_local_failures"], stats["flag_errors"]) == (1, 0)


def test_slow_definitions_are_not_waited_for_twice(flags_server: FlagsServer) -> None:
    flags_server.definitions = {"flags": [flag("f", 100)], "group_type_mapping": {}, "cohorts": {}}
    flags_server.definitions_delay = 1.0
    flags_server.flags = {"f": "remote"}
    obs.init(
        api_key="phc_test", host=flags_server.url, sinks=["memory"], personal_api_key=PERSONAL_KEY,
        flags_timeout=0.3, flags_cache_ttl=0,
    )  # fmt: skip
    t0 = time.monotonic()
    assert obs.get_feature_flag("f", "u") == "remote"  # waited 0.3 s for the definitions, then asked
    assert time.monotonic() - t0 < 0.9
    assert obs.get_client().stats()["flag_local_failures"] == 1
    deadline = time.monotonic() + 5
    while obs.get_feature_flag("f", "u") is not True and time.monotonic() < deadline:
        time.sleep(0.05)
    assert obs.get_feature_flag("f", "u") is True  # loaded by now: decided locally
    asked = len(flags_server.flag_requests)
    obs.get_feature_flag("f", "v")
    assert len(flags_server.flag_requests) == asked and len(flags_server.definition_requests) == 1


def test_local_evaluation_in_async_code_and_threads(flags_server: FlagsServer) -> None:
    flags_server.definitions = DEFINITIONS
    obs.init(api_key="phc_test", host=flags_server.url, sinks=["memory"], personal_api_key=PERSONAL_KEY)

    async def main() -> list[Any]:
        return [await obs.aget_feature_flag("r50", f"user-{i}") for i in range(20)]

    expected = [_hash("r50", f"user-{i}") <= 0.5 for i in range(20)]
    assert asyncio.run(main()) == expected
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(lambda i: obs.get_feature_flag("r50", f"user-{i}"), range(20))) == expected
    assert flags_server.flag_requests == []


def test_shutdown_stops_the_flag_threads(remote: tuple[FlagsServer, MemorySink]) -> None:
    srv, _ = remote
    assert obs.get_feature_flag("on", "u") is True
    assert "obs-flags" in _flag_threads()
    obs.shutdown(5)
    assert _flag_threads() == []
    assert obs.get_feature_flag("on", "u") is True  # cached answers still serve
    assert obs.get_feature_flag("on", "new-user", default="d") == "d"  # but nothing new is asked
    assert len(srv.flag_requests) == 1


def test_testing_capture_events_asks_nothing(flags_server: FlagsServer) -> None:
    flags_server.flags = {"on": True}
    obs.init(api_key="phc_test", host=flags_server.url, sinks=["memory"])
    with obs.testing.capture_events() as captured:
        assert obs.get_feature_flag("on", "u", default="d") == "d"
        assert obs.feature_enabled("on", "u") is False
    assert flags_server.received == [] and captured.named("$feature_flag_called") == []


def test_a_forked_child_evaluates_with_its_own_flag_thread(flags_server: FlagsServer) -> None:
    flags_server.flags = {"on": True}
    code = """
        import os, obs
        obs.init(sinks=["memory"])
        assert obs.get_feature_flag("on", "parent") is True  # the parent's flag thread is running
        pid = os.fork()
        if pid == 0:
            os._exit(0 if obs.get_feature_flag("on", "child") is True else 3)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
        assert obs.get_feature_flag("on", "parent-again") is True
    """
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        "POSTHOG_API_KEY": "phc_fork",
        "POSTHOG_HOST": flags_server.url,
        "OBS_FLAGS_TIMEOUT": "2",
    }
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert [r.body["distinct_id"] for r in flags_server.flag_requests] == ["parent", "child", "parent-again"]
