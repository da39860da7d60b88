"""The registry of event kinds, and the direct mapping of a queued record to PostHog's wire event.

The core (client and worker) knows records and this registry, not features: each feature module registers
the worker-side builder of its kinds (``register``) when it is imported — errors (`_exceptions`), LLM
calls, spans and traces (`_llm`). A builder turns a record's ``extra`` into the kind's typed fields (the
names of its model's fields in `obs.events`); kinds without one (identify, group identify, flag checks)
have each value of their ``extra`` made JSON-safe. A feature that keeps state per client (`_flags`: the
client's ``flags``) registers a factory for it too (``register_part``).

`typed_properties` maps those fields to their `$`-properties by the tables below (``KINDS``), and
`Client._build` puts them, with the event's common parts and a timestamp formatted by `iso_from_ns`,
straight into the wire dict, without building the pydantic model: the models in `obs.events` stay the
typed contract (documentation, JSON Schema), and tests/test_wire_fastpath.py proves, for every kind, that
the result equals validating the model and calling `obs.events.to_wire`. Nothing here imports pydantic.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ._version import LIB, __version__

if TYPE_CHECKING:
    from ._config import Settings
    from ._serialize import Problems

# kind → what builds its typed fields from a record's ``extra``; see `register`.
Builder = Callable[[dict[str, Any], "Problems"], dict[str, Any]]
Factory = Callable[["Settings", Callable[[str], str]], Builder]
_factories: dict[str, Factory] = {}

# The typed fields of every kind, by the `$`-property each is sent as (the models' `typed_properties`).
_AI = {
    "trace_id": "$ai_trace_id",
    "span_id": "$ai_span_id",
    "parent_id": "$ai_parent_id",
    "span_name": "$ai_span_name",
    "latency": "$ai_latency",
    "is_error": "$ai_is_error",
    "error": "$ai_error",
}
_AI_CONSTANTS = {"$ai_lib": LIB, "$ai_lib_version": __version__}
_GENERATION = {
    **_AI,
    **{
        f: f"$ai_{f}"
        for f in (
            "provider",
            "model",
            "model_parameters",
            "input_tokens",
            "output_tokens",
            "cache_read_input_tokens",
            "cache_creation_input_tokens",
            "cache_creation_5m_input_tokens",
            "cache_creation_1h_input_tokens",
            "cache_reporting_exclusive",
            "reasoning_tokens",
            "tokens_source",
            "time_to_first_token",
            "stream",
            "stream_completed",
            "http_status",
            "base_url",
            "stop_reason",
            "service_tier",
            "web_search_count",
            "usage",
            "tools",
            "input",
            "instructions",
            "output_choices",
            "input_cost_usd",
            "output_cost_usd",
            "total_cost_usd",
        )
    },
}
_SPAN = {**_AI, "input_state": "$ai_input_state", "output_state": "$ai_output_state"}
_TRACE = {
    **_SPAN,
    "generations": "$ai_trace_generations",
    "input_tokens": "$ai_trace_input_tokens",
    "output_tokens": "$ai_trace_output_tokens",
    "total_cost_usd": "$ai_trace_cost_usd",
    "tool_calls": "$ai_trace_tool_calls",
    "errors": "$ai_trace_errors",
}


class Kind:
    """What the wire mapping needs to know of one kind: its fixed names, its fields, its constants."""

    __slots__ = ("constants", "fields", "names", "required")

    def __init__(
        self,
        names: frozenset[str] | None,
        fields: Mapping[str, str],
        constants: Mapping[str, Any] | None = None,
        required: tuple[str, ...] = (),
    ) -> None:
        self.names = names  # the event names the kind allows (None: any non-empty one)
        self.fields = fields  # field → `$`-property
        self.constants = constants or {}  # `$`-properties every event of the kind carries
        self.required = required  # non-empty str fields, and dict fields sent even when empty


_AI_GEN_NAMES = frozenset({"$ai_generation", "$ai_embedding"})
KINDS: dict[str, Kind] = {
    "custom": Kind(None, {}),
    "identify": Kind(frozenset({"$identify"}), {"set": "$set"}, required=("set",)),
    "group_identify": Kind(
        frozenset({"$groupidentify"}),
        {"group_type": "$group_type", "group_key": "$group_key", "group_set": "$group_set"},
        required=("group_type", "group_key", "group_set"),
    ),
    "exception": Kind(
        frozenset({"$exception"}),
        {
            "exception_list": "$exception_list",
            "level": "$exception_level",
            "fingerprint": "$exception_fingerprint",
        },
        required=("exception_list",),
    ),
    "ai_generation": Kind(_AI_GEN_NAMES, _GENERATION, _AI_CONSTANTS),
    "ai_embedding": Kind(_AI_GEN_NAMES, _GENERATION, _AI_CONSTANTS),
    "ai_span": Kind(frozenset({"$ai_span"}), _SPAN, _AI_CONSTANTS),
    "ai_trace": Kind(frozenset({"$ai_trace"}), _TRACE, _AI_CONSTANTS),
    "feature_flag_called": Kind(
        frozenset({"$feature_flag_called"}),
        {"flag": "$feature_flag", "response": "$feature_flag_response"},
        required=("flag",),
    ),
}
# Required fields that are containers (sent empty when not given); the other required ones are non-empty str.
_CONTAINERS: dict[str, type[dict[str, Any]] | type[list[Any]]] = {
    "set": dict,
    "group_set": dict,
    "exception_list": list,
}
_MISSING: Any = object()


# Per-client parts a feature adds to every enabled client: attribute name → factory(client).
_parts: dict[str, Callable[[Any], Any]] = {}

# The feature modules that register here when imported. The registry imports them by name the first time
# a client asks (however that client was made), the way a plugin registry loads its entry points: the core
# never imports a feature statically, and a process that builds no client never loads them.
FEATURES = ("obs._exceptions", "obs._llm", "obs._flags")
_loaded = False


def _load_features() -> None:
    global _loaded
    if not _loaded:
        import importlib

        for name in FEATURES:
            importlib.import_module(name)
        _loaded = True


def register_part(name: str, factory: Callable[[Any], Any]) -> None:
    """Called by a feature module at import: every client (and a forked child's) gets ``factory(client)``
    as its attribute ``name``; a part with a ``close()`` is closed when the client shuts down."""
    _parts[name] = factory


def client_parts() -> dict[str, Callable[[Any], Any]]:
    _load_features()
    return dict(_parts)


def register(kind: str, factory: Factory) -> None:
    """Called by a feature module at import: ``factory(settings, scrub)`` makes the client's builder."""
    if kind not in KINDS:
        raise ValueError(f"unknown event kind {kind!r}")
    _factories[kind] = factory


def builder(kind: str, settings: Settings, scrub: Callable[[str], str]) -> Builder | None:
    """A fresh builder of ``kind`` for one client; None for kinds whose extra is taken as it is."""
    _load_features()
    factory = _factories.get(kind)
    return factory(settings, scrub) if factory is not None else None


def typed_properties(kind: Kind, fields: Mapping[str, Any]) -> dict[str, Any]:
    """The `$`-properties of ``fields`` (None omitted); an unknown or ill-typed field raises, as the model's
    validation would."""
    names = kind.fields
    out: dict[str, Any] = {}
    for k, v in fields.items():
        if v is not None:
            out[names[k]] = v  # KeyError: a field the kind does not have
    for k in kind.required:
        v = fields.get(k, _MISSING)
        if k in _CONTAINERS:
            if v is _MISSING:
                out[names[k]] = _CONTAINERS[k]()  # the model's default
            elif type(v) is not _CONTAINERS[k]:
                raise TypeError(f"{k} must be a {_CONTAINERS[k].__name__}, not {type(v).__name__}")
        elif type(v) is not str or not v:
            raise TypeError(f"{k} must be a non-empty str")
    if "response" in fields and "flag" in fields:  # `$feature/<flag>`, as the flag model sends it
        response = fields["response"]
        if response is not None:
            out[f"$feature/{fields['flag']}"] = response
    if kind.constants:
        out.update(kind.constants)
    return out


# ------------------------------------------------------------------------------------------- timestamps

_UTC = dt.timezone.utc
_ZERO = dt.timedelta(0)
# The start (ns) of the last second formatted, and its text: one tuple, so threads never mix two seconds.
_last: tuple[int, str] = (-(2**63), "")


def iso_from_ns(ns: int) -> str:
    """``ns`` since the epoch as `datetime.isoformat()` writes that instant in UTC, to the microsecond.

    The seconds part is formatted once per second; events in the same second only add their fraction.
    """
    global _last
    start, prefix = _last
    into = ns - start
    if not 0 <= into < 1_000_000_000:
        start = ns - ns % 1_000_000_000
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(start // 1_000_000_000))
        _last = (start, prefix)
        into = ns - start
    us = into // 1000
    return f"{prefix}.{us:06}+00:00" if us else f"{prefix}+00:00"


def current_second() -> tuple[int, str]:
    """(the start in ns of the second `iso_from_ns` formatted last, its text): for a caller that caches
    finer parts of it (`Client._build_many`'s millisecond)."""
    return _last


def iso(ts: dt.datetime) -> str:
    """A caller's datetime as the same instant in UTC (naive is taken as UTC)."""
    if ts.tzinfo is None:
        return ts.replace(tzinfo=_UTC).isoformat()
    return (ts if ts.utcoffset() == _ZERO else ts.astimezone(_UTC)).isoformat()
