"""One bad value never costs other events, and flush() never says delivered when something was lost."""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

import obs
from tests.capture_server import CaptureServer
from tests.reliability.conftest import assert_accounted

SURROGATE = "caf\udce9"  # what os.fsdecode makes of the undecodable file name b"caf\xe9"


def _init(server: CaptureServer, **kw: Any) -> None:
    obs.init(api_key="phc_values", host=server.host_url, flush_interval=60, **kw)


def test_a_lone_surrogate_costs_no_event_of_its_batch(server: CaptureServer) -> None:
    _init(server)
    assert os.fsdecode(b"caf\xe9") == SURROGATE
    for i in range(100):
        props = {"i": i, "file": SURROGATE if i == 37 else "ok", SURROGATE if i == 50 else "k": 1}
        obs.capture("e", props, distinct_id="u")
    assert obs.flush(10)  # all 100 delivered: True
    events = sorted(server.events(), key=lambda e: e["properties"]["i"])
    assert len(events) == 100
    assert events[37]["properties"]["file"] == "caf\ufffd"
    assert "caf\ufffd" in events[50]["properties"]
    stats = obs.get_client().stats()
    assert stats["sent"] == 100 and stats["sink_errors"] == 0 and stats["dropped_invalid"] == 0
    assert_accounted(stats)


def test_surrogates_in_an_exception_message_file_name_and_source_line(
    server: CaptureServer, tmp_path: Any
) -> None:
    _init(server)
    try:
        raise ValueError(f"cannot open {SURROGATE}")
    except ValueError as e:
        obs.capture_exception(e, distinct_id="u")
    obs.capture("after", distinct_id="u")
    assert obs.flush(10)
    names = [e["event"] for e in server.events()]
    assert names == ["$exception", "after"]
    exc = server.events()[0]["properties"]["$exception_list"][0]
    assert exc["value"] == "cannot open caf\ufffd"


class _RaisingRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    __str__ = __repr__


class _RaisingMapping(Mapping[str, Any]):
    def __getitem__(self, key: str) -> Any:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        raise OSError("iteration failed")

    def __len__(self) -> int:
        return 1


class _RaisingGetattr:
    def __getattr__(self, name: str) -> Any:
        raise SystemError(f"no {name}")

    def __str__(self) -> str:
        raise KeyboardInterrupt  # anything at all


class _BadTz(dt.tzinfo):
    def utcoffset(self, d: dt.datetime | None) -> dt.timedelta:
        raise ZeroDivisionError("bad tz")

    def dst(self, d: dt.datetime | None) -> dt.timedelta:
        raise ZeroDivisionError("bad tz")

    def tzname(self, d: dt.datetime | None) -> str:
        raise ZeroDivisionError("bad tz")


def test_only_the_value_that_cannot_be_converted_is_dropped(
    server: CaptureServer, caplog: pytest.LogCaptureFixture
) -> None:
    _init(server)
    with caplog.at_level(logging.WARNING, logger="obs"):
        obs.capture(
            "odd",
            {
                "set": {1, _RaisingRepr(), 2},
                "mapping": _RaisingMapping(),
                "getattr": _RaisingGetattr(),
                "nested": {"deep": [_RaisingRepr(), "kept"]},
                "when": dt.datetime(2024, 1, 1, tzinfo=_BadTz()),
                "fine": "yes",
            },
            distinct_id="u",
        )
        obs.capture("other", distinct_id="u", timestamp=dt.datetime(2024, 1, 1, tzinfo=_BadTz()))
        assert obs.flush(10)
    odd, other = server.events()
    props = odd["properties"]
    assert props["fine"] == "yes"
    assert props["set"] == [None, 1, 2]  # the member that failed is null; sets are sorted after conversion
    # Top-level properties that could not be converted are left out, as None values always are.
    assert not {"mapping", "getattr", "when"} & set(props)
    assert props["nested"] == {"deep": [None, "kept"]}
    assert other["event"] == "other"  # sent with the time of sending
    logged = " ".join(r.getMessage() for r in caplog.records)
    for path in ("set[]", "mapping", "getattr", "nested.deep[0]", "when"):
        assert path in logged, (path, logged)
    stats = obs.get_client().stats()
    assert stats["properties_dropped"] >= 5
    assert stats["sent"] == 2
    assert_accounted(stats)


class _StrRaises:
    def __str__(self) -> str:
        raise ValueError("no str")


@pytest.mark.parametrize("name", ["", None, 42, b"bytes"])
def test_capture_refuses_what_can_never_be_an_event(server: CaptureServer, name: Any) -> None:
    _init(server)
    assert obs.capture(name, distinct_id="u") is None
    assert obs.capture("fine", distinct_id=_StrRaises()) is None
    assert obs.capture("fine", distinct_id=7) is not None  # an int id is fine: sent as "7"
    assert not obs.flush(5)  # two events captured before it were lost
    assert obs.flush(5)  # and that was said once
    stats = obs.get_client().stats()
    assert stats["dropped_invalid"] == 2 and stats["sent"] == 1
    assert [e["distinct_id"] for e in server.events()] == ["7"]
    assert_accounted(stats)


def test_flush_is_false_when_an_event_before_it_was_dropped_and_true_after(server: CaptureServer) -> None:
    _init(server, max_event_bytes=2048)
    obs.capture("big", {"s": "x" * 5000}, distinct_id="u")
    obs.capture("small", distinct_id="u")
    assert not obs.flush(5)
    obs.capture("small2", distinct_id="u")
    assert obs.flush(5)


@pytest.mark.anyio
async def test_aflush_says_the_same(server: CaptureServer) -> None:
    _init(server, max_event_bytes=2048)
    obs.capture("big", {"s": "x" * 5000}, distinct_id="u")
    assert not await obs.aflush(5)
    obs.capture("ok", distinct_id="u")
    assert await obs.aflush(5)
