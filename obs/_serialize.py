"""Turn arbitrary property values into JSON-safe ones, on the worker, never raising.

What can be represented is converted (Decimal, datetime, UUID, bytes, sets, dataclasses, pydantic models,
enums, non-str keys); what cannot (cycles, NaN/inf, values whose ``str`` fails, nesting deeper than
``MAX_DEPTH``) is replaced by ``None`` and counted in :class:`Problems` so the caller can log it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import math
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

MAX_DEPTH = 64
_PRIMITIVE = (str, int, bool, type(None))


class Problems:
    """What sanitising one event had to give up on; ``None`` of each means a clean event."""

    __slots__ = ("coerced", "dropped")

    def __init__(self) -> None:
        self.dropped: list[str] = []
        self.coerced: list[str] = []


def sanitize_properties(props: Mapping[Any, Any], problems: Problems) -> dict[str, Any]:
    """A JSON-safe copy of ``props`` with top-level ``None`` values omitted."""
    out: dict[str, Any] = {}
    for k, v in props.items():
        key = k if type(k) is str else _key(k)
        if v is None:
            continue
        t = type(v)
        if t is str or t is int or t is bool or (t is float and math.isfinite(v)):
            out[key] = v
        else:
            out[key] = _clean(v, key, problems, 1, set())
    return out


def sanitize(value: Any, problems: Problems, path: str = "") -> Any:
    return _clean(value, path, problems, 0, set())


def _key(k: Any) -> str:
    try:
        return str(k)
    except Exception:
        return f"<{type(k).__name__}>"


def _clean(v: Any, path: str, problems: Problems, depth: int, seen: set[int]) -> Any:
    if isinstance(v, _PRIMITIVE) and not isinstance(v, enum.Enum):
        return v
    if isinstance(v, float):
        if math.isfinite(v):
            return v
        problems.dropped.append(f"{path}: non-finite float {v!r}")
        return None
    if depth > MAX_DEPTH:
        problems.dropped.append(f"{path}: nested deeper than {MAX_DEPTH}")
        return None
    if isinstance(v, Decimal):
        if v.is_finite():
            return int(v) if v == v.to_integral_value() and abs(v) < 2**53 else float(v)
        problems.dropped.append(f"{path}: non-finite Decimal {v!r}")
        return None
    if isinstance(v, dt.datetime):
        return (v.astimezone(dt.timezone.utc) if v.tzinfo else v).isoformat()
    if isinstance(v, (dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, dt.timedelta):
        return v.total_seconds()
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, enum.Enum):
        return _clean(v.value, path, problems, depth + 1, seen)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).decode("utf-8", errors="backslashreplace")

    # Containers: guard against cycles along the current path.
    vid = id(v)
    if vid in seen:
        problems.dropped.append(f"{path}: reference cycle")
        return None
    seen.add(vid)
    try:
        if isinstance(v, Mapping):
            out: dict[str, Any] = {}
            for k, item in v.items():
                key = k if type(k) is str else _key(k)
                out[key] = _clean(item, f"{path}.{key}", problems, depth + 1, seen)
            return out
        if isinstance(v, (list, tuple, set, frozenset)) or type(v).__name__ == "deque":
            items = sorted(v, key=repr) if isinstance(v, (set, frozenset)) else v
            return [_clean(item, f"{path}[{i}]", problems, depth + 1, seen) for i, item in enumerate(items)]
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            fields = {f.name: getattr(v, f.name) for f in dataclasses.fields(v)}
            return _clean(fields, path, problems, depth, seen)
        dump = getattr(v, "model_dump", None)
        if callable(dump) and not isinstance(v, type):
            try:
                return _clean(dump(mode="json"), path, problems, depth, seen)
            except Exception:
                pass
    finally:
        seen.discard(vid)

    try:
        s = str(v)
    except Exception as e:
        problems.dropped.append(f"{path}: {type(v).__name__} could not be converted ({e!r})")
        return None
    problems.coerced.append(f"{path}: {type(v).__name__} sent as str")
    return s
