"""Turn arbitrary property values into JSON-safe ones, on the worker, never raising.

What can be represented is converted (Decimal, datetime, UUID, bytes, sets, dataclasses, pydantic models,
enums, non-str keys); what cannot (cycles, NaN/inf, nesting deeper than ``MAX_DEPTH``, and any value whose
conversion raises: a ``__str__``/``__repr__``/``__getattr__`` that fails, a Mapping whose iteration fails, a
tzinfo that fails) is replaced by ``None``, alone, and its property path noted in :class:`Problems` so the
caller can log it. The rest of the event is still sent.

:func:`valid_utf8` repairs strings that cannot be encoded as UTF-8 (lone surrogates, which ``os.fsdecode``
makes of undecodable file names); the worker applies it only to an event whose encoding failed.
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

    def clear(self) -> None:
        self.dropped = []
        self.coerced = []


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


def sanitize_into(out: dict[str, Any], props: Mapping[Any, Any], problems: Problems) -> None:
    """Write a JSON-safe copy of ``props`` into ``out``, omitting ``None`` values (also those that could not
    be converted): one dict per event instead of a copy and a merge."""
    for k, v in props.items():
        if v is None:
            continue
        t = type(v)
        key = k if type(k) is str else _key(k)
        if t is str or t is int or t is bool or (t is float and math.isfinite(v)):
            out[key] = v
        else:
            v = _clean(v, key, problems, 1, set())
            if v is not None:
                out[key] = v


def is_plain(props: dict[Any, Any]) -> bool:
    """True when `sanitize_into` would copy ``props`` unchanged: str keys, and values that are str, int,
    bool or finite floats (no None, which it omits)."""
    for k, v in props.items():
        t = type(v)
        if not (t is str or t is int or t is bool or (t is float and v - v == 0)) or type(k) is not str:
            return False
    return True


def sanitize(value: Any, problems: Problems, path: str = "") -> Any:
    return _clean(value, path, problems, 0, set())


def _key(k: Any) -> str:
    try:
        return str(k)
    except Exception:
        return f"<{type(k).__name__}>"


def valid_utf8(v: Any) -> Any:
    """A copy of a JSON-shaped value with every string (keys too) made encodable as UTF-8.

    Surrogate pairs are joined; lone surrogates become U+FFFD.
    """
    if type(v) is str:
        try:
            v.encode("utf-8")
            return v
        except UnicodeEncodeError:
            return v.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(v, dict):
        return {valid_utf8(k): valid_utf8(item) for k, item in v.items()}
    if isinstance(v, (list, tuple)):
        return [valid_utf8(item) for item in v]
    return v


def _describe(e: BaseException) -> str:
    try:
        return repr(e)
    except BaseException:
        return type(e).__name__


def _clean(v: Any, path: str, problems: Problems, depth: int, seen: set[int]) -> Any:
    try:
        return _convert(v, path, problems, depth, seen)
    except BaseException as e:  # any failure costs this value only, never the event
        problems.dropped.append(f"{path}: {type(v).__name__} could not be converted ({_describe(e)})")
        return None


def _convert(v: Any, path: str, problems: Problems, depth: int, seen: set[int]) -> Any:
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
        if isinstance(v, (set, frozenset)):
            # Sorted after conversion, so one member that cannot be converted (or repr'd) costs only itself.
            members = [_clean(item, f"{path}[]", problems, depth + 1, seen) for item in v]
            return sorted(members, key=_sort_key)
        if isinstance(v, (list, tuple)) or type(v).__name__ == "deque":
            return [_clean(item, f"{path}[{i}]", problems, depth + 1, seen) for i, item in enumerate(v)]
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

    s = str(v)
    if type(s) is not str:  # a str subclass whose methods might misbehave later
        s = str.__str__(s)
    problems.coerced.append(f"{path}: {type(v).__name__} sent as str")
    return s


def _sort_key(v: Any) -> tuple[str, str]:
    return (type(v).__name__, repr(v))
