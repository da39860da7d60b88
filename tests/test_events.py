"""Typed events and their one mapping to PostHog's wire format."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest

import obs
from obs import events
from obs._client import Client
from obs.sinks import MemorySink

Mem = tuple[Client, MemorySink]


def _one(sink: MemorySink) -> dict[str, object]:
    assert obs.flush(5)
    assert len(sink.events) == 1, sink.events
    return sink.events[0]


def test_capture_wire_shape(memory: Mem) -> None:
    _, sink = memory
    u = obs.capture("signed_up", {"plan": "pro", "seats": 3, "gone": None}, distinct_id="user-1")
    e = _one(sink)
    assert set(e) == {"event", "distinct_id", "properties", "timestamp", "uuid"}
    assert e["event"] == "signed_up" and e["distinct_id"] == "user-1" and e["uuid"] == u
    props = e["properties"]
    assert isinstance(props, dict)
    assert props["plan"] == "pro" and props["seats"] == 3
    assert "gone" not in props  # None values are omitted, never sent as null
    assert props["$lib"] == "obs" and props["$lib_version"] == obs.__version__
    assert props["environment"] == "unknown" and "release" not in props
    assert props["$geoip_disable"] is True and props["$is_server"] is True  # as posthog-python's defaults
    assert "$process_person_profile" not in props
    ts = dt.datetime.fromisoformat(str(e["timestamp"]))
    assert ts.utcoffset() == dt.timedelta(0)
    assert abs((dt.datetime.now(dt.timezone.utc) - ts).total_seconds()) < 5


def test_generated_uuid_is_time_ordered_v7(memory: Mem) -> None:
    ids = [obs.capture("e", distinct_id="u") for _ in range(500)]
    assert all(isinstance(i, str) for i in ids)
    parsed = [uuid.UUID(str(i)) for i in ids]
    assert {p.version for p in parsed} == {7}
    assert {p.variant for p in parsed} == {uuid.RFC_4122}
    assert len(set(ids)) == 500 and ids == sorted(ids)  # type: ignore[type-var]
    ms = int(str(ids[0]).replace("-", "")[:12], 16)
    assert abs(ms / 1000 - dt.datetime.now().timestamp()) < 5


def test_caller_uuid_is_kept(memory: Mem) -> None:
    _, sink = memory
    mine = uuid.uuid4()
    assert obs.capture("e", distinct_id="u", uuid=mine) == str(mine)
    assert obs.capture("e", distinct_id="u", uuid=str(mine).upper()) == str(mine)
    assert obs.flush(5)
    assert [e["uuid"] for e in sink.events] == [str(mine), str(mine)]


def test_invalid_caller_uuid_is_replaced(memory: Mem) -> None:
    _, sink = memory
    u = obs.capture("e", distinct_id="u", uuid="not-a-uuid")
    assert u is not None and uuid.UUID(u).version == 7
    assert _one(sink)["uuid"] == u


@pytest.mark.parametrize(
    "ts",
    [
        dt.datetime(2026, 5, 1, 14, 30, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        dt.datetime(2026, 5, 1, 4, 30, tzinfo=dt.timezone(dt.timedelta(hours=-8))),
        dt.datetime(2026, 5, 1, 12, 30, tzinfo=dt.timezone.utc),
        dt.datetime(2026, 5, 1, 12, 30),  # naive: taken as UTC
        "2026-05-01T14:30:00+02:00",
        "2026-05-01T12:30:00Z",
        1777638600.0,  # epoch seconds
    ],
)
def test_timestamp_with_any_offset_is_the_same_instant_in_utc(memory: Mem, ts: object) -> None:
    _, sink = memory
    obs.capture("e", distinct_id="u", timestamp=ts)  # type: ignore[arg-type]
    sent = dt.datetime.fromisoformat(str(_one(sink)["timestamp"]))
    assert sent.utcoffset() == dt.timedelta(0)
    assert sent == dt.datetime(2026, 5, 1, 12, 30, tzinfo=dt.timezone.utc)
    assert str(_one(sink)["timestamp"]).endswith("+00:00")


def test_no_distinct_id_is_personless(memory: Mem) -> None:
    _, sink = memory
    u = obs.capture("anonymous_thing")
    e = _one(sink)
    assert e["distinct_id"] == u  # a fresh id per event, not a shared bucket
    assert e["properties"]["$process_person_profile"] is False  # type: ignore[index]


def test_groups(memory: Mem) -> None:
    _, sink = memory
    obs.capture("e", distinct_id="u", groups={"company": "acme", "team": 42})
    assert _one(sink)["properties"]["$groups"] == {"company": "acme", "team": "42"}  # type: ignore[index]


def test_capture_ai_has_the_same_wire_shape_and_route(memory: Mem) -> None:
    _, sink = memory
    obs.capture_ai("$ai_generation", {"$ai_model": "gpt"}, distinct_id="u")
    obs.capture("$ai_generation", {"$ai_model": "gpt"}, distinct_id="u")
    assert obs.flush(5)
    routes = sorted(b.route for b in sink.batches)
    assert routes == ["ai", "batch"]  # plain capture never reroutes $ai_* names
    assert all(e["event"] == "$ai_generation" for e in sink.events)


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("full", {"email": "a@b.c", "name": "Ann", "plan": "pro"}),
        ("email", {"email": "a@b.c", "plan": "pro"}),
        ("id", {"plan": "pro"}),
    ],
)
def test_identify_respects_pii_mode(mode: str, expected: dict[str, str]) -> None:
    sink = MemorySink()
    obs.init(api_key="phc_x", sinks=[sink], identify_pii=mode)
    obs.identify("user-1", {"email": "a@b.c", "name": "Ann", "plan": "pro"})
    e = _one(sink)
    assert e["event"] == "$identify" and e["distinct_id"] == "user-1"
    assert e["properties"]["$set"] == expected  # type: ignore[index]


def test_identify_mode_none_sends_nothing() -> None:
    sink = MemorySink()
    obs.init(api_key="phc_x", sinks=[sink], identify_pii="none")
    assert obs.identify("user-1", {"email": "a@b.c"}) is None
    assert obs.flush(5) and sink.events == []


def test_group_identify(memory: Mem) -> None:
    _, sink = memory
    obs.group_identify("company", "acme", {"employees": 12})
    e = _one(sink)
    assert e["event"] == "$groupidentify" and e["distinct_id"] == "$company_acme"
    p = e["properties"]
    assert p["$group_type"] == "company" and p["$group_key"] == "acme"  # type: ignore[index]
    assert p["$group_set"] == {"employees": 12}  # type: ignore[index]


def test_every_kind_maps_to_its_wire_properties() -> None:
    now = dt.datetime.now(dt.timezone.utc)
    base = {"distinct_id": "u", "timestamp": now, "uuid": "0190a4d2-0000-7000-8000-000000000000"}
    cases: list[tuple[events.Event, dict[str, object]]] = [
        (
            events.ExceptionEvent(exception_list=[{"type": "ValueError"}], level="error", **base),
            {"$exception_list": [{"type": "ValueError"}], "$exception_level": "error"},
        ),
        (
            events.AIGenerationEvent(
                provider="openai", model="gpt-4o", input_tokens=3, output_tokens=5, **base
            ),
            {"$ai_provider": "openai", "$ai_model": "gpt-4o", "$ai_input_tokens": 3, "$ai_output_tokens": 5},
        ),
        (events.AISpanEvent(trace_id="t", span_id="s", parent_id="p", **base), {"$ai_parent_id": "p"}),
        (events.AITraceEvent(trace_id="t", latency=1.5, **base), {"$ai_trace_id": "t", "$ai_latency": 1.5}),
        (
            events.FeatureFlagCalledEvent(flag="beta", response="test", **base),
            {"$feature_flag": "beta", "$feature_flag_response": "test", "$feature/beta": "test"},
        ),
    ]
    for ev, expected in cases:
        wire = events.to_wire(ev, {"environment": "prod"})
        assert wire["event"] == ev.name
        for k, v in expected.items():
            assert wire["properties"][k] == v
        assert None not in wire["properties"].values()
        assert wire["properties"]["environment"] == "prod"
        json.dumps(wire)  # wire form is JSON-safe


def test_models_validate() -> None:
    now = dt.datetime.now(dt.timezone.utc)
    with pytest.raises(ValueError):
        events.CustomEvent(name="", distinct_id="u", timestamp=now, uuid="x")
    with pytest.raises(ValueError):
        events.ExceptionEvent(name="not_exception", distinct_id="u", timestamp=now, uuid="x")  # type: ignore[arg-type]


def test_json_schema_covers_every_kind() -> None:
    schema = events.json_schema()
    assert set(schema) == {
        "custom", "identify", "group_identify", "exception", "ai_generation", "ai_embedding", "ai_span",
        "ai_trace", "feature_flag_called",
    }  # fmt: skip
    for kind, s in schema.items():
        assert s["type"] == "object"
        assert {"name", "distinct_id", "timestamp", "uuid"} <= set(s["properties"]), kind
    assert "exception_list" in schema["exception"]["properties"]
    assert "input_tokens" in schema["ai_generation"]["properties"]
    json.dumps(schema)
    assert obs.events.json_schema() == schema


def test_bad_event_name_is_dropped_and_counted_not_raised(memory: Mem) -> None:
    client, sink = memory
    assert obs.capture("", distinct_id="u") is None  # refused on the caller's thread: never an event
    assert obs.capture(None, distinct_id="u") is None  # type: ignore[arg-type]
    obs.capture("ok", distinct_id="u")
    assert not obs.flush(5)  # two events captured before it were lost
    assert [e["event"] for e in sink.events] == ["ok"]
    assert client.stats()["dropped_invalid"] == 2


def test_every_event_model_is_importable_from_obs_for_type_hints() -> None:
    from obs import AIGenerationEvent, Generation, Span  # noqa: F401 - the import is the test

    models = {m.__name__ for m in events.EVENT_KINDS.values()} | {"Event"}
    for name in models:
        assert getattr(obs, name) is getattr(events, name), name
        assert name in obs.__all__, name
    assert obs.Generation is obs._llm.Generation and obs.Span is obs._trace.Span
