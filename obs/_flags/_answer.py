"""Reading a ``/flags`` answer as posthog-python reads it: v4 records, v2 records and the legacy maps."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from ._result import FlagValue, Result


class QuotaLimited(ValueError):
    """The answer says feature flags are quota limited for the project."""


class _Malformed(ValueError):
    """A known field of a flag record has the wrong JSON type."""


class Answer:
    """One ``/flags`` answer read as posthog-python reads it: each flag's Result (server-marked failures
    included, ``failed``), the flags whose records could not be read (``malformed``: why), and what the
    answer says about itself."""

    __slots__ = ("errors_while_computing", "evaluated_at", "malformed", "records", "request_id")

    def __init__(self, data: dict[str, Any]) -> None:
        self.records: dict[str, Result] = {}
        self.malformed: dict[str, str] = {}
        self.request_id = data.get("requestId")
        self.evaluated_at = data.get("evaluatedAt")
        self.errors_while_computing = bool(data.get("errorsWhileComputingFlags"))


def read_answer(data: Any) -> Answer:
    """Every flag of a ``/flags`` answer: the v4 records (with a typed ``value``), the v2 records before
    them (``enabled``/``variant``), or the legacy ``featureFlags``/``featureFlagPayloads`` maps — read to
    the same Results. ValueError for an answer that is not one (QuotaLimited when flags are quota limited);
    a record that cannot be read fails only its own flag."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    quota = data.get("quotaLimited")
    if isinstance(quota, list) and "feature_flags" in quota:
        raise QuotaLimited("feature flags are quota limited")
    answer = Answer(data)
    if "flags" in data:
        flags = data["flags"]
        if not isinstance(flags, dict):
            raise ValueError("`flags` is not an object")
        for key, raw in flags.items():
            try:
                answer.records[key] = _record(raw)
            except _Malformed as e:
                answer.malformed[key] = f"flag {key!r}: its record has a malformed `{e}`"
    elif isinstance(data.get("featureFlags"), dict):
        payloads = data.get("featureFlagPayloads")
        payloads = payloads if isinstance(payloads, dict) else {}
        for key, value in data["featureFlags"].items():
            if isinstance(value, (bool, str)):
                answer.records[key] = Result(value, _payload(payloads.get(key)), False, {})
            else:
                answer.malformed[key] = f"flag {key!r} has the value {value!r}, not a bool or a variant"
    else:
        raise ValueError("no `flags` in the answer")
    return answer


def parse(data: Any, key: str) -> Result:
    """``key``'s Result from a ``/flags`` answer, with the answer's own `$feature_flag_called` properties
    (request id, evaluation time, `$feature_flag_error`) as posthog-python sends them; value None: no such
    flag. ValueError when the answer does not tell (quota limited, errors while computing it, a record that
    failed or cannot be read, a bad shape)."""
    answer = read_answer(data)
    record = answer.records.get(key)
    if record is None:
        if key in answer.malformed:
            raise ValueError(answer.malformed[key])
        if answer.errors_while_computing:
            raise ValueError("PostHog reported errors while computing flags")
        return Result(None, None, False, {})  # no such flag: the caller's default, cached like any answer
    if record.failed:
        raise ValueError(f"flag {key!r} failed to evaluate")
    meta = dict(record.meta)
    if answer.request_id:
        meta["$feature_flag_request_id"] = answer.request_id
    if answer.evaluated_at:
        meta["$feature_flag_evaluated_at"] = answer.evaluated_at
    if answer.errors_while_computing:
        meta["$feature_flag_error"] = "errors_while_computing_flags"
    return Result(record.value, record.payload, False, meta, record.attribution)


def _record(raw: Any) -> Result:
    """One flag record. v4 records carry a typed ``value`` (a string is the variant; a number or object
    is on, with itself as the payload; null is off); older ones ``enabled`` and ``variant``. Known fields
    are type-checked as posthog-python does (_Malformed names the first wrong one)."""
    if not isinstance(raw, dict):
        raise _Malformed("record")
    _typed(raw.get("key"), "key", str)
    typed = "value" in raw
    failed = _typed(raw.get("failed"), "failed", bool) is True
    reason = _typed(raw.get("reason"), "reason", dict) or {}
    code = _typed(reason.get("code"), "reason.code", str)
    _int(reason.get("condition_index"), "reason.condition_index")
    description = _typed(reason.get("description"), "reason.description", str)
    metadata = _typed(raw.get("metadata"), "metadata", dict)
    payload: Any = None
    if typed:
        value = None if failed else _value(raw.get("value"))
        enabled = value is not None and value is not False
        variant = value if isinstance(value, str) else None
        if enabled and not isinstance(value, (bool, str)):
            payload = value  # a number or an object is its own payload
    else:
        enabled = _typed(raw.get("enabled"), "enabled", bool) is True
        variant = _typed(raw.get("variant"), "variant", str)
    # An empty metadata object counts for a v4 record only (posthog-python's FlagMetadata vs legacy).
    full = metadata is not None if typed else bool(metadata)
    meta: dict[str, Any] = {}
    if description:
        meta["$feature_flag_reason"] = description
    attribution = None
    if metadata is not None:
        flag_id = _int(metadata.get("id"), "metadata.id")
        version = _int(metadata.get("version"), "metadata.version")
        _typed(metadata.get("description"), "metadata.description", str)
        has_experiment = _typed(metadata.get("has_experiment"), "metadata.has_experiment", bool)
        if payload is None and not failed:
            payload = _payload(metadata.get("payload"))
        if full:
            if version:
                meta["$feature_flag_version"] = version
            if flag_id:
                meta["$feature_flag_id"] = flag_id
            if has_experiment is not None:
                meta["$feature_flag_has_experiment"] = has_experiment
        if typed:
            config_version = _int(metadata.get("config_version"), "metadata.config_version")
            rule_type = _typed(metadata.get("rule_type"), "metadata.rule_type", str)
            rule_id = _typed(metadata.get("rule_id"), "metadata.rule_id", str)
            variant_key = _typed(metadata.get("variant_key"), "metadata.variant_key", str)
            _typed(metadata.get("forced_variant"), "metadata.forced_variant", bool)
            _int(metadata.get("experiment_id"), "metadata.experiment_id")
            if config_version == 2:
                attribution = _attribution(code or None, failed, rule_id, rule_type, variant_key)
                meta.pop("$feature_flag_reason", None)  # the reason code replaces it
                meta.update(_attribution_properties(attribution))
    flag_value: FlagValue | None = None if failed else (variant or enabled)
    return Result(flag_value, payload, False, meta, attribution, failed)


# The reason codes of a config version 2 record that report the rule behind the result, and the rule
# types each allows (posthog-python's cross-SDK contract); any other code reports no rule.
_EXPERIMENT_SPLIT = "experiment_split"
_RULE_TYPES: dict[str, frozenset[str]] = {
    "targeting_match": frozenset({"targeted_release", "percentage_rollout"}),
    _EXPERIMENT_SPLIT: frozenset({"experiment"}),
    "rollout_miss": frozenset({"percentage_rollout", "experiment"}),
    "experiment_paused": frozenset({"experiment"}),
    "holdout": frozenset({"experiment"}),
}
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _attribution(
    code: str | None, failed: bool, rule_id: Any, rule_type: Any, variant_key: Any
) -> tuple[Any, ...]:
    """``(reason_code, rule_id, rule_type, variant_key)``: a rule only for a reason that allows its type
    (with a UUID rule id), a variant only for a complete experiment split."""
    allowed = _RULE_TYPES.get(code or "")
    if failed or allowed is None or not (isinstance(rule_id, str) and _UUID.fullmatch(rule_id)):
        return (code, None, None, None)
    if rule_type not in allowed:
        return (code, None, None, None)
    if code != _EXPERIMENT_SPLIT:
        return (code, rule_id, rule_type, None)
    if not isinstance(variant_key, str):
        return (code, None, None, None)
    return (code, rule_id, rule_type, variant_key)


def _attribution_properties(attribution: tuple[Any, ...]) -> dict[str, Any]:
    names = ("reason_code", "rule_id", "rule_type", "variant_key")
    props: dict[str, Any] = {"$feature_flag_config_version": 2}
    props.update({f"$feature_flag_{n}": v for n, v in zip(names, attribution, strict=True) if v is not None})
    return props


def _typed(value: Any, field: str, expected: type) -> Any:
    if value is None or isinstance(value, expected):
        return value
    raise _Malformed(field)


def _int(value: Any, field: str) -> int | None:
    """JSON has one number type, so an integral float such as 2.0 is an integer."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    raise _Malformed(field)


def _value(value: Any) -> Any:
    if value is None or isinstance(value, (bool, str, dict, int)):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    raise _Malformed("value")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _payload(raw: Any) -> Any:
    """Payloads travel JSON-encoded; decoded as posthog-python does (None when not JSON, NaN included)."""
    if isinstance(raw, str):
        try:
            return json.loads(raw, parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            return None
    return raw
