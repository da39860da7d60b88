"""Oversized `$exception`s are trimmed to fit `max_event_bytes`, not dropped: deep recursion from a module
with very long lines, long chains of causes and huge messages, through the real pipeline to a PostHog-shaped
server. Ordinary exceptions are sent as before, and never encoded for measuring."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

import pytest
from pydantic_core import to_json

import obs
from obs import _exceptions
from obs.sinks import MemorySink
from tests.capture_server import CaptureServer

LONG = 5000  # characters in the module's long lines
KEY = "sk-" + "b" * 40  # looks like an OpenAI key to the scrubber
MARKER = re.compile(r"…\[truncated (\d+) chars\]\Z")

# Every line of interest is LONG characters, and a comment crosses a cut line (256 characters) in the
# middle of a secret.
SOURCE = """
# {long}
def recurse(n):
    padding = "{long}"  # {long}
    # {straddle}
    return recurse(n + 1)  # {long}
    # {long}


def dive(n, k, cause):
    # {long}
    if n:
        return dive(n - 1, k, cause)  # {long}
    raise ValueError(f"level {{k}}: " + "m" * {long_n}) from cause  # {long}
    # {long}


def chain(levels, depth):
    cause = None
    for k in range(levels):
        try:
            dive(depth, k, cause)
        except ValueError as e:
            cause = e
    raise cause
"""


@pytest.fixture
def deep(tmp_path: Path) -> ModuleType:
    """A module in a temp dir whose lines are 5,000 characters long."""
    path = tmp_path / "obs_deep_module.py"
    path.write_text(SOURCE.format(long="z" * LONG, long_n=LONG, straddle="p" * 236 + f" {KEY} " + "q" * LONG))
    spec = importlib.util.spec_from_file_location("obs_deep_module", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _raised(fn: Any, *args: Any) -> BaseException:
    try:
        fn(*args)
    except BaseException as e:
        return e
    raise AssertionError("did not raise")


def _deliver(
    server: CaptureServer, exc: BaseException, limit: int, host: str | None = None
) -> dict[str, Any]:
    """``exc`` through obs.init → worker → PostHogSink → the capture server; the one event that arrived."""
    obs.init(api_key="phc_trim", host=host or server.url, max_event_bytes=limit)
    assert obs.capture_exception(exc, distinct_id="u") is not None
    assert obs.flush(10)
    assert obs.get_client().stats().get("dropped_too_large", 0) == 0
    (event,) = server.events()
    assert len(to_json(event)) <= limit  # encoded as the sink encodes it
    return event


def _calls(tb: TracebackType | None) -> list[tuple[str, int]]:
    out = []
    while tb is not None:
        out.append((tb.tb_frame.f_code.co_name, tb.tb_lineno))
        tb = tb.tb_next
    return out


def _check_ends(stacktrace: dict[str, Any], exc: BaseException) -> int:
    """The frames sent are the outermost and innermost of the real ones around one synthetic frame that
    counts the rest; innermost frames are preferred. Returns how many were omitted."""
    original = _calls(exc.__traceback__)
    frames = stacktrace["frames"]
    (at,) = [i for i, f in enumerate(frames) if f.get("synthetic")]
    omitted = stacktrace["frames_omitted"]
    marker = frames[at]
    assert marker["function"] == f"<{omitted} frames omitted>"
    assert marker["filename"] == "<omitted>" and marker["in_app"] is False and marker["lineno"] is None
    outer = [(f["function"], f["lineno"]) for f in frames[:at]]
    inner = [(f["function"], f["lineno"]) for f in frames[at + 1 :]]
    assert outer and outer == original[: len(outer)]
    assert inner and inner == original[len(original) - len(inner) :]
    assert len(outer) + omitted + len(inner) == len(original)
    assert len(inner) >= len(outer)
    return int(omitted)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


# ---------------------------------------------------------------- deep recursion


@pytest.mark.parametrize(
    ("limit", "by_name"),
    [(900 * 1024, False), (64 * 1024, True), (8 * 1024, False)],
    ids=["default-limit", "64KiB-by-hostname", "8KiB"],
)
def test_deep_recursion_with_long_lines_arrives_within_the_limit(
    server: CaptureServer, deep: ModuleType, limit: int, by_name: bool
) -> None:
    exc = _raised(deep.recurse, 0)
    assert isinstance(exc, RecursionError)
    assert len(_calls(exc.__traceback__)) > 900
    host = server.url.replace("127.0.0.1", "localhost") if by_name else None
    event = _deliver(server, exc, limit, host)

    (entry,) = event["properties"]["$exception_list"]
    assert entry["type"] == "RecursionError"
    omitted = _check_ends(entry["stacktrace"], exc)
    frames = [f for f in entry["stacktrace"]["frames"] if not f.get("synthetic")]
    assert frames[0]["function"] == "_raised" and frames[-1]["function"] == "recurse"
    assert len(frames) <= 100 and omitted >= len(_calls(exc.__traceback__)) - 100
    innermost = frames[-1]
    if limit >= 64 * 1024:  # the line that raised stays, cut with a marker saying how much is missing
        line = innermost["context_line"]
        assert line.startswith("    return recurse(n + 1)  # zzz")
        (cut,) = MARKER.findall(line)
        assert len(line) - len(f"…[truncated {cut} chars]") == 1024
        assert int(cut) == len("    return recurse(n + 1)  # ") + LONG - 1024
    text = _strings(entry)
    assert not any(KEY[:6] in s for s in text)  # a secret across a cut is still scrubbed, not half-kept
    if limit == 900 * 1024:
        # Nothing else had to go: every frame keeps its lines around the call, each cut at 256 characters.
        assert all(f["pre_context"] and f["post_context"] for f in frames)
        around = [line for f in frames for line in f["pre_context"] + f["post_context"]]
        assert any(MARKER.search(line) for line in around)
        assert all(len(MARKER.sub("", line)) <= 256 for line in around)
        assert any("[redacted]" in line for line in innermost["pre_context"])
    else:  # smaller budgets: fewer frames and fewer lines, but the outermost and innermost frames remain
        assert len(frames) < 100


def test_a_limit_too_small_for_even_one_frame_of_source_still_delivers(
    server: CaptureServer, deep: ModuleType
) -> None:
    exc = _raised(deep.recurse, 0)
    event = _deliver(server, exc, 2048)
    stacktrace = event["properties"]["$exception_list"][0]["stacktrace"]
    _check_ends(stacktrace, exc)
    frames = [f for f in stacktrace["frames"] if not f.get("synthetic")]
    assert [f["function"] for f in frames] == ["_raised", "recurse"]
    assert all(f["context_line"] is None and not f["pre_context"] for f in frames)


# ---------------------------------------------------------------- chains and messages


@pytest.mark.parametrize("limit", [900 * 1024, 64 * 1024], ids=["default-limit", "64KiB"])
def test_long_chain_of_deep_causes_arrives_within_the_limit(
    server: CaptureServer, deep: ModuleType, limit: int
) -> None:
    levels, depth = 60, 150
    exc = _raised(deep.chain, levels, depth)
    event = _deliver(server, exc, limit, server.url.replace("127.0.0.1", "localhost"))

    entries = event["properties"]["$exception_list"]
    assert 1 <= len(entries) <= 50
    # The caught exception first, then its causes in order, each pointing at the one before it.
    assert [e["value"].split(":")[0] for e in entries] == [
        f"level {k}" for k in range(59, 59 - len(entries), -1)
    ]
    assert all(e["mechanism"]["parent_id"] == i - 1 for i, e in enumerate(entries) if i)
    assert all(e["mechanism"]["source"] == "cause" for e in entries[1:])
    cause: BaseException | None = exc
    for e in entries:
        assert cause is not None
        _check_ends(e["stacktrace"], cause)
        stack = [f for f in e["stacktrace"]["frames"] if not f.get("synthetic")]
        assert stack[-1]["function"] == "dive"  # where each was raised
        (cut,) = MARKER.findall(e["value"])  # "level k: mmm…" is 5,000+ characters
        assert int(cut) == len(f"level {levels - 1 - e['mechanism']['exception_id']}: ") + LONG - 1024
        cause = cause.__cause__
    if limit == 900 * 1024:
        assert len(entries) == 50  # the chain's own cap, as posthog-python
    else:
        assert len(entries) < 50


def test_huge_message_is_cut_with_a_marker_after_scrubbing(memory: tuple[Any, MemorySink]) -> None:
    _, sink = memory
    # Cutting first would keep `sk-` and a dozen characters of the key: too few for the scrubber to see.
    message = "x" * 1012 + f" {KEY} " + "y" * 100_000
    obs.capture_exception(_raised(_raise_value_error, message))
    assert obs.flush(5)
    (event,) = sink.events
    value = event["properties"]["$exception_list"][0]["value"]
    assert value.startswith("x" * 1012 + " [redacted]")
    assert "sk-" not in value
    (cut,) = MARKER.findall(value)
    assert len(value) - len(f"…[truncated {cut} chars]") == 1024
    assert 1024 + int(cut) == len(message) - len(KEY) + len("[redacted]")


def _raise_value_error(message: str) -> None:
    raise ValueError(message)


# ---------------------------------------------------------------- ordinary exceptions


def _inner() -> None:
    raise KeyError("ordinary")


def _outer() -> None:
    try:
        _inner()
    except KeyError as e:
        raise RuntimeError("wrapped") from e


def test_ordinary_exception_is_sent_whole_and_never_encoded_for_measuring(
    memory: tuple[Any, MemorySink], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, sink = memory
    encoded: list[Any] = []
    monkeypatch.setattr(_exceptions, "to_json", lambda *a, **k: encoded.append(a) or b"")
    exc = _raised(_outer)
    obs.capture_exception(exc)
    assert obs.flush(5)
    (event,) = sink.events
    assert encoded == []
    entries = event["properties"]["$exception_list"]
    assert [e["type"] for e in entries] == ["RuntimeError", "KeyError"]
    for entry, cause in zip(entries, (exc, exc.__cause__), strict=True):
        stacktrace = entry["stacktrace"]
        assert set(stacktrace) == {"frames", "type"}  # no frames_omitted
        assert [(f["function"], f["lineno"]) for f in stacktrace["frames"]] == _calls(cause.__traceback__)
        assert not any(f.get("synthetic") for f in stacktrace["frames"])
        assert all(len(f["pre_context"]) == len(f["post_context"]) == 5 for f in stacktrace["frames"])
    assert not any("…[truncated" in s for s in _strings(entries))
    assert entries[1]["stacktrace"]["frames"][-1]["context_line"] == '    raise KeyError("ordinary")'
