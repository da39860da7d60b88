"""Feature flags: evaluation, its short-lived cache, `$feature_flag_called`, snapshots, and the flags a
context saw.

Evaluation order for one flag and user: the cache (``OBS_FLAGS_CACHE_TTL``), then local evaluation when a
personal or secure key is set (posthog-python's own definition polling and matching), then PostHog's
``/flags/?v=4`` endpoint over one ``httpx.AsyncClient``. ``evaluate_flags`` asks for every flag of a user
at once (one request, no cache) and returns a :class:`FeatureFlagEvaluations` snapshot. Network work runs
on a private asyncio loop thread, in a context of its own (never the caller's, whose contextvars may name
another async library), so the sync functions are safe in plain code, worker threads and inside a running
loop, and the async ones never block theirs, on asyncio or trio. Any failure returns the caller's
default, logged once per cause and counted (``flag_errors``). While obs is off nothing here makes a
request.

``Flags.overrides`` (set by ``obs.testing``) answers every check in-process instead: values and payloads
set per flag and optionally per distinct_id, reported and remembered exactly like evaluated ones, with no
request at all.

The flags evaluated so far are kept per context (a contextvar, per distinct_id, forgotten when the
``obs.context`` level they were evaluated in ends); `$exception` and ``@track`` events captured there
carry them as `$feature/<key>` and `$active_feature_flags`.

Nothing heavy is imported here: httpx loads with the first remote evaluation, posthog-python with the
first local one.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import contextvars
import datetime as dt
import json
import math
import re
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from . import _api, _context, _kinds
from ._log import log, warn_every
from ._version import __version__

if TYPE_CHECKING:
    import asyncio

    import httpx

    from ._client import Client
    from ._config import Settings
    from ._stats import Stats

FlagValue: TypeAlias = "bool | str"
T = TypeVar("T")
_MISSING: Any = object()
_MAX_CACHE = 10_000  # cached answers kept; the oldest go first
_MAX_REPORTED = 50_000  # $feature_flag_called (and exposure) keys already sent
# As posthog-python: one retry, 0.3 s later, on 502/504, a timeout or a dropped connection (not a refusal).
_RETRY_STATUSES = (502, 504)
_RETRY_DELAY = 0.3
_MAX_RETRIES = 1
_monotonic = time.monotonic


class FeatureDisabled(Exception):
    """Raised by a ``@feature_gate(..., fallback=obs.FeatureDisabled)`` call whose flag is off."""

    def __init__(self, flag: str, value: Any = None) -> None:
        super().__init__(f"feature flag {flag!r} is off for this call (value {value!r})")
        self.flag = flag
        self.value = value


class Result:
    """One flag evaluated for one user: its value (None: no such flag), payload, where it was decided,
    the `$feature_flag_called` properties it brings (``meta``), and its config version 2 attribution
    (``(reason_code, rule_id, rule_type, variant_key)``, part of the event's dedup key); ``failed``: the
    server marked it failed (it has no value)."""

    __slots__ = ("attribution", "failed", "local", "meta", "payload", "value")

    def __init__(
        self,
        value: FlagValue | None,
        payload: Any,
        local: bool,
        meta: dict[str, Any],
        attribution: tuple[Any, ...] | None = None,
        failed: bool = False,
    ) -> None:
        self.value = value
        self.payload = payload
        self.local = local
        self.meta = meta
        self.attribution = attribution
        self.failed = failed


# ---------------------------------------------------------------- values set by hand (obs.testing)


class FlagOverrides:
    """Flag values and payloads set by hand, per flag and optionally per distinct_id; a flag not set here is
    unknown (its check returns the caller's default). While attached to an engine (``obs.testing`` does
    that), every check is answered from here and nothing is requested."""

    def __init__(self, values: Mapping[str, FlagValue] | None = None) -> None:
        self._results: dict[tuple[str, str | None], Result] = {}
        for key, value in (values or {}).items():
            self.set(key, value)

    def set(self, key: str, value: FlagValue | None, *, payload: Any = None, distinct_id: Any = None) -> None:
        """``key`` is ``value`` (True/False or a variant key; None: unknown) with ``payload``, for
        ``distinct_id`` only when given (it wins over the value for everyone). The payload is stored as it
        would arrive from PostHog: JSON-decoded, a copy (TypeError when it is not JSON-serialisable)."""
        if not isinstance(key, str) or not key:
            raise ValueError(f"a flag key is a non-empty str, not {key!r}")
        if value is not None and not isinstance(value, (bool, str)):
            raise TypeError(f"flag {key!r}: a value is True/False or a variant key (str), not {value!r}")
        decoded = None if payload is None else json.loads(json.dumps(payload))
        self._results[key, None if distinct_id is None else str(distinct_id)] = Result(
            value, decoded, True, {}
        )

    def clear(self) -> None:
        """Forget every value set: every flag is unknown again."""
        self._results.clear()

    def result(self, key: str, did: str) -> Result:
        """What a check of ``key`` for ``did`` gets: its own value, else everyone's, else unknown."""
        results = self._results
        return results.get((key, did)) or results.get((key, None)) or _UNKNOWN

    def results(self, did: str) -> dict[str, Result]:
        """Every flag ``did`` has a value for (what ``obs.evaluate_flags`` gets)."""
        keys = dict.fromkeys(k for k, _ in self._results)
        found = {key: self.result(key, did) for key in keys}
        return {key: r for key, r in found.items() if r.value is not None}

    def __repr__(self) -> str:
        results = self._results.items()
        shown = {k if d is None else f"{k} (distinct_id={d!r})": r.value for (k, d), r in results}
        return f"FlagOverrides({shown})"


_UNKNOWN = Result(None, None, True, {})


# ---------------------------------------------------------------- flags seen by the current context


class _Seen:
    """The flags evaluated for one distinct_id in a context, and the event properties they make."""

    __slots__ = ("distinct_id", "properties", "values")

    def __init__(self, distinct_id: str, values: dict[str, FlagValue]) -> None:
        self.distinct_id = distinct_id
        self.values = values
        props: dict[str, Any] = {f"$feature/{k}": v for k, v in values.items()}
        props["$active_feature_flags"] = sorted(k for k, v in values.items() if v)
        self.properties = props


# Kept in `_context.flags_seen`, which each obs.context level restores as it ends.


def _remember(distinct_id: str, key: str, value: FlagValue) -> None:
    seen: _Seen | None = _context.flags_seen.get()
    if seen is None or seen.distinct_id != distinct_id:  # another user: start over, never mix users
        _context.flags_seen.set(_Seen(distinct_id, {key: value}))
        return
    if _same(seen.values.get(key), value):
        return
    _context.flags_seen.set(_Seen(distinct_id, {**seen.values, key: value}))


def _same(old: Any, value: FlagValue) -> bool:
    return old is value or (type(old) is type(value) and old == value)


def properties_for(distinct_id: Any) -> dict[str, Any] | None:
    """`$feature/<key>` and `$active_feature_flags` for an event of ``distinct_id`` (None: the context's)
    captured now, or None when no flag was evaluated for that user in this context. Do not mutate it."""
    seen: _Seen | None = _context.flags_seen.get()
    if seen is None:
        return None
    if distinct_id is None:
        frame = _context.current.get()
        distinct_id = None if frame is None else frame.distinct_id
    return seen.properties if distinct_id is not None and str(distinct_id) == seen.distinct_id else None


# ---------------------------------------------------------------- reading a /flags answer


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


# ---------------------------------------------------------------- a snapshot of every flag for one user


class FeatureFlagEvaluations:
    """Every feature flag of one user, evaluated at once by :func:`obs.evaluate_flags` (one ``/flags``
    request at most): branch on :meth:`is_enabled` / :meth:`get_flag`, then pass the same snapshot to
    ``obs.capture(..., flags=snapshot)`` so the event carries the values the code branched on
    (`$feature/<key>`, `$active_feature_flags`) without another request.

    Reading a flag with :meth:`is_enabled` or :meth:`get_flag` sends `$feature_flag_called` as
    posthog-python's snapshot does — once per (distinct_id, flag, value, groups), with
    `$feature_flag_error` when the snapshot has no value for it — and remembers the value for the errors
    and ``@track`` events of the context. :meth:`get_flag_payload` sends nothing. Never raises.
    """

    def __init__(
        self,
        flags: Flags | None,
        distinct_id: str,
        records: Mapping[str, Result],
        *,
        groups: Mapping[str, Any] | None = None,
        disable_geoip: bool | None = None,
        request_id: Any = None,
        evaluated_at: Any = None,
        errors_while_computing: bool = False,
        quota_limited: bool = False,
        accessed: Iterable[str] = (),
    ) -> None:
        self._engine = flags
        self._distinct_id = distinct_id
        self._failed = {k: r for k, r in records.items() if r.failed}
        self._records = {k: r for k, r in records.items() if not r.failed and r.value is not None}
        self._groups = dict(groups or {})
        self._disable_geoip = disable_geoip
        self._request_id = request_id
        self._evaluated_at = evaluated_at if type(evaluated_at) is int else None
        self._errors_while_computing = errors_while_computing
        self._quota_limited = quota_limited
        self._accessed: set[str] = set(accessed)

    @property
    def distinct_id(self) -> str:
        """Whose flags these are ("" for the empty snapshot of a call without a distinct_id)."""
        return self._distinct_id

    @property
    def keys(self) -> list[str]:
        """The keys of the flags that have a value in this snapshot."""
        return list(self._records)

    def is_enabled(self, key: str, default: bool = False, *, send_feature_flag_events: bool = True) -> bool:
        """Whether flag ``key`` is on (any variant counts); ``default`` when the snapshot has no value for
        it. A flag that is off is False whatever the default."""
        record = self._records.get(key)
        self._read(key, send_feature_flag_events)
        return default if record is None else bool(record.value)

    def get_flag(
        self, key: str, *, default: FlagValue | None = None, send_feature_flag_events: bool = True
    ) -> FlagValue | None:
        """The flag's value: a variant key or True/False; ``default`` when the snapshot has none."""
        record = self._records.get(key)
        self._read(key, send_feature_flag_events)
        return default if record is None else record.value

    def get_flag_payload(self, key: str, *, default: Any = None) -> Any:
        """The decoded JSON payload of the flag's value, or ``default``. Sends nothing, and is not an access
        for :meth:`only_accessed`."""
        record = self._records.get(key)
        return default if record is None or record.payload is None else record.payload

    def only_accessed(self) -> FeatureFlagEvaluations:
        """A copy with only the flags read so far with :meth:`is_enabled` or :meth:`get_flag` (empty when
        none was): what to attach to an event that should carry just those."""
        return self._copy([k for k in self._accessed if k in self._records or k in self._failed])

    def only(self, keys: Iterable[str]) -> FeatureFlagEvaluations:
        """A copy with only ``keys``; a key the snapshot has not got is dropped, with a warning."""
        keys = list(keys)
        missing = [k for k in keys if k not in self._records and k not in self._failed]
        if missing:
            warn_every(
                "flags-only-missing",
                60,
                "obs: FeatureFlagEvaluations.only(): not in the snapshot, dropped: %s",
                ", ".join(missing),
            )
        return self._copy([k for k in keys if k not in missing])

    def __contains__(self, key: object) -> bool:
        return key in self._records

    def __repr__(self) -> str:
        values = {k: r.value for k, r in self._records.items()}
        return f"FeatureFlagEvaluations(distinct_id={self._distinct_id!r}, flags={values})"

    def _event_properties(self) -> dict[str, Any]:
        """What ``obs.capture(..., flags=self)`` attaches, under the event's own properties."""
        props: dict[str, Any] = {f"$feature/{k}": r.value for k, r in self._records.items()}
        active = sorted(k for k, r in self._records.items() if r.value is not False)
        if active:
            props["$active_feature_flags"] = active
        return props

    def _copy(self, keys: list[str]) -> FeatureFlagEvaluations:
        everything = {**self._records, **self._failed}
        return FeatureFlagEvaluations(
            self._engine,
            self._distinct_id,
            {k: everything[k] for k in keys},
            groups=self._groups,
            disable_geoip=self._disable_geoip,
            request_id=self._request_id,
            evaluated_at=self._evaluated_at,
            errors_while_computing=self._errors_while_computing,
            quota_limited=self._quota_limited,
            accessed=self._accessed,
        )

    def _read(self, key: str, report: bool) -> None:
        """A read of ``key``: `$feature_flag_called` with the properties posthog-python's snapshot sends."""
        self._accessed.add(key)
        engine, did = self._engine, self._distinct_id
        if not report or engine is None or not did:  # the empty snapshot reports nothing
            return
        try:
            record = self._records.get(key) or self._failed.get(key)
            value = None if record is None or record.failed else record.value
            props: dict[str, Any] = {"locally_evaluated": record is not None and record.local}
            if record is not None:
                props.update(record.meta)
                if record.payload is not None:
                    props["$feature_flag_payload"] = record.payload
            if self._request_id:
                props["$feature_flag_request_id"] = self._request_id
            if self._evaluated_at and not (record is not None and record.local):
                props["$feature_flag_evaluated_at"] = self._evaluated_at
            errors = []
            if self._errors_while_computing:
                errors.append("errors_while_computing_flags")
            if self._quota_limited:
                errors.append("quota_limited")
            if record is not None and record.failed:
                errors.append("evaluation_failed")
            elif record is None:
                errors.append("flag_missing")
            if errors:
                props["$feature_flag_error"] = ",".join(errors)
            attribution = None if record is None else record.attribution
            if value is not None:
                _remember(did, key, value)
            engine._report(did, key, value, props, attribution, self._groups, self._disable_geoip)
        except Exception as e:  # never into the caller
            warn_every("flags-snapshot-read", 60, "obs: reading flag %r from a snapshot failed: %r", key, e)


# ---------------------------------------------------------------- the engine, one per client


class Flags:
    """Feature flag evaluation for one enabled client."""

    def __init__(self, client: Client) -> None:
        settings = client.settings
        self._client = client
        self._stats = client._stats
        self._ttl = settings.flags_cache_ttl
        self._timeout = settings.flags_timeout
        self._geoip = settings.disable_geoip
        self._cache: dict[Any, tuple[float, Result]] = {}
        self._reported: dict[tuple[Any, ...], None] = {}
        self._remote = Remote(settings, self._fail)
        self._local = Local(settings, self._stats) if settings.personal_api_key is not None else None
        self._runner: Runner | None = None
        self._inflight: dict[Any, asyncio.Future[Result | None]] = {}  # only touched on the private loop
        self._lock = threading.Lock()
        self._report_lock = threading.Lock()
        self._closed = False
        self.overrides: FlagOverrides | None = None  # set by obs.testing: answers every check, no request

    # ---- what the public functions call

    def get(
        self,
        key: str,
        distinct_id: Any,
        groups: Mapping[str, Any] | None,
        person_properties: Mapping[str, Any] | None,
        group_properties: Mapping[str, Mapping[str, Any]] | None,
        default: Any,
        report: bool = True,
        disable_geoip: bool | None = None,
    ) -> Any:
        """The flag's value (its payload when not ``report``), or ``default``; blocks on a cache miss."""
        did = _distinct_id(distinct_id, key)
        if did is None:
            return default
        if groups or person_properties or group_properties or disable_geoip is not None:
            args, ck = self._call(key, did, groups, person_properties, group_properties, disable_geoip)
        else:  # the common check, kept cheap: a hot @feature_gate costs about a microsecond
            args, ck = (key, did, None, None, None, self._geoip), (did, key)
        result = self._fast(ck, args)
        if result is None:
            result = self._wait(self._shared(ck, args))
        return self._use(result, args, default, report, disable_geoip)

    async def aget(
        self,
        key: str,
        distinct_id: Any,
        groups: Mapping[str, Any] | None,
        person_properties: Mapping[str, Any] | None,
        group_properties: Mapping[str, Mapping[str, Any]] | None,
        default: Any,
        report: bool = True,
        disable_geoip: bool | None = None,
    ) -> Any:
        """`get` for async code (asyncio or trio): a cache miss is awaited, never blocking the loop."""
        did = _distinct_id(distinct_id, key)
        if did is None:
            return default
        if groups or person_properties or group_properties or disable_geoip is not None:
            args, ck = self._call(key, did, groups, person_properties, group_properties, disable_geoip)
        else:  # the common check, kept cheap: a hot @feature_gate costs about a microsecond
            args, ck = (key, did, None, None, None, self._geoip), (did, key)
        result = self._fast(ck, args)
        if result is None:
            result = await self._await(self._shared(ck, args))
        return self._use(result, args, default, report, disable_geoip)

    def evaluate(
        self,
        distinct_id: Any,
        groups: Mapping[str, Any] | None,
        person_properties: Mapping[str, Any] | None,
        group_properties: Mapping[str, Mapping[str, Any]] | None,
        disable_geoip: bool | None,
        flag_keys: Iterable[str] | None,
    ) -> FeatureFlagEvaluations:
        """Every flag (or ``flag_keys``) for the user in one snapshot; blocks for its one request."""
        call = self._snapshot_call(distinct_id, groups, person_properties, group_properties, disable_geoip)
        keys = None if flag_keys is None else [str(k) for k in flag_keys]
        ready = self._snapshot_now(call, keys)
        if ready is not None:
            return ready
        snapshot = self._wait(self._evaluate_all(call, keys))
        return snapshot if snapshot is not None else self._empty(call)

    async def aevaluate(
        self,
        distinct_id: Any,
        groups: Mapping[str, Any] | None,
        person_properties: Mapping[str, Any] | None,
        group_properties: Mapping[str, Mapping[str, Any]] | None,
        disable_geoip: bool | None,
        flag_keys: Iterable[str] | None,
    ) -> FeatureFlagEvaluations:
        """`evaluate` for async code (asyncio or trio); never blocks the loop."""
        call = self._snapshot_call(distinct_id, groups, person_properties, group_properties, disable_geoip)
        keys = None if flag_keys is None else [str(k) for k in flag_keys]
        ready = self._snapshot_now(call, keys)
        if ready is not None:
            return ready
        snapshot = await self._await(self._evaluate_all(call, keys))
        return snapshot if snapshot is not None else self._empty(call)

    def close(self) -> None:
        """Stop the private loop and the definitions poller; later cache misses return the default."""
        self._closed = True
        with self._lock:
            runner, self._runner = self._runner, None
        if runner is not None:
            runner.close(self._remote.aclose(), self._timeout)
        if self._local is not None:
            self._local.close()

    # ---- one flag

    def _call(
        self,
        key: str,
        did: str,
        groups: Any,
        person_properties: Any,
        group_properties: Any,
        disable_geoip: bool | None,
    ) -> tuple[tuple[Any, ...], Any]:
        """The check's arguments (with its effective geoip choice) and its cache key."""
        geo = self._geoip if disable_geoip is None else bool(disable_geoip)
        args = (key, did, groups, person_properties, group_properties, geo)
        if not (groups or person_properties or group_properties) and geo == self._geoip:
            return args, (did, key)
        frozen = (_freeze(groups), _freeze(person_properties), _freeze(group_properties))
        return args, (did, key, geo, *frozen)

    def _fast(self, ck: Any, args: tuple[Any, ...]) -> Result | None:
        """A cached answer, or one decided locally from loaded definitions; None: go to the private loop."""
        if self.overrides is not None:
            return self.overrides.result(args[0], args[1])
        hit = self._cache.get(ck)
        if hit is not None and hit[0] > _monotonic():
            return hit[1]
        local = self._local
        if local is not None and local.ready:
            result = local.evaluate(*args[:5])
            if result is not None:
                self._store(ck, result)
                return result
        return None

    async def _shared(self, ck: Any, args: tuple[Any, ...]) -> Result | None:
        """On the private loop: concurrent misses of one cache key share one evaluation."""
        import asyncio

        task = self._inflight.get(ck)
        if task is None:
            task = self._inflight[ck] = asyncio.ensure_future(self._resolve(ck, args))
            task.add_done_callback(lambda _: self._inflight.pop(ck, None))
        return await asyncio.shield(task)  # a waiter given up on does not cancel the others' answer

    async def _resolve(self, ck: Any, args: tuple[Any, ...]) -> Result | None:
        """Local evaluation (loading definitions the first time), else remote; the answer is cached."""
        result = None
        local = self._local
        if local is not None:
            await local.wait_loaded(self._timeout)
            result = local.evaluate(*args[:5])
        if result is None:
            self._stats.incr("flag_requests")
            result = await self._remote.evaluate(*args)
        if result is not None:
            self._store(ck, result)
        return result

    def _store(self, ck: Any, result: Result) -> None:
        if self._ttl <= 0:
            return
        cache = self._cache
        if len(cache) >= _MAX_CACHE:
            with contextlib.suppress(KeyError, RuntimeError, StopIteration):  # another thread was first
                del cache[next(iter(cache))]
        cache[ck] = (_monotonic() + self._ttl, result)

    def _use(
        self, result: Result | None, args: tuple[Any, ...], default: Any, report: bool, geoip: bool | None
    ) -> Any:
        if result is None or result.value is None:  # failed (already logged), or no such flag
            return default
        if not report:
            return default if result.payload is None else result.payload
        key, did, groups, value = args[0], args[1], args[2], result.value
        seen: _Seen | None = _context.flags_seen.get()
        if seen is None or seen.distinct_id != did or not _same(seen.values.get(key), value):
            _remember(did, key, value)
        if groups or result.attribution is not None or (did, key, value, ()) not in self._reported:
            self._report(did, key, value, result, result.attribution, groups, geoip)
        return value  # the hot path: remembered and reported already

    # ---- a snapshot of every flag

    def _snapshot_call(
        self,
        distinct_id: Any,
        groups: Mapping[str, Any] | None,
        person_properties: Mapping[str, Any] | None,
        group_properties: Mapping[str, Mapping[str, Any]] | None,
        disable_geoip: bool | None,
    ) -> tuple[Any, ...]:
        did = _distinct_id(distinct_id, None)
        geo = self._geoip if disable_geoip is None else bool(disable_geoip)
        return (did, dict(groups or {}), person_properties, group_properties, geo, disable_geoip)

    def _empty(self, call: tuple[Any, ...]) -> FeatureFlagEvaluations:
        did, groups, _, _, _, disable_geoip = call
        return FeatureFlagEvaluations(self, did or "", {}, groups=groups, disable_geoip=disable_geoip)

    def _snapshot_now(self, call: tuple[Any, ...], keys: list[str] | None) -> FeatureFlagEvaluations | None:
        """The snapshot when no request is needed (no distinct_id, no keys, obs.testing's values)."""
        did = call[0]
        if did is None:
            return FeatureFlagEvaluations(None, "", {})
        if keys == []:
            return self._empty(call)
        if self.overrides is not None:
            results = self.overrides.results(did)
            if keys is not None:
                results = {k: r for k, r in results.items() if k in keys}
            return FeatureFlagEvaluations(self, did, results, groups=call[1], disable_geoip=call[5])
        return None

    async def _evaluate_all(self, call: tuple[Any, ...], keys: list[str] | None) -> FeatureFlagEvaluations:
        """On the private loop: what local evaluation decides, then one ``/flags`` request for the rest
        (for all of ``keys``, as posthog-python asks), unless local evaluation decided everything."""
        did, groups, person_properties, group_properties, geo, disable_geoip = call
        records: dict[str, Result] = {}
        ask = True
        local = self._local
        if local is not None:
            await local.wait_loaded(self._timeout)
            records, ask = local.evaluate_all(did, groups, person_properties, group_properties, keys)
        answer = None
        quota = False
        if ask:
            self._stats.incr("flag_requests")
            body = self._remote.body(did, groups, person_properties, group_properties, geo, keys)
            data = await self._remote.fetch("evaluate_flags", body)
            if data is not None:
                try:
                    answer = read_answer(data)
                except ValueError as e:
                    quota = isinstance(e, QuotaLimited)
                    self._fail("response", "evaluate_flags: unusable answer from %s: %s", self._remote.url, e)
        if answer is not None:
            if answer.malformed:
                self._fail("record", "evaluate_flags: %s", "; ".join(answer.malformed.values()))
            for key, record in answer.records.items():
                if key not in records and (keys is None or key in keys):
                    records[key] = record
        return FeatureFlagEvaluations(
            self,
            did,
            records,
            groups=groups,
            disable_geoip=disable_geoip,
            request_id=None if answer is None else answer.request_id,
            evaluated_at=None if answer is None else answer.evaluated_at,
            errors_while_computing=answer is not None and answer.errors_while_computing,
            quota_limited=quota,
        )

    # ---- $feature_flag_called

    def _report(
        self,
        did: str,
        key: str,
        value: FlagValue | None,
        props: Result | dict[str, Any],
        attribution: tuple[Any, ...] | None,
        groups: Mapping[str, Any] | None,
        geoip: bool | None,
    ) -> None:
        """`$feature_flag_called` once per (distinct_id, flag, value, groups[, attribution]) as
        posthog-python dedups it, and `$experiment_exposure` once per experiment rule and variant. A
        Result's properties are built only when an event is sent."""
        gkey = _groups_key(groups) if groups else ()
        called = (did, key, value, gkey) if attribution is None else (did, key, value, gkey, *attribution)
        exposed = None
        if attribution is not None and attribution[3] is not None:  # a complete experiment split
            _, rule_id, _, variant_key = attribution
            exposed = ("$experiment_exposure", did, key, gkey, rule_id, variant_key)
        reported = self._reported
        if called in reported and (exposed is None or exposed in reported):
            return  # the hot path: reported already
        if isinstance(props, Result):
            props = _called_properties(props)
        if geoip is not None:  # the call's own choice, over OBS_DISABLE_GEOIP's on every event
            props["$geoip_disable"] = geoip
        if self._reserve(called):
            extra = {"flag": key, "response": value}
            put = self._client._put(
                "feature_flag_called", "$feature_flag_called", props, did, None, None, groups, "batch", extra
            )
            if put is None:  # not queued (full, closed): a later read tries again
                reported.pop(called, None)
        if exposed is not None and self._reserve(exposed):
            exposure = {k: props[k] for k in _EXPOSURE_COPIES if k in props}
            exposure.update(
                {
                    "$feature_flag": key,
                    "$feature_flag_response": value,
                    "locally_evaluated": props.get("locally_evaluated") is True,
                    "$feature_flag_variant_key": exposed[5],
                    "$feature_flag_rule_id": exposed[4],
                }
            )
            if geoip is not None:
                exposure["$geoip_disable"] = geoip
            put = self._client._put(
                "custom", "$experiment_exposure", exposure, did, None, None, groups, "batch", None
            )
            if put is None:
                reported.pop(exposed, None)

    def _reserve(self, dedup: tuple[Any, ...]) -> bool:
        """Claim ``dedup`` for one event; False when it was sent (or is being sent) already."""
        reported = self._reported
        with self._report_lock:
            if dedup in reported:
                return False
            if len(reported) >= _MAX_REPORTED:
                with contextlib.suppress(KeyError, RuntimeError, StopIteration):
                    del reported[next(iter(reported))]
            reported[dedup] = None
            return True

    # ---- the private loop

    def _runner_or_none(self) -> Runner | None:
        if self._closed:
            return None
        runner = self._runner
        if runner is None:
            with self._lock:
                if self._runner is None and not self._closed:
                    self._runner = Runner()
                runner = self._runner
        return runner

    def _wait(self, coro: Coroutine[Any, Any, T]) -> T | None:
        runner = self._runner_or_none()
        if runner is None or threading.current_thread() is runner.thread:
            _close(coro)
            return None
        future = runner.submit(coro)
        try:
            return future.result(self._budget())
        except concurrent.futures.TimeoutError:
            future.cancel()
            self._fail("timeout", "no answer within %.1fs", self._budget())
        except concurrent.futures.CancelledError:
            pass
        return None

    async def _await(self, coro: Coroutine[Any, Any, T]) -> T | None:
        import asyncio

        runner = self._runner_or_none()
        if runner is None:
            _close(coro)
            return None
        future = runner.submit(coro)
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # trio (or anyio on trio): no asyncio loop in this thread
            return await _await_off_asyncio(future, self._budget())
        return await asyncio.wrap_future(future)

    def _budget(self) -> float:
        # Loading definitions, then a request and its one retry: each bounded by flags_timeout.
        return 3 * self._timeout + _RETRY_DELAY + 1.0

    def _fail(self, cause: str, msg: str, *args: Any) -> None:
        self._stats.incr("flag_errors")
        warn_every(f"flags-{cause}", 60, "obs: feature flags: " + msg + "; returning the default", *args)


# posthog-python's `$experiment_exposure` copies these from the `$feature_flag_called` of the same read.
_EXPOSURE_COPIES = (
    "$feature_flag_id",
    "$feature_flag_version",
    "$feature_flag_request_id",
    "$feature_flag_evaluated_at",
)


def _called_properties(result: Result) -> dict[str, Any]:
    props: dict[str, Any] = {"locally_evaluated": result.local, **result.meta}
    if result.payload is not None:
        props["$feature_flag_payload"] = result.payload
    return props


async def _await_off_asyncio(future: concurrent.futures.Future[T], budget: float) -> T:
    """Await the private loop's ``future`` from trio: its done-callback wakes this task through trio's
    token (never blocking the private loop); another loop waits for it in a worker thread."""
    try:
        import trio

        token = trio.lowlevel.current_trio_token()
    except (ImportError, RuntimeError):  # not trio either
        import anyio

        return await anyio.to_thread.run_sync(future.result, budget, abandon_on_cancel=True)
    done = trio.Event()

    def wake(_: Any) -> None:
        with contextlib.suppress(trio.RunFinishedError):  # the trio run ended meanwhile: nobody waits
            token.run_sync_soon(done.set)

    future.add_done_callback(wake)
    try:
        await done.wait()
    except BaseException:  # cancelled: give up on it (a shared evaluation goes on for the others)
        future.cancel()
        raise
    return future.result()


def _close(coro: Coroutine[Any, Any, Any]) -> None:
    coro.close()  # never started: closed, so that Python does not warn it was never awaited


def _distinct_id(distinct_id: Any, key: str | None) -> str | None:
    if distinct_id is None:
        frame = _context.current.get()
        distinct_id = None if frame is None else frame.distinct_id
        if distinct_id is None:
            warn_every(
                "flags-no-distinct-id",
                60,
                "obs: %s: no distinct_id (pass distinct_id= or use obs.context); returning the default",
                "evaluate_flags" if key is None else f"feature flag {key!r}",
            )
            return None
    return str(distinct_id)


def _freeze(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _groups_key(groups: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """Groups as part of the `$feature_flag_called` dedup key: group-scoped flags report per group."""
    return tuple(sorted((str(k), str(v)) for k, v in groups.items()))


def _group_properties(groups: Any, group_properties: Any) -> dict[str, dict[str, Any]]:
    """As posthog-python: each group's properties with its `$group_key`, for the groups passed only."""
    group_properties = group_properties or {}
    return {g: {"$group_key": k, **(group_properties.get(g) or {})} for g, k in (groups or {}).items()}


class Runner:
    """A private asyncio loop on a daemon thread. Every caller (sync code, any thread, any event loop)
    submits remote evaluations here, so they share one ``httpx.AsyncClient`` and its connections."""

    def __init__(self) -> None:
        import asyncio

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="obs-flags", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        import asyncio

        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        import asyncio

        # Started in an empty context, not a copy of the caller's: under `anyio.run(..., backend="trio")`
        # that copy says "trio" to sniffio, and httpx on this asyncio loop would then call trio.
        return contextvars.Context().run(asyncio.run_coroutine_threadsafe, coro, self.loop)

    def close(self, cleanup: Coroutine[Any, Any, Any], timeout: float) -> None:
        try:
            self.submit(cleanup).result(timeout)
        except Exception as e:
            log.debug("obs: feature flags: closing the HTTP client failed: %r", e)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout)
        if not self.thread.is_alive():
            self.loop.close()


# ---------------------------------------------------------------- remote: PostHog's /flags endpoint


class Remote:
    """``POST {host}/flags/?v=4`` with the body posthog-python sends; one retry, as it does."""

    def __init__(self, settings: Settings, fail: Callable[..., None]) -> None:
        self.url = f"{settings.host}/flags/?v=4"
        self._api_key = settings.api_key
        self._timeout = settings.flags_timeout
        self._fail = fail
        self._http: httpx.AsyncClient | None = None  # made on the private loop, on first use

    def body(
        self,
        did: str,
        groups: Any,
        person_properties: Any,
        group_properties: Any,
        geoip_disable: bool,
        keys: list[str] | None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "distinct_id": did,
            "groups": dict(groups or {}),
            "person_properties": dict(person_properties or {}),
            "group_properties": _group_properties(groups, group_properties),
            "geoip_disable": geoip_disable,
            "device_id": None,  # obs has no device ids; posthog-python sends null without one
        }
        if keys:
            body["flag_keys_to_evaluate"] = keys
        body["api_key"] = self._api_key
        return body

    async def evaluate(
        self,
        key: str,
        did: str,
        groups: Any,
        person_properties: Any,
        group_properties: Any,
        geoip_disable: bool,
    ) -> Result | None:
        body = self.body(did, groups, person_properties, group_properties, geoip_disable, [key])
        data = await self.fetch(f"flag {key!r}", body)
        if data is None:
            return None
        try:
            return parse(data, key)
        except Exception as e:
            self._fail("response", "flag %r: unusable answer from %s: %s", key, self.url, e)
            return None

    async def fetch(self, what: str, body: dict[str, Any]) -> Any:
        """The decoded JSON answer to ``body``, or None (logged, counted). Retried once, 0.3 s later, after
        a 502/504, a timeout or a dropped connection — not after a refused one."""
        import asyncio

        import httpx

        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=self._timeout,
                headers={"Content-Type": "application/json", "User-Agent": f"obs/{__version__}"},
            )
        attempt = 0
        while True:
            body["sent_at"] = dt.datetime.now(dt.timezone.utc).isoformat()  # fresh per attempt
            try:
                content = json.dumps(body, default=str)
            except Exception as e:  # a property value json cannot take, even as str()
                self._fail("body", "%s: properties cannot be sent: %r", what, e)
                return None
            last = attempt >= _MAX_RETRIES
            try:
                response = await self._http.post(self.url, content=content)
            except httpx.HTTPError as e:
                if last or not isinstance(e, httpx.TransportError) or _refused(e):
                    if isinstance(e, httpx.TimeoutException):
                        self._fail(
                            "timeout", "%s: no answer from %s within %ss", what, self.url, self._timeout
                        )
                    else:
                        cause = f"http-{type(e).__name__}"
                        self._fail(cause, "%s: request to %s failed: %r", what, self.url, e)
                    return None
            else:
                status = response.status_code
                if status == 200:
                    try:
                        return response.json()
                    except ValueError as e:
                        self._fail("response", "%s: unusable answer from %s: %s", what, self.url, e)
                        return None
                if last or status not in _RETRY_STATUSES:
                    self._fail(f"status-{status}", "%s: %s answered HTTP %d", what, self.url, status)
                    return None
            await asyncio.sleep(_RETRY_DELAY * 2**attempt)
            attempt += 1

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()


def _refused(exc: BaseException) -> bool:
    """Whether a transport error is a refused connection (not worth retrying, as posthog-python says)."""
    pending: list[Any] = [exc]
    seen: set[int] = set()
    while pending:
        e = pending.pop()
        if not isinstance(e, BaseException) or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, ConnectionRefusedError):
            return True
        pending += [e.__cause__, e.__context__, *e.args, *getattr(e, "exceptions", ())]
    return False


# ---------------------------------------------------------------- local: posthog-python's evaluation


class Local:
    """Flag definitions polled and matched by posthog-python itself, configured with the personal or
    secure key and obs's host, sending nothing. What it cannot decide goes remote."""

    def __init__(self, settings: Settings, stats: Stats) -> None:
        self._settings = settings
        self._stats = stats
        self._posthog: Any = None
        self._loaded: asyncio.Future[None] | None = None  # only touched on the private loop
        self._closed = False

    @property
    def ready(self) -> bool:
        ph = self._posthog
        return ph is not None and bool(ph.feature_flags_by_key)

    async def wait_loaded(self, timeout: float) -> None:
        """The first call starts loading definitions (a daemon thread); every call waits ≤ ``timeout``."""
        import asyncio

        if self._loaded is None:
            loop = asyncio.get_running_loop()
            self._loaded = loop.create_future()
            threading.Thread(
                target=self._load, args=(loop, self._loaded), name="obs-flags-load", daemon=True
            ).start()
        if not self._loaded.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._loaded), timeout)
            except asyncio.TimeoutError:
                self._trouble("definitions-slow", "flag definitions not loaded within %ss", timeout)

    def _load(self, loop: asyncio.AbstractEventLoop, done: asyncio.Future[None]) -> None:
        try:
            import inspect

            from posthog.client import Client as PostHogClient

            s = self._settings
            assert s.personal_api_key is not None and s.api_key is not None
            key = s.personal_api_key.get_secret_value()
            # `secret_key` replaced `personal_api_key` in posthog-python 7; either holds the same key.
            param = (
                "secret_key"
                if "secret_key" in inspect.signature(PostHogClient).parameters
                else "personal_api_key"
            )
            ph: Any = PostHogClient(
                s.api_key,
                host=s.host,
                send=False,
                sync_mode=True,  # with send=False: no consumer threads, nothing queued anywhere
                poll_interval=s.flags_poll_interval,
                disable_geoip=s.disable_geoip,
                feature_flags_request_timeout_seconds=s.flags_timeout,
                **{param: key},  # type: ignore[arg-type]
            )
            self._posthog = ph
            if not self._closed:
                ph.load_feature_flags()  # fetches now, then posthog-python's poller refreshes them
            if not ph.feature_flags_by_key:
                self._trouble("definitions", "no flag definitions loaded from %s", s.host)
        except Exception as e:
            self._trouble("definitions-error", "loading flag definitions failed: %r", e)
        finally:
            with contextlib.suppress(RuntimeError):  # the private loop is already closed
                loop.call_soon_threadsafe(_set_done, done)

    def evaluate(
        self, key: str, did: str, groups: Any, person_properties: Any, group_properties: Any
    ) -> Result | None:
        """The flag decided from the definitions, or None when they cannot decide it."""
        ph = self._posthog
        definition = ph.feature_flags_by_key.get(key) if ph is not None and ph.feature_flags_by_key else None
        if definition is None:
            return None
        try:
            result = ph.get_feature_flag_result(
                key,
                did,
                groups=dict(groups or {}),
                person_properties=dict(person_properties or {}),
                group_properties={g: dict(p) for g, p in (group_properties or {}).items()},
                only_evaluate_locally=True,
                send_feature_flag_events=False,
            )
        except Exception as e:
            self._trouble("local", "local evaluation of %r failed: %r", key, e)
            return None
        if result is None:
            return None
        # As posthog-python reports a local evaluation: the definition's id and version, and whether
        # the flag has an experiment when the definitions say.
        meta: dict[str, Any] = {}
        if definition.get("version"):
            meta["$feature_flag_version"] = definition["version"]
        if definition.get("id"):
            meta["$feature_flag_id"] = definition["id"]
        if isinstance(definition.get("has_experiment"), bool):
            meta["$feature_flag_has_experiment"] = definition["has_experiment"]
        return Result(result.get_value(), result.payload, True, meta)

    def evaluate_all(
        self, did: str, groups: Any, person_properties: Any, group_properties: Any, keys: list[str] | None
    ) -> tuple[dict[str, Result], bool]:
        """Each flag of the definitions (or of ``keys``) decided locally, with the reason posthog-python's
        snapshot gives them; and whether ``/flags`` must be asked too (something left undecided, a key
        the definitions have not got, or no definitions at all)."""
        ph = self._posthog
        definitions = ph.feature_flags_by_key if ph is not None else None
        if not definitions:
            return {}, True
        records: dict[str, Result] = {}
        ask = False
        for key in list(definitions) if keys is None else keys:
            if key not in definitions:
                ask = True
                continue
            result = self.evaluate(key, did, groups, person_properties, group_properties)
            if result is None:
                ask = True
            else:
                result.meta["$feature_flag_reason"] = "Evaluated locally"
                records[key] = result
        return records, ask

    def _trouble(self, cause: str, msg: str, *args: Any) -> None:
        """Local evaluation could not answer: counted and logged once per cause; /flags answers instead."""
        self._stats.incr("flag_local_failures")
        warn_every(f"flags-{cause}", 60, "obs: feature flags: " + msg + "; asking /flags instead", *args)

    def close(self) -> None:
        self._closed = True
        poller = getattr(self._posthog, "poller", None)
        if poller is not None:
            poller.stopped.set()  # not joined: a fetch in flight must not hold up shutdown


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


# ---------------------------------------------------------------- the public functions


def current() -> Flags | None:
    """The current client's flags; None while obs is off."""
    return (_api._client or _api._lazy()).flags


def _get(
    name: str,
    key: str,
    distinct_id: Any,
    groups: Any,
    props: Any,
    group_props: Any,
    default: Any,
    report: bool,
    disable_geoip: bool | None,
) -> Any:
    try:
        flags = current()
        if flags is None:
            return default
        return flags.get(key, distinct_id, groups, props, group_props, default, report, disable_geoip)
    except Exception as e:  # never into the caller
        warn_every(f"flags-{name}", 60, "obs: %s(%r) failed: %r", name, key, e)
        return default


async def _aget(
    name: str,
    key: str,
    distinct_id: Any,
    groups: Any,
    props: Any,
    group_props: Any,
    default: Any,
    report: bool,
    disable_geoip: bool | None,
) -> Any:
    try:
        flags = current()
        if flags is None:
            return default
        return await flags.aget(key, distinct_id, groups, props, group_props, default, report, disable_geoip)
    except Exception as e:
        warn_every(f"flags-{name}", 60, "obs: %s(%r) failed: %r", name, key, e)
        return default


def get_feature_flag(
    key: str,
    distinct_id: Any = None,
    *,
    groups: Mapping[str, Any] | None = None,
    person_properties: Mapping[str, Any] | None = None,
    group_properties: Mapping[str, Mapping[str, Any]] | None = None,
    disable_geoip: bool | None = None,
    default: FlagValue | None = None,
) -> FlagValue | None:
    """The flag's value for the user: a variant key, True/False, or ``default`` when it cannot be told
    (obs off, no distinct_id, no such flag, any failure). ``distinct_id`` defaults to ``obs.context``'s.
    ``disable_geoip`` overrides ``OBS_DISABLE_GEOIP`` for this check (PostHog's GeoIP person properties).
    Safe from sync code, threads and inside a running event loop (a cache miss blocks this thread)."""
    return _get(  # type: ignore[no-any-return]
        "get_feature_flag",
        key,
        distinct_id,
        groups,
        person_properties,
        group_properties,
        default,
        True,
        disable_geoip,
    )


async def aget_feature_flag(
    key: str,
    distinct_id: Any = None,
    *,
    groups: Mapping[str, Any] | None = None,
    person_properties: Mapping[str, Any] | None = None,
    group_properties: Mapping[str, Mapping[str, Any]] | None = None,
    disable_geoip: bool | None = None,
    default: FlagValue | None = None,
) -> FlagValue | None:
    """:func:`get_feature_flag` for async code (asyncio or trio); never blocks the event loop."""
    return await _aget(  # type: ignore[no-any-return]
        "aget_feature_flag",
        key,
        distinct_id,
        groups,
        person_properties,
        group_properties,
        default,
        True,
        disable_geoip,
    )


def feature_enabled(
    key: str,
    distinct_id: Any = None,
    *,
    groups: Mapping[str, Any] | None = None,
    person_properties: Mapping[str, Any] | None = None,
    group_properties: Mapping[str, Mapping[str, Any]] | None = None,
    disable_geoip: bool | None = None,
    default: bool = False,
) -> bool:
    """Whether the flag is on (any variant counts) for the user; ``default`` when it cannot be told."""
    value = _get(
        "feature_enabled",
        key,
        distinct_id,
        groups,
        person_properties,
        group_properties,
        _MISSING,
        True,
        disable_geoip,
    )
    return default if value is _MISSING else bool(value)


async def afeature_enabled(
    key: str,
    distinct_id: Any = None,
    *,
    groups: Mapping[str, Any] | None = None,
    person_properties: Mapping[str, Any] | None = None,
    group_properties: Mapping[str, Mapping[str, Any]] | None = None,
    disable_geoip: bool | None = None,
    default: bool = False,
) -> bool:
    """:func:`feature_enabled` for async code; never blocks the event loop."""
    value = await _aget(
        "afeature_enabled",
        key,
        distinct_id,
        groups,
        person_properties,
        group_properties,
        _MISSING,
        True,
        disable_geoip,
    )
    return default if value is _MISSING else bool(value)


def get_feature_flag_payload(
    key: str,
    distinct_id: Any = None,
    *,
    groups: Mapping[str, Any] | None = None,
    person_properties: Mapping[str, Any] | None = None,
    group_properties: Mapping[str, Mapping[str, Any]] | None = None,
    disable_geoip: bool | None = None,
    default: Any = None,
) -> Any:
    """The JSON payload of the value the user gets (decoded), or ``default``. Sends no event."""
    return _get(
        "get_feature_flag_payload",
        key,
        distinct_id,
        groups,
        person_properties,
        group_properties,
        default,
        False,
        disable_geoip,
    )


async def aget_feature_flag_payload(
    key: str,
    distinct_id: Any = None,
    *,
    groups: Mapping[str, Any] | None = None,
    person_properties: Mapping[str, Any] | None = None,
    group_properties: Mapping[str, Mapping[str, Any]] | None = None,
    disable_geoip: bool | None = None,
    default: Any = None,
) -> Any:
    """:func:`get_feature_flag_payload` for async code; never blocks the event loop."""
    return await _aget(
        "aget_feature_flag_payload",
        key,
        distinct_id,
        groups,
        person_properties,
        group_properties,
        default,
        False,
        disable_geoip,
    )


def evaluate_flags(
    distinct_id: Any = None,
    *,
    groups: Mapping[str, Any] | None = None,
    person_properties: Mapping[str, Any] | None = None,
    group_properties: Mapping[str, Mapping[str, Any]] | None = None,
    disable_geoip: bool | None = None,
    flag_keys: Iterable[str] | None = None,
) -> FeatureFlagEvaluations:
    """Every feature flag of the user (only ``flag_keys`` when given) in one snapshot, with one ``/flags``
    request at most — none when local evaluation decides them all. Branch on ``.is_enabled(key)`` /
    ``.get_flag(key)`` and pass it to ``obs.capture(..., flags=snapshot)``. Never raises: obs off, no
    distinct_id or a failure give a snapshot whose reads return their defaults."""
    try:
        flags = current()
        if flags is None:
            return FeatureFlagEvaluations(None, "", {})  # every read gets its default; nothing is sent
        return flags.evaluate(
            distinct_id, groups, person_properties, group_properties, disable_geoip, flag_keys
        )
    except Exception as e:  # never into the caller
        warn_every("flags-evaluate_flags", 60, "obs: evaluate_flags() failed: %r", e)
        return FeatureFlagEvaluations(None, "", {})


async def aevaluate_flags(
    distinct_id: Any = None,
    *,
    groups: Mapping[str, Any] | None = None,
    person_properties: Mapping[str, Any] | None = None,
    group_properties: Mapping[str, Mapping[str, Any]] | None = None,
    disable_geoip: bool | None = None,
    flag_keys: Iterable[str] | None = None,
) -> FeatureFlagEvaluations:
    """:func:`evaluate_flags` for async code (asyncio or trio); never blocks the event loop."""
    try:
        flags = current()
        if flags is None:
            return FeatureFlagEvaluations(None, "", {})
        return await flags.aevaluate(
            distinct_id, groups, person_properties, group_properties, disable_geoip, flag_keys
        )
    except Exception as e:
        warn_every("flags-aevaluate_flags", 60, "obs: aevaluate_flags() failed: %r", e)
        return FeatureFlagEvaluations(None, "", {})


_kinds.register_part("flags", Flags)  # every enabled client's `flags`
