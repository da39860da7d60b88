"""``obs.evaluate_flags``' snapshot: every flag of one user, read without another request."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .._log import warn_every
from ._result import FlagValue, Result
from ._seen import remember

if TYPE_CHECKING:
    from ._events import Reporter


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
        reporter: Reporter | None,
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
        self._reporter = reporter  # None: a snapshot that sends nothing (obs off, no distinct_id)
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
            self._reporter,
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
        reporter, did = self._reporter, self._distinct_id
        if not report or reporter is None or not did:  # the empty snapshot reports nothing
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
                remember(did, key, value)
            reporter.report(did, key, value, props, attribution, self._groups, self._disable_geoip)
        except Exception as e:  # never into the caller
            warn_every("flags-snapshot-read", 60, "obs: reading flag %r from a snapshot failed: %r", key, e)
