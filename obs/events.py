"""Typed events: one pydantic model per kind, and the one mapping from a model to PostHog's wire event.

The worker builds these from what the hot path queued; sinks receive the wire form (`to_wire`).
`json_schema()` exports every kind's JSON Schema for documentation and downstream validation.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from ._version import __version__

LIB = "obs"
# What obs adds to every event besides `environment`/`release`; readable outputs (console, demo) hide them.
SDK_PROPERTIES = frozenset({"$lib", "$lib_version", "$geoip_disable", "$is_server"})
_UTC = dt.timezone.utc
_ZERO = dt.timedelta(0)


class Event(BaseModel):
    """What every event has. ``properties`` are already JSON-safe when the worker builds one."""

    model_config = ConfigDict(extra="forbid", validate_assignment=False)

    kind: ClassVar[str] = "custom"
    name: str = Field(min_length=1, description="PostHog event name, e.g. `signed_up` or `$exception`.")
    distinct_id: str = Field(min_length=1, description="Who the event belongs to.")
    properties: dict[str, Any] = Field(default_factory=dict)
    timestamp: dt.datetime = Field(
        description="When it happened. Sent as the same instant in UTC; a naive datetime is taken as UTC."
    )
    uuid: str = Field(description="Event id (UUIDv7 unless the caller supplied one); dedupes retries.")
    groups: dict[str, str] | None = Field(None, description="Group type → group key, sent as `$groups`.")
    personless: bool = Field(
        False, description="No person behind the id: sent with `$process_person_profile: false`."
    )

    def typed_properties(self) -> dict[str, Any]:
        """The `$`-properties this kind's typed fields map to; overridden per kind."""
        return {}


class CustomEvent(Event):
    """A product event from `obs.capture` or `@track`."""

    kind: ClassVar[str] = "custom"


class IdentifyEvent(Event):
    """`$identify`: sets person properties (`$set`) on `distinct_id`."""

    kind: ClassVar[str] = "identify"
    name: Literal["$identify"] = "$identify"
    set: dict[str, Any] = Field(default_factory=dict, description="Person properties, sent as `$set`.")

    def typed_properties(self) -> dict[str, Any]:
        return {"$set": self.set}


class GroupIdentifyEvent(Event):
    """`$groupidentify`: sets properties on a group (company, team, …)."""

    kind: ClassVar[str] = "group_identify"
    name: Literal["$groupidentify"] = "$groupidentify"
    group_type: str = Field(min_length=1)
    group_key: str = Field(min_length=1)
    group_set: dict[str, Any] = Field(default_factory=dict)

    def typed_properties(self) -> dict[str, Any]:
        return {"$group_type": self.group_type, "$group_key": self.group_key, "$group_set": self.group_set}


class ExceptionEvent(Event):
    """`$exception` in PostHog's error-tracking format."""

    kind: ClassVar[str] = "exception"
    name: Literal["$exception"] = "$exception"
    exception_list: list[dict[str, Any]] = Field(default_factory=list)
    level: str | None = None
    fingerprint: str | None = None

    def typed_properties(self) -> dict[str, Any]:
        return {
            "$exception_list": self.exception_list,
            "$exception_level": self.level,
            "$exception_fingerprint": self.fingerprint,
        }


class _AIEvent(Event):
    trace_id: str | None = None
    span_id: str | None = None
    parent_id: str | None = None
    span_name: str | None = None
    latency: float | None = Field(None, description="Seconds.")
    is_error: bool | None = None
    error: str | None = None

    def typed_properties(self) -> dict[str, Any]:
        return {
            "$ai_trace_id": self.trace_id,
            "$ai_span_id": self.span_id,
            "$ai_parent_id": self.parent_id,
            "$ai_span_name": self.span_name,
            "$ai_latency": self.latency,
            "$ai_is_error": self.is_error,
            "$ai_error": self.error,
        }


class AIGenerationEvent(_AIEvent):
    """`$ai_generation`: one LLM call."""

    kind: ClassVar[str] = "ai_generation"
    name: Literal["$ai_generation"] = "$ai_generation"
    provider: str | None = None
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None

    def typed_properties(self) -> dict[str, Any]:
        return {
            **super().typed_properties(),
            "$ai_provider": self.provider,
            "$ai_model": self.model,
            "$ai_input_tokens": self.input_tokens,
            "$ai_output_tokens": self.output_tokens,
        }


class AISpanEvent(_AIEvent):
    """`$ai_span`: one step (tool call, retrieval, chain) inside a trace."""

    kind: ClassVar[str] = "ai_span"
    name: Literal["$ai_span"] = "$ai_span"


class AITraceEvent(_AIEvent):
    """`$ai_trace`: the whole traced operation."""

    kind: ClassVar[str] = "ai_trace"
    name: Literal["$ai_trace"] = "$ai_trace"


class FeatureFlagCalledEvent(Event):
    """`$feature_flag_called`: which variant a user was shown."""

    kind: ClassVar[str] = "feature_flag_called"
    name: Literal["$feature_flag_called"] = "$feature_flag_called"
    flag: str = Field(min_length=1)
    response: bool | str | None = None

    def typed_properties(self) -> dict[str, Any]:
        return {
            "$feature_flag": self.flag,
            "$feature_flag_response": self.response,
            f"$feature/{self.flag}": self.response,
        }


EVENT_KINDS: dict[str, type[Event]] = {
    m.kind: m
    for m in (
        CustomEvent,
        IdentifyEvent,
        GroupIdentifyEvent,
        ExceptionEvent,
        AIGenerationEvent,
        AISpanEvent,
        AITraceEvent,
        FeatureFlagCalledEvent,
    )
}


def to_wire(event: Event, super_properties: dict[str, Any] | None = None) -> dict[str, Any]:
    """The PostHog wire form of ``event``.

    Precedence, lowest first: super-properties (environment, release), the event's own properties, the
    kind's typed fields, then `$lib`/`$lib_version`. Properties whose value is None are omitted.
    """
    props: dict[str, Any] = dict(super_properties) if super_properties else {}
    props.update({k: v for k, v in event.properties.items() if v is not None})
    typed = event.typed_properties()
    if typed:
        props.update({k: v for k, v in typed.items() if v is not None})
    if event.groups:
        props["$groups"] = event.groups
    if event.personless:
        props["$process_person_profile"] = False
    props["$lib"] = LIB
    props["$lib_version"] = __version__
    return {
        "event": event.name,
        "distinct_id": event.distinct_id,
        "properties": props,
        "timestamp": _utc_iso(event.timestamp),
        "uuid": event.uuid,
    }


def _utc_iso(ts: dt.datetime) -> str:
    if ts.tzinfo is None:
        return ts.replace(tzinfo=_UTC).isoformat()
    return (ts if ts.utcoffset() == _ZERO else ts.astimezone(_UTC)).isoformat()


def json_schema() -> dict[str, Any]:
    """JSON Schema of every event kind, keyed by kind (`custom`, `exception`, `ai_generation`, …)."""
    return {kind: model.model_json_schema() for kind, model in EVENT_KINDS.items()}


__all__ = [
    "EVENT_KINDS",
    "AIGenerationEvent",
    "AISpanEvent",
    "AITraceEvent",
    "CustomEvent",
    "Event",
    "ExceptionEvent",
    "FeatureFlagCalledEvent",
    "GroupIdentifyEvent",
    "IdentifyEvent",
    "json_schema",
    "to_wire",
]
