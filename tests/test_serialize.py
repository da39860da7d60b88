"""Bad input never raises into the caller: what can be sent is sent, the rest is logged and counted."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import logging
import uuid
from collections import deque
from decimal import Decimal
from typing import Any

import pydantic
import pytest

import obs
from obs._client import Client
from obs.sinks import MemorySink
from tests.capture_server import CaptureServer

Mem = tuple[Client, MemorySink]


@dataclasses.dataclass
class Point:
    x: int
    when: dt.date


class Model(pydantic.BaseModel):
    name: str
    tags: set[str]


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no str for you")


def _props(sink: MemorySink) -> dict[str, Any]:
    assert obs.flush(5)
    assert len(sink.events) == 1
    props = sink.events[0]["properties"]
    json.dumps(props, allow_nan=False)  # strictly valid JSON
    return props  # type: ignore[no-any-return]


def test_everything_convertible_is_converted(memory: Mem) -> None:
    client, sink = memory
    u = uuid.uuid4()
    obs.capture(
        "e",
        {
            "decimal": Decimal("1.25"),
            "decimal_int": Decimal("10"),
            "aware": dt.datetime(2026, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=1))),
            "naive": dt.datetime(2026, 1, 1, 12),
            "date": dt.date(2026, 1, 2),
            "delta": dt.timedelta(seconds=90),
            "uuid": u,
            "set": {3, 1, 2},
            "frozenset": frozenset({"b", "a"}),
            "tuple": (1, "two"),
            "deque": deque([1, 2]),
            "bytes": b"caf\xc3\xa9",
            "bad_bytes": b"\xff\xfe",
            "dataclass": Point(1, dt.date(2026, 3, 4)),
            "model": Model(name="m", tags={"x"}),
            "enum": Color.RED,
            "intenum": Level.HIGH,
            "nested": {"deep": [{"d": Decimal("2.5")}]},
            1: "int key",
            (1, 2): "tuple key",
            None: "none key",
        },
        distinct_id="u",
    )
    p = _props(sink)
    assert p["decimal"] == 1.25 and p["decimal_int"] == 10
    assert p["aware"] == "2026-01-01T11:00:00+00:00"
    assert p["naive"] == "2026-01-01T12:00:00"
    assert p["date"] == "2026-01-02" and p["delta"] == 90.0
    assert p["uuid"] == str(u)
    assert p["set"] == [1, 2, 3] and p["frozenset"] == ["a", "b"]
    assert p["tuple"] == [1, "two"] and p["deque"] == [1, 2]
    assert p["bytes"] == "café" and p["bad_bytes"] == "\\xff\\xfe"
    assert p["dataclass"] == {"x": 1, "when": "2026-03-04"}
    assert p["model"] == {"name": "m", "tags": ["x"]}
    assert p["enum"] == "red" and p["intenum"] == 3
    assert p["nested"] == {"deep": [{"d": 2.5}]}
    assert p["1"] == "int key" and p["(1, 2)"] == "tuple key" and p["None"] == "none key"
    stats = client.stats()
    assert stats["properties_dropped"] == 0 and stats["dropped_invalid"] == 0


def test_unrepresentable_values_are_nulled_logged_and_counted(
    memory: Mem, caplog: pytest.LogCaptureFixture
) -> None:
    client, sink = memory
    cyclic: dict[str, Any] = {"name": "loop"}
    cyclic["self"] = cyclic
    lst: list[Any] = [1]
    lst.append(lst)
    with caplog.at_level(logging.WARNING, logger="obs"):
        obs.capture(
            "e",
            {
                "nan": float("nan"),
                "inf": float("inf"),
                "dec_nan": Decimal("NaN"),
                "cycle": cyclic,
                "list_cycle": lst,
                "unprintable": Unprintable(),
                "ok": "fine",
            },
            distinct_id="u",
        )
        p = _props(sink)
    assert p["ok"] == "fine"
    # Top-level values that cannot be sent are left out (None is never sent); nested ones become null.
    assert not {"nan", "inf", "dec_nan", "unprintable"} & set(p)
    assert p["cycle"] == {"name": "loop", "self": None}
    assert p["list_cycle"] == [1, None]
    assert client.stats()["properties_dropped"] == 6
    assert any("sent without" in r.getMessage() for r in caplog.records)


def test_shared_but_acyclic_references_are_not_cycles(memory: Mem) -> None:
    client, sink = memory
    shared = {"v": 1}
    obs.capture("e", {"a": shared, "b": [shared, shared]}, distinct_id="u")
    p = _props(sink)
    assert p["a"] == {"v": 1} and p["b"] == [{"v": 1}, {"v": 1}]
    assert client.stats()["properties_dropped"] == 0


def test_unknown_objects_are_sent_as_str(memory: Mem) -> None:
    client, sink = memory

    class Thing:
        def __str__(self) -> str:
            return "a thing"

    obs.capture("e", {"thing": Thing()}, distinct_id="u")
    assert _props(sink)["thing"] == "a thing"
    assert client.stats()["properties_coerced"] == 1


def test_very_deep_nesting_is_cut(memory: Mem) -> None:
    client, sink = memory
    deep: dict[str, Any] = {}
    cur = deep
    for _ in range(200):
        cur["n"] = {}
        cur = cur["n"]
    obs.capture("e", {"deep": deep}, distinct_id="u")
    _props(sink)
    assert client.stats()["properties_dropped"] == 1


def test_non_mapping_properties_never_raise(memory: Mem) -> None:
    client, sink = memory
    # Properties that cannot be read cost only themselves: the event is sent without them.
    assert obs.capture("e", ["not", "a", "dict"], distinct_id="u") is not None  # type: ignore[arg-type]
    assert obs.capture("ok", distinct_id="u") is not None
    assert obs.flush(5)
    assert [e["event"] for e in sink.events] == ["e", "ok"]
    assert client.stats()["properties_dropped"] == 1


def test_bad_timestamp_never_raises(memory: Mem) -> None:
    client, sink = memory
    # A timestamp that cannot be read costs only itself: the event is sent with the capture time.
    before = dt.datetime.now(dt.timezone.utc)
    assert obs.capture("e", distinct_id="u", timestamp="yesterday-ish") is not None  # type: ignore[arg-type]
    assert obs.capture("e", distinct_id="u", timestamp=object()) is not None  # type: ignore[arg-type]
    assert obs.flush(5) and len(sink.events) == 2
    for e in sink.events:
        assert dt.datetime.fromisoformat(e["timestamp"]) >= before - dt.timedelta(seconds=1)
    assert client.stats()["dropped_invalid"] == 0
    assert client.stats()["properties_coerced"] == 2


def test_huge_string_goes_to_local_sinks_and_is_dropped_only_for_posthog(server: CaptureServer) -> None:
    sink = MemorySink()
    client = obs.init(api_key="phc_x", host=server.url, sinks=["posthog", sink])
    big = "x" * (5 * 1024 * 1024)
    obs.capture("huge", {"blob": big}, distinct_id="u")
    obs.capture("small", distinct_id="u")
    assert not obs.flush(10)  # one of them was not delivered to PostHog
    assert [e["event"] for e in sink.events] == ["huge", "small"]
    assert len(sink.events[0]["properties"]["blob"]) == len(big)
    assert [e["event"] for e in server.events()] == ["small"]
    stats = client.stats()
    assert stats["dropped_too_large"] == 1 and stats["sent"] == 1


def test_mutating_properties_after_capture_does_not_change_the_event(memory: Mem) -> None:
    _, sink = memory
    props = {"a": 1}
    obs.capture("e", props, distinct_id="u")
    props["a"] = 2
    props["b"] = 3
    assert _props(sink)["a"] == 1 and "b" not in _props(sink)
