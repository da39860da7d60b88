"""The worker's direct wire mapping (`Client._build`, `obs._kinds`) against the typed contract.

For every event kind, on generated records (properties of every shape `_serialize` handles, context frames,
personless ids, groups, timestamps as nanoseconds or the caller's datetimes, and each kind's typed fields
drawn from its model's own field types), the fast path's wire dict equals what the old path made: the kind's
pydantic model validated from the same inputs, then `obs.events.to_wire`. Where validating the model fails
(an event name the kind does not allow), the fast path drops the event too.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import types
import typing
import uuid
from collections.abc import Iterator
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from obs import _kinds, events
from obs._client import Client
from obs._config import load_settings
from obs._context import Frame
from obs._serialize import Problems, sanitize_properties
from obs._uuid import uuid7
from obs.sinks import MemorySink

# ------------------------------------------------------------------------------------------- strategies

_KEYS = st.text(min_size=1, max_size=8)
_JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**60), 2**60),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
_JSON = st.recursive(
    _JSON_LEAVES,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_KEYS, inner, max_size=3)),
    max_leaves=8,
)
# What callers hand in as properties: JSON, and what `_serialize` converts or drops.
_PROP_VALUES = st.one_of(
    _JSON,
    st.floats(),  # NaN and infinities are dropped
    st.decimals(allow_nan=True),
    st.datetimes(timezones=st.none() | st.just(dt.timezone.utc)),
    st.uuids(),
    st.frozensets(st.integers(0, 9), max_size=3),
    st.binary(max_size=6),
)
_PROPS = st.dictionaries(st.one_of(_KEYS, st.integers(0, 5)), _PROP_VALUES, max_size=5)
_TZ = st.sampled_from(
    [
        None,
        dt.timezone.utc,
        dt.timezone(dt.timedelta(hours=5, minutes=30)),
        dt.timezone(dt.timedelta(hours=-8)),
    ]
)
_NS = st.integers(0, 4_102_444_800 * 10**9)
_TIMESTAMPS = st.one_of(
    _NS,
    _NS.map(lambda n: n // 10**9 * 10**9),  # a whole second: isoformat() writes no fraction
    _NS.map(lambda n: n // 1000 * 1000),
    st.datetimes(min_value=dt.datetime(1970, 1, 2), max_value=dt.datetime(9998, 1, 1), timezones=_TZ),
)
_BASE_FIELDS = set(events.Event.model_fields)


def _for(annotation: Any) -> st.SearchStrategy[Any]:
    """Values of a model field's type (exactly that type: validation leaves them as they are)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any:
        return _JSON
    if annotation is type(None):
        return st.none()
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*[_for(a) for a in args])
    if origin is Literal:
        return st.sampled_from(args)
    if annotation is str:
        return st.text(max_size=12)
    if annotation is bool:
        return st.booleans()
    if annotation is int:
        return st.integers(-(2**40), 2**40)
    if annotation is float:
        return st.floats(allow_nan=False, allow_infinity=False)
    if origin is dict:
        return st.dictionaries(_KEYS, _JSON, max_size=3)
    if origin is list:
        return st.lists(_for(args[0]) if args else _JSON, max_size=3)
    raise AssertionError(f"no strategy for {annotation!r}")


def _typed_fields(model: type[events.Event]) -> st.SearchStrategy[dict[str, Any]]:
    """Any subset of the kind's own fields, each of its declared type."""
    own = {n: _for(f.annotation) for n, f in model.model_fields.items() if n not in _BASE_FIELDS}
    return st.fixed_dictionaries({}, optional=own)


def _raised(message: str) -> BaseException:
    try:
        raise ValueError(message)
    except ValueError as e:
        return e


_NON_EMPTY = st.text(min_size=1, max_size=10)
_EXTRA: dict[str, st.SearchStrategy[dict[str, Any] | None]] = {
    "custom": st.none(),
    "identify": st.fixed_dictionaries({"set": st.dictionaries(_KEYS, _PROP_VALUES, max_size=3)}),
    "group_identify": st.fixed_dictionaries(
        {
            "group_type": _NON_EMPTY,
            "group_key": _NON_EMPTY,
            "group_set": st.dictionaries(_KEYS, _JSON, max_size=3),
        }
    ),
    "exception": st.fixed_dictionaries(
        {
            "exc": st.text(max_size=20).map(_raised),
            "tb": st.none(),
            "stack": st.none(),
            "level": st.sampled_from(["error", "warning", "fatal"]),
            "fingerprint": st.none() | st.text(max_size=10),
            "mechanism": st.fixed_dictionaries({"type": st.just("generic"), "handled": st.booleans()}),
        }
    ),
    "feature_flag_called": st.fixed_dictionaries(
        {"flag": _NON_EMPTY, "response": st.none() | st.booleans() | st.text(max_size=8)}
    ),
}
for _kind in ("ai_generation", "ai_embedding", "ai_span", "ai_trace"):
    _EXTRA[_kind] = _typed_fields(events.EVENT_KINDS[_kind])


@st.composite
def records(draw: st.DrawFn) -> tuple[Any, ...]:
    kind = draw(st.sampled_from(sorted(events.EVENT_KINDS)))
    names = _kinds.KINDS[kind].names
    name = draw(st.sampled_from(sorted(names)) | _NON_EMPTY if names else _NON_EMPTY)
    frame = draw(
        st.none()
        | st.builds(
            Frame,
            st.none() | st.just("") | _NON_EMPTY,
            st.none() | _NON_EMPTY,
            st.dictionaries(_KEYS, _PROP_VALUES, max_size=3).map(types.MappingProxyType),
        )
    )
    groups = draw(st.none() | st.dictionaries(_KEYS, _NON_EMPTY | st.integers(), max_size=2))
    return (
        kind,
        name,
        draw(st.none() | _PROPS),
        draw(st.none() | st.just("") | _NON_EMPTY),
        draw(_TIMESTAMPS),
        uuid7(),
        groups,
        frame,
        "batch",
        draw(_EXTRA[kind]),
    )


# ------------------------------------------------------------------------------------------- the old path


def via_model(client: Client, rec: tuple[Any, ...]) -> dict[str, Any]:
    """The record → validate the kind's pydantic model → `to_wire` (what the worker did before)."""
    kind, name, props, distinct_id, ts, u, groups, frame, _route, extra = rec
    merged = props
    if frame is not None:
        merged = dict(frame.properties)
        if frame.session_id is not None:
            merged["$session_id"] = frame.session_id
        if distinct_id is None:
            distinct_id = frame.distinct_id
        if props:
            merged.update(props)
    problems = Problems()
    clean = sanitize_properties(merged, problems) if merged else {}
    personless = distinct_id is None or distinct_id == ""
    if personless:
        ai_trace = extra.get("trace_id") if kind.startswith("ai_") and extra else None
        distinct_id = ai_trace or u
    fields = client._fields(kind, extra, problems) if extra else {}
    groups_out = None
    if groups:
        groups_out = {str(k): str(v) for k, v in groups.items()} or None
    if isinstance(ts, int):
        timestamp = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(microseconds=ts // 1000)
    else:
        timestamp = ts
    event = events.EVENT_KINDS[kind].__pydantic_validator__.validate_python(
        {
            "name": name,
            "distinct_id": str(distinct_id),
            "properties": clean,
            "timestamp": timestamp,
            "uuid": u,
            "groups": groups_out,
            "personless": personless,
            **fields,
        }
    )
    return events.to_wire(event, client._super)


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    c = Client(load_settings(api_key="phc_test", sinks=[MemorySink()], llm_payloads=True, environment="prod"))
    yield c
    c.shutdown(5)


def _exact(wire: dict[str, Any]) -> str:
    """JSON with sorted keys: equal only when every value is equal and of the same JSON type (1 ≠ 1.0)."""
    return json.dumps(wire, sort_keys=True)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rec=records(), super_props=st.dictionaries(_KEYS, _JSON, max_size=3))
def test_fast_path_equals_the_model_and_to_wire(
    client: Client, rec: tuple[Any, ...], super_props: Any
) -> None:
    client._set_super({"environment": "prod", **super_props})
    try:
        expected: dict[str, Any] | None = via_model(client, rec)
    except ValueError:  # pydantic's ValidationError: the model refuses what it was given
        expected = None
    got = client._build(rec)
    if expected is None:
        assert got is None
    else:
        assert got is not None
        assert _exact(got) == _exact(expected)


@pytest.mark.parametrize("kind", sorted(events.EVENT_KINDS))
def test_every_kind_of_the_contract_is_in_the_registry(kind: str) -> None:
    spec = _kinds.KINDS[kind]
    model = events.EVENT_KINDS[kind]
    own = {n for n in model.model_fields if n not in _BASE_FIELDS}
    assert set(spec.fields) == own
    name = model.model_fields["name"].annotation
    assert spec.names == (frozenset(typing.get_args(name)) if typing.get_origin(name) is Literal else None)


def test_a_timestamp_from_nanoseconds_is_written_as_isoformat_writes_it() -> None:
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    for ns in (0, 1_700_000_000_000_000_000, 1_700_000_000_123_456_789, 1_700_000_000_000_001_000):
        assert _kinds.iso_from_ns(ns) == (epoch + dt.timedelta(microseconds=ns // 1000)).isoformat()


def test_a_decimal_property_is_built_the_same_both_ways(client: Client) -> None:
    rec = (
        "custom",
        "e",
        {"d": decimal.Decimal("1.5"), "u": uuid.UUID(int=1)},
        "u1",
        10**18,
        uuid7(),
        None,
        None,
        "batch",
        None,
    )
    assert _exact(client._build(rec) or {}) == _exact(via_model(client, rec))


def test_timestamps_of_a_burst_are_written_as_isoformat_writes_them(client: Client) -> None:
    """`_build_many` formats many timestamps of one second and millisecond from its caches: across
    microsecond, millisecond and second boundaries (the first microsecond of a second has no fraction)."""
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    base = 1_700_000_000_000_000_000
    stamps = [base - 1500, base, base + 999, base + 1000, base + 1001, base + 999_999, base + 1_000_000]
    stamps += [base + 1_000_000 + step * 7_919 for step in range(400)]  # through many milliseconds
    stamps += [base + 999_999_999, base + 1_000_000_000, base + 1_000_000_999, base + 1_000_001_000, base]
    records = [("custom", "e", None, "u", ns, uuid7(), None, None, "batch", None) for ns in stamps]
    built, dropped = client._build_many(records)
    assert dropped == 0
    assert [w["timestamp"] for w in built] == [
        (epoch + dt.timedelta(microseconds=ns // 1000)).isoformat() for ns in stamps
    ]
