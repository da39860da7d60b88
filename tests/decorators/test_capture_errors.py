"""`$exception` events: PostHog's format (compared with posthog-python), chains, groups, rate limiting,
trace ids, scrubbing and the already-captured rule."""

from __future__ import annotations

import sys
from typing import Any

import posthog
import pytest

import obs
from obs._client import Client
from obs.sinks import MemorySink
from obs.testing import CapturedEvents
from tests.capture_server import CaptureServer

Memory = tuple[Client, MemorySink]


def _level3(msg: str) -> None:
    raise ValueError(msg)


def _level2(msg: str) -> None:
    _level3(msg)


def _level1(msg: str) -> None:
    try:
        _level2(msg)
    except ValueError as e:
        raise RuntimeError("wrapped") from e


def _caught(fn: Any, *args: Any) -> BaseException:
    try:
        fn(*args)
    except BaseException as e:
        return e
    raise AssertionError("did not raise")


def _exceptions(sink: MemorySink) -> list[dict[str, Any]]:
    assert obs.flush(5)
    return [e for e in sink.events if e["event"] == "$exception"]


# ---------------------------------------------------------------- format and parity


def test_same_structure_as_posthog_python(server: CaptureServer) -> None:
    exc = _caught(_level1, "boom")
    client = posthog.Client("phc_parity", host=server.url)
    client.capture_exception(exc, distinct_id="u")
    client.shutdown()
    assert server.wait_for_events(1)
    (theirs,) = server.events()
    server.received.clear()

    obs.init(api_key="phc_parity", host=server.url)
    assert obs.capture_exception(exc, distinct_id="u") is not None
    assert obs.shutdown(5)
    (ours,) = server.events()

    assert ours["event"] == theirs["event"] == "$exception"
    tp, op = theirs["properties"], ours["properties"]
    assert op["$exception_level"] == tp["$exception_level"] == "error"
    t_list, o_list = tp["$exception_list"], op["$exception_list"]
    assert len(o_list) == len(t_list) == 2
    for t, o in zip(t_list, o_list, strict=True):
        assert set(t) <= set(o), set(t) - set(o)
        for key in ("type", "value", "module"):
            assert o[key] == t[key], key
        assert o["mechanism"] == t["mechanism"]
        t_frames, o_frames = t["stacktrace"]["frames"], o["stacktrace"]["frames"]
        assert [f["function"] for f in o_frames] == [f["function"] for f in t_frames]
        assert o["stacktrace"]["type"] == t["stacktrace"]["type"] == "raw"
        for tf, of in zip(t_frames, o_frames, strict=True):
            assert set(tf) <= set(of), set(tf) - set(of)
            for key in tf:
                assert of[key] == tf[key], (key, of[key], tf[key])
    assert [e["type"] for e in o_list] == ["RuntimeError", "ValueError"]
    assert o_list[1]["mechanism"]["source"] == "cause"


def test_unhandled_mechanism_as_posthog_pythons_integrations_send_it(server: CaptureServer) -> None:
    # posthog-python's own middleware passes {"type": "middleware", "handled": False}: so can we.
    exc = _caught(_level1, "escaped")
    mechanism = {"type": "middleware", "handled": False}
    client = posthog.Client("phc_parity", host=server.url)
    client.capture_exception(exc, distinct_id="u", _capture_metadata={"mechanism": mechanism})
    client.shutdown()
    assert server.wait_for_events(1)
    (theirs,) = server.events()
    server.received.clear()

    obs.init(api_key="phc_parity", host=server.url)
    assert obs.capture_exception(exc, distinct_id="u", mechanism=mechanism) is not None
    assert obs.shutdown(5)
    (ours,) = server.events()
    t_list, o_list = theirs["properties"]["$exception_list"], ours["properties"]["$exception_list"]
    assert [o["mechanism"] for o in o_list] == [t["mechanism"] for t in t_list]
    assert o_list[0]["mechanism"] == {
        "exception_id": 0,
        "type": "middleware",
        "handled": False,
        "synthetic": False,
    }


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, {"type": "generic", "handled": True, "synthetic": False}),
        ({"handled": False}, {"type": "generic", "handled": False, "synthetic": False}),
        ({"mechanism": "celery"}, {"type": "celery", "handled": True, "synthetic": False}),
        ({"mechanism": "celery", "handled": False}, {"type": "celery", "handled": False, "synthetic": False}),
        (
            {"mechanism": {"type": "fastapi", "handled": False}},
            {"type": "fastapi", "handled": False, "synthetic": False},
        ),
        (
            {"mechanism": {"handled": False}, "handled": True},
            {"type": "generic", "handled": True, "synthetic": False},
        ),
        ({"mechanism": {"synthetic": True}}, {"type": "generic", "handled": True, "synthetic": True}),
    ],
)
def test_capture_exception_handled_and_mechanism(
    memory: Memory, kwargs: dict[str, Any], expected: dict[str, Any]
) -> None:
    _, sink = memory
    obs.capture_exception(_caught(_level3, "x"), **kwargs)
    (event,) = _exceptions(sink)
    root = event["properties"]["$exception_list"][0]["mechanism"]
    assert {k: root[k] for k in expected} == expected


def test_a_reraising_handler_marks_the_error_unhandled(memory: Memory) -> None:
    _, sink = memory

    def handler() -> None:
        try:
            _level3("passed on")
        except ValueError as e:
            obs.capture_exception(e, handled=False, mechanism="job_runner")
            raise

    with pytest.raises(ValueError):
        obs.capture_errors(handler)()  # the outer decorator does not send it again
    (event,) = _exceptions(sink)
    assert event["properties"]["$exception_list"][0]["mechanism"]["handled"] is False
    assert event["properties"]["$exception_list"][0]["mechanism"]["type"] == "job_runner"


def test_a_malformed_mechanism_is_logged_and_left_out(
    memory: Memory, caplog: pytest.LogCaptureFixture
) -> None:
    _, sink = memory
    bad: dict[str, Any] = {"type": 5, "exception_id": 9, "handled": "no", "synthetic": False}
    with caplog.at_level("WARNING", logger="obs"):
        uid = obs.capture_exception(_caught(_level3, "x"), mechanism=bad)
        other = obs.capture_exception(_caught(_level3, "y"), mechanism=42, handled="no")  # type: ignore[arg-type]
    assert uid is not None and other is not None  # sent all the same
    first, second = _exceptions(sink)
    assert first["properties"]["$exception_list"][0]["mechanism"] == {
        "exception_id": 0,
        "type": "generic",
        "handled": True,
        "synthetic": False,
    }
    assert second["properties"]["$exception_list"][0]["mechanism"]["handled"] is True
    assert any("ignored 'type': 5" in r.getMessage() for r in caplog.records)


def test_frames_have_context_lines_and_in_app(memory: Memory) -> None:
    _, sink = memory
    obs.capture_exception(_caught(_level2, "x"))
    (event,) = _exceptions(sink)
    frames = event["properties"]["$exception_list"][0]["stacktrace"]["frames"]
    assert [f["function"] for f in frames] == ["_caught", "_level2", "_level3"]
    last = frames[-1]
    assert last["context_line"] == "    raise ValueError(msg)"
    assert last["pre_context"][-1] == "def _level3(msg: str) -> None:"
    assert last["module"] == "tests.decorators.test_capture_errors"
    assert last["filename"] == "tests/decorators/test_capture_errors.py"
    assert last["abs_path"] == __file__
    assert last["lineno"] == _level3.__code__.co_firstlineno + 1
    assert last["platform"] == "python" and last["in_app"] is True


def test_library_frames_are_not_in_app(memory: Memory) -> None:
    _, sink = memory
    import json

    obs.capture_exception(_caught(json.loads, "{"))
    (event,) = _exceptions(sink)
    frames = event["properties"]["$exception_list"][0]["stacktrace"]["frames"]
    assert frames[0]["in_app"] is True  # this file
    assert any(f["module"].startswith("json") and f["in_app"] is False for f in frames)


def test_decorator_frames_are_hidden(memory: Memory) -> None:
    _, sink = memory

    @obs.capture_errors
    def handler() -> None:
        _level3("in handler")

    with pytest.raises(ValueError):
        handler()
    (event,) = _exceptions(sink)
    frames = event["properties"]["$exception_list"][0]["stacktrace"]["frames"]
    assert [f["function"] for f in frames] == ["handler", "_level3"]
    mechanism = event["properties"]["$exception_list"][0]["mechanism"]
    assert mechanism == {
        "exception_id": 0,
        "type": "obs.capture_errors",
        "handled": False,  # re-raised: nothing handled it
        "synthetic": False,
    }
    assert event["properties"]["$exception_source"] == "obs.capture_errors"


def test_never_raised_exception_gets_the_reporting_stack(memory: Memory) -> None:
    _, sink = memory

    def report() -> None:
        obs.capture_exception(ValueError("made, not raised"))

    report()
    (event,) = _exceptions(sink)
    entry = event["properties"]["$exception_list"][0]
    assert entry["mechanism"]["synthetic"] is True
    assert entry["stacktrace"]["frames"][-1]["function"] == "report"
    assert entry["stacktrace"]["frames"][-2]["function"] == sys._getframe().f_code.co_name


def test_implicit_context_chain_and_cycles(memory: Memory) -> None:
    _, sink = memory
    try:
        try:
            raise KeyError("first")
        except KeyError:
            raise TypeError("during handling")  # noqa: B904 - the implicit __context__ is the point
    except TypeError as e:
        exc = e
    obs.capture_exception(exc)
    a = ValueError("a")
    b = ValueError("b")
    a.__context__, b.__context__ = b, a  # a cycle must not loop forever
    obs.capture_exception(a)
    first, cyclic = _exceptions(sink)
    entries = first["properties"]["$exception_list"]
    assert [(e["type"], e["mechanism"].get("source")) for e in entries] == [
        ("TypeError", None),
        ("KeyError", "context"),
    ]
    assert [e["value"] for e in cyclic["properties"]["$exception_list"]] == ["a", "b"]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="ExceptionGroup is Python 3.11+")
def test_exception_groups_keep_every_member(memory: Memory) -> None:
    _, sink = memory

    def fail(exc: Exception) -> None:
        raise exc

    members = [_caught(fail, ValueError("one")), _caught(fail, KeyError("two"))]
    group = _caught(fail, ExceptionGroup("several", members))  # type: ignore[arg-type]  # noqa: F821
    obs.capture_exception(group)
    (event,) = _exceptions(sink)
    entries = event["properties"]["$exception_list"]
    assert [e["type"] for e in entries] == ["ExceptionGroup", "ValueError", "KeyError"]
    assert entries[0]["mechanism"]["is_exception_group"] is True
    assert [e["mechanism"]["source"] for e in entries[1:]] == ["member", "member"]
    assert all(e["mechanism"]["parent_id"] == 0 for e in entries[1:])
    assert entries[1]["stacktrace"]["frames"][-1]["function"] == "fail"


def test_level_fingerprint_properties_and_distinct_id(obs_events: CapturedEvents) -> None:
    @obs.capture_errors(
        reraise=False,
        default="fallback",
        level="warning",
        fingerprint="checkout-timeout",
        properties={"area": "checkout"},
        distinct_id=lambda user, **_: f"user-{user}",
    )
    def checkout(user: int, *, cart: str) -> str:
        raise TimeoutError("slow")

    assert checkout(7, cart="c") == "fallback"
    event = obs_events.one(
        "$exception",
        "user-7",
        area="checkout",
        properties={"$exception_level": "warning", "$exception_fingerprint": "checkout-timeout"},
    )
    props = event["properties"]
    assert "$process_person_profile" not in props
    assert props["$exception_list"][0]["mechanism"]["handled"] is True


def test_capture_exception_default_is_the_handled_exception_and_personless(memory: Memory) -> None:
    _, sink = memory
    assert obs.capture_exception() is None  # nothing being handled: nothing sent, nothing raised
    try:
        _level3("active")
    except ValueError:
        uid = obs.capture_exception()
    (event,) = _exceptions(sink)
    assert event["uuid"] == uid
    assert event["distinct_id"] == uid  # the documented default id: the event's own uuid
    assert event["properties"]["$process_person_profile"] is False
    assert event["properties"]["$exception_list"][0]["value"] == "active"


def test_context_distinct_id_is_used(obs_events: CapturedEvents) -> None:
    with obs.context(distinct_id="ctx-user", properties={"tenant": "t1"}):
        obs.capture_exception(_caught(_level3, "x"))
    event = obs_events.one("$exception", "ctx-user", tenant="t1")
    assert "$process_person_profile" not in event["properties"]


def test_captured_once_across_layers(obs_events: CapturedEvents) -> None:
    @obs.capture_errors
    def inner() -> None:
        _level3("once")

    @obs.capture_errors
    def outer() -> None:
        inner()

    exc = _caught(outer)
    assert obs.capture_exception(exc) is None
    obs_events.one("$exception")


def test_disabled_sdk_captures_nothing_and_raises_nothing() -> None:
    exc = _caught(_level3, "off")
    assert obs.capture_exception(exc) is None
    assert not obs.get_client().enabled


# ---------------------------------------------------------------- rate limiting


def test_identical_errors_are_rate_limited_and_the_next_reports_suppressed() -> None:
    sink = MemorySink()
    obs.init(api_key="phc_rl", sinks=[sink], error_rate_limit=3, error_rate_window=0.3)

    @obs.capture_errors(reraise=False)
    def hot() -> None:
        _level3("again")

    @obs.capture_errors(reraise=False)
    def other() -> None:
        raise KeyError("different")

    for _ in range(50):
        hot()
    other()  # a different error is not held back by the first one's limit
    assert obs.flush(5)
    assert len([e for e in sink.events if e["event"] == "$exception"]) == 4
    assert obs.get_client().stats()["exceptions_rate_limited"] == 47
    import time

    time.sleep(0.35)
    hot()
    events = _exceptions(sink)
    assert events[-1]["properties"]["$exception_suppressed_count"] == 47
    assert all("$exception_suppressed_count" not in e["properties"] for e in events[:-1])


def test_rate_limit_zero_disables_it() -> None:
    sink = MemorySink()
    obs.init(api_key="phc_rl", sinks=[sink], error_rate_limit=0)
    for _ in range(30):
        obs.capture_exception(_caught(_level3, "x"))
    assert len(_exceptions(sink)) == 30


def test_rate_limiter_window_and_bounded_keys() -> None:
    from obs._exceptions import RateLimiter

    now = [0.0]
    limiter = RateLimiter(2, 10.0, clock=lambda: now[0])
    assert [limiter.check(("k",)) for _ in range(4)] == [(True, 0), (True, 0), (False, 0), (False, 0)]
    now[0] = 10.0
    assert limiter.check(("k",)) == (True, 2)
    for i in range(RateLimiter._MAX_KEYS + 10):
        limiter.check((i,))
    assert len(limiter._buckets) == RateLimiter._MAX_KEYS


# ---------------------------------------------------------------- trace ids


def test_obs_span_ids_are_attached(memory: Memory) -> None:
    _, sink = memory
    from obs import _trace

    token = _trace.current.set(_trace.SpanIds("trace-1", "span-2", "trace-1"))
    try:
        obs.capture_exception(_caught(_level3, "in span"))
    finally:
        _trace.current.reset(token)
    obs.capture_exception(_caught(_level3, "outside"))
    inside, outside = _exceptions(sink)
    p = inside["properties"]
    assert (p["$ai_trace_id"], p["$ai_span_id"], p["$trace_id"], p["$span_id"]) == (
        "trace-1",
        "span-2",
        "trace-1",
        "span-2",
    )
    assert "$trace_id" not in outside["properties"]


def test_opentelemetry_span_ids_are_attached(memory: Memory) -> None:
    _, sink = memory
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("request") as span:
        obs.capture_exception(_caught(_level3, "in otel span"))
        ctx = span.get_span_context()
    (event,) = _exceptions(sink)
    assert event["properties"]["$trace_id"] == f"{ctx.trace_id:032x}"
    assert event["properties"]["$span_id"] == f"{ctx.span_id:016x}"


# ---------------------------------------------------------------- scrubbing


def _leak() -> None:
    api_key = "sk-proj-abcdefghijklmnopqrstuvwx1234"  # a secret on the context line
    raise ConnectionError(f"https://admin:hunter2@db.internal failed with key {api_key}")


def test_secrets_are_scrubbed_from_messages_and_context_lines(memory: Memory) -> None:
    _, sink = memory
    obs.capture_exception(_caught(_leak))
    (event,) = _exceptions(sink)
    text = repr(event["properties"]["$exception_list"])
    assert "hunter2" not in text and "abcdefghijklmnopqrstuvwx1234" not in text
    entry = event["properties"]["$exception_list"][0]
    assert "db.internal failed" in entry["value"]
    frame = entry["stacktrace"]["frames"][-1]
    assert frame["function"] == "_leak"
    assert "api_key" in frame["pre_context"][-1]


def test_scrubbing_can_be_turned_off_and_extended() -> None:
    sink = MemorySink()
    obs.init(api_key="phc_s", sinks=[sink], scrub_secrets=False, scrub_patterns=[r"ticket-\d+"])

    def fail() -> None:
        raise ValueError("https://admin:hunter2@db for ticket-12345")

    obs.capture_exception(_caught(fail))
    (event,) = _exceptions(sink)
    value = event["properties"]["$exception_list"][0]["value"]
    assert "hunter2" in value and "ticket-12345" not in value


def test_invalid_scrub_pattern_is_a_config_error() -> None:
    with pytest.raises(obs.ConfigError, match=r"scrub_patterns=\['\(unclosed'\]: invalid scrub pattern"):
        obs.init(api_key="phc_s", sinks=["memory"], scrub_patterns=["(unclosed"])


# ---------------------------------------------------------------- producer side


def test_the_caller_does_not_format_frames(memory: Memory) -> None:
    """Frames are formatted on the worker: the caller's thread never reads source lines."""
    import linecache
    import threading

    _, sink = memory
    callers: set[str] = set()
    real = linecache.getlines

    def spy(*args: Any, **kwargs: Any) -> list[str]:
        callers.add(threading.current_thread().name)
        return real(*args, **kwargs)

    linecache.getlines = spy  # type: ignore[assignment]
    try:
        obs.capture_exception(_caught(_level2, "x"))
        assert _exceptions(sink)
    finally:
        linecache.getlines = real
    assert callers and threading.current_thread().name not in callers


# ---------------------------------------------------------------- options checked at decoration


def test_bad_options_fail_at_decoration_not_at_the_first_error() -> None:
    with pytest.raises(ValueError, match="level must be one of"):
        obs.capture_errors(level="loud")
    with pytest.raises(TypeError, match="exception types"):
        obs.capture_errors(ignore=("KeyError",))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="event name"):
        obs.track("")


def test_ignore_takes_a_single_type_and_levels_are_normalised(memory: Memory) -> None:
    _, sink = memory

    @obs.capture_errors(ignore=KeyError, level="critical")
    def fail(exc: Exception) -> None:
        raise exc

    with pytest.raises(KeyError):
        fail(KeyError("ignored"))
    with pytest.raises(ValueError):
        fail(ValueError("sent"))
    obs.capture_exception(_caught(_level3, "manual"), level="nonsense")  # logged, sent as error
    first, second = _exceptions(sink)
    assert first["properties"]["$exception_list"][0]["type"] == "ValueError"
    assert first["properties"]["$exception_level"] == "fatal"
    assert second["properties"]["$exception_level"] == "error"


def test_exits_aborts_and_usage_errors_of_cli_frameworks_are_ignored_by_default(memory: Memory) -> None:
    import click
    import typer

    class NotFound(click.ClickException):  # an app's own message for its user
        exit_code = 4

    stops: list[BaseException] = [
        typer.Exit(3),  # a RuntimeError
        typer.Abort(),
        typer.BadParameter("no such colour"),
        click.exceptions.Exit(0),
        click.Abort(),
        click.UsageError("wrong"),
        click.BadParameter("bad"),
        click.ClickException("shown to the user"),
        NotFound("no such project"),
        SystemExit(2),
        KeyboardInterrupt(),
    ]

    @obs.capture_errors(reraise=False, default="swallowed")
    def run(exc: BaseException) -> str:
        raise exc

    for stop in stops:
        with pytest.raises(type(stop)):  # neither captured nor swallowed
            run(stop)
    assert run(RuntimeError("a real failure")) == "swallowed"
    (event,) = _exceptions(memory[1])
    assert event["properties"]["$exception_list"][0]["value"] == "a real failure"


# ---------------------------------------------------------------- in-app


def test_in_app_modules_marks_installed_packages_as_application() -> None:
    import json

    sink = MemorySink()
    obs.init(api_key="phc_ia", sinks=[sink], in_app_modules="json,billing")
    obs.capture_exception(_caught(json.loads, "{"))
    (event,) = _exceptions(sink)
    frames = event["properties"]["$exception_list"][0]["stacktrace"]["frames"]
    json_frames = [f for f in frames if f["module"].startswith("json")]
    assert json_frames and all(f["in_app"] is True for f in json_frames)


def test_errors_without_in_app_frames_are_told_apart_by_their_library_lines() -> None:
    import fractions
    import ipaddress

    from obs._exceptions import InApp, _key

    in_app = InApp()
    a, b = _caught(ipaddress.ip_address, "x"), _caught(fractions.Fraction, "x")
    assert type(a) is type(b) is ValueError
    # Without this test's own frame, only standard-library frames remain.
    key_a, key_b = _key(a, a.__traceback__.tb_next, in_app), _key(b, b.__traceback__.tb_next, in_app)
    assert key_a != key_b and len(key_a) > 1 and len(key_b) > 1
    # With an in-app frame present (`_caught`, in this file), only in-app lines count.
    assert len(_key(a, a.__traceback__, in_app)) == 2
