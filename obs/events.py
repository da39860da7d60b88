"""Typed events: one pydantic model per kind, and the one mapping from a model to PostHog's wire event.

The worker builds these from what the hot path queued; sinks receive the wire form (`to_wire`).
`json_schema()` exports every kind's JSON Schema for documentation and downstream validation.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from ._kinds import iso
from ._version import LIB, __version__

# What obs adds to every event besides `environment`/`release`; readable outputs (console, demo) hide them.
SDK_PROPERTIES = frozenset({"$lib", "$lib_version", "$geoip_disable", "$is_server"})


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
    """What every LLM-analytics event has: where it sits in a trace, how long it took, how it ended."""

    trace_id: str | None = Field(None, description="`$ai_trace_id`: the trace this belongs to.")
    span_id: str | None = Field(None, description="`$ai_span_id`: this event's own id.")
    parent_id: str | None = Field(None, description="`$ai_parent_id`: the enclosing span, if any.")
    span_name: str | None = Field(None, description="`$ai_span_name`.")
    latency: float | None = Field(None, description="`$ai_latency`, seconds.")
    is_error: bool | None = Field(None, description="`$ai_is_error`.")
    error: str | None = Field(
        None,
        description="`$ai_error`: the exception's text, scrubbed; without its message when payloads are off.",
    )

    def typed_properties(self) -> dict[str, Any]:
        return {
            "$ai_trace_id": self.trace_id,
            "$ai_span_id": self.span_id,
            "$ai_parent_id": self.parent_id,
            "$ai_span_name": self.span_name,
            "$ai_latency": self.latency,
            "$ai_is_error": self.is_error,
            "$ai_error": self.error,
            "$ai_lib": LIB,
            "$ai_lib_version": __version__,
        }


class AIGenerationEvent(_AIEvent):
    """`$ai_generation`: one LLM call, in PostHog's LLM-analytics schema.

    Token counts are absent (not zero) when the provider reported none. ``input_tokens`` follows the
    provider: OpenAI's includes cached tokens, Anthropic's does not (``cache_reporting_exclusive``).
    ``input`` / ``output_choices`` are set only with ``POSTHOG_LLM_PAYLOADS=1``.
    """

    kind: ClassVar[str] = "ai_generation"
    name: Literal["$ai_generation", "$ai_embedding"] = "$ai_generation"
    provider: str | None = None
    model: str | None = None
    model_parameters: dict[str, Any] | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_creation_5m_input_tokens: int | None = Field(
        None, description="Anthropic cache writes, 5-minute TTL."
    )
    cache_creation_1h_input_tokens: int | None = Field(
        None, description="Anthropic cache writes, 1-hour TTL."
    )
    cache_reporting_exclusive: bool | None = None
    reasoning_tokens: int | None = None
    tokens_source: str | None = Field(
        None, description="`sdk` (reported by the provider) or `passthrough` (set by the caller)."
    )
    time_to_first_token: float | None = Field(None, description="Seconds, streaming only.")
    stream: bool | None = None
    stream_completed: bool | None = Field(
        None, description="False when a stream was closed or cancelled early."
    )
    http_status: int | None = None
    base_url: str | None = None
    stop_reason: str | None = None
    service_tier: str | None = Field(None, description="The tier that served the call, from the response.")
    web_search_count: int | None = Field(None, description="`$ai_web_search_count`: web searches made.")
    usage: dict[str, Any] | None = Field(None, description="`$ai_usage`: the provider's usage block as sent.")
    tools: list[Any] | None = None
    input: Any = None
    instructions: Any = None
    output_choices: Any = None
    input_cost_usd: float | None = None
    output_cost_usd: float | None = None
    total_cost_usd: float | None = None

    def typed_properties(self) -> dict[str, Any]:
        return {
            **super().typed_properties(),
            "$ai_provider": self.provider,
            "$ai_model": self.model,
            "$ai_model_parameters": self.model_parameters,
            "$ai_input_tokens": self.input_tokens,
            "$ai_output_tokens": self.output_tokens,
            "$ai_cache_read_input_tokens": self.cache_read_input_tokens,
            "$ai_cache_creation_input_tokens": self.cache_creation_input_tokens,
            "$ai_cache_creation_5m_input_tokens": self.cache_creation_5m_input_tokens,
            "$ai_cache_creation_1h_input_tokens": self.cache_creation_1h_input_tokens,
            "$ai_cache_reporting_exclusive": self.cache_reporting_exclusive,
            "$ai_reasoning_tokens": self.reasoning_tokens,
            "$ai_tokens_source": self.tokens_source,
            "$ai_time_to_first_token": self.time_to_first_token,
            "$ai_stream": self.stream,
            "$ai_stream_completed": self.stream_completed,
            "$ai_http_status": self.http_status,
            "$ai_base_url": self.base_url,
            "$ai_stop_reason": self.stop_reason,
            "$ai_service_tier": self.service_tier,
            "$ai_web_search_count": self.web_search_count,
            "$ai_usage": self.usage,
            "$ai_tools": self.tools,
            "$ai_input": self.input,
            "$ai_instructions": self.instructions,
            "$ai_output_choices": self.output_choices,
            "$ai_input_cost_usd": self.input_cost_usd,
            "$ai_output_cost_usd": self.output_cost_usd,
            "$ai_total_cost_usd": self.total_cost_usd,
        }


class AIEmbeddingEvent(AIGenerationEvent):
    """`$ai_embedding`: one embeddings call (no output tokens or choices)."""

    kind: ClassVar[str] = "ai_embedding"
    name: Literal["$ai_generation", "$ai_embedding"] = "$ai_embedding"


class AISpanEvent(_AIEvent):
    """`$ai_span`: one step (a tool call, retrieval, chain step) inside a trace."""

    kind: ClassVar[str] = "ai_span"
    name: Literal["$ai_span"] = "$ai_span"
    input_state: Any = Field(None, description="`$ai_input_state`; only with `POSTHOG_LLM_PAYLOADS=1`.")
    output_state: Any = Field(None, description="`$ai_output_state`; only with `POSTHOG_LLM_PAYLOADS=1`.")

    def typed_properties(self) -> dict[str, Any]:
        return {
            **super().typed_properties(),
            "$ai_input_state": self.input_state,
            "$ai_output_state": self.output_state,
        }


class AITraceEvent(AISpanEvent):
    """`$ai_trace`: the whole traced operation, with a summary of what happened inside it."""

    kind: ClassVar[str] = "ai_trace"
    name: Literal["$ai_trace"] = "$ai_trace"  # type: ignore[assignment]
    generations: int | None = Field(None, description="`$ai_trace_generations`: LLM calls in the trace.")
    input_tokens: int | None = Field(None, description="`$ai_trace_input_tokens`.")
    output_tokens: int | None = Field(None, description="`$ai_trace_output_tokens`.")
    total_cost_usd: float | None = Field(None, description="`$ai_trace_cost_usd`, of the priced calls.")
    tool_calls: int | None = Field(None, description="`$ai_trace_tool_calls`.")
    errors: int | None = Field(None, description="`$ai_trace_errors`: failed calls and spans inside.")

    def typed_properties(self) -> dict[str, Any]:
        return {
            **super().typed_properties(),
            "$ai_trace_generations": self.generations,
            "$ai_trace_input_tokens": self.input_tokens,
            "$ai_trace_output_tokens": self.output_tokens,
            "$ai_trace_cost_usd": self.total_cost_usd,
            "$ai_trace_tool_calls": self.tool_calls,
            "$ai_trace_errors": self.errors,
        }


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
        AIEmbeddingEvent,
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
        "timestamp": iso(event.timestamp),
        "uuid": event.uuid,
    }


def json_schema() -> dict[str, Any]:
    """JSON Schema of every event kind, keyed by kind (`custom`, `exception`, `ai_generation`, …)."""
    return {kind: model.model_json_schema() for kind, model in EVENT_KINDS.items()}


__all__ = [
    "EVENT_KINDS",
    "AIEmbeddingEvent",
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
