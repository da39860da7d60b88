"""Flag values set by hand (``obs.testing``, the ``obs_flags`` fixture): every check answered in-process."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ._result import FlagValue, Result


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
